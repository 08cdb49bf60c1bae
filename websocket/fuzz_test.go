package websocket_test

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"testing"

	ws "github.com/longlink/longlink/websocket"
)

// The seed corpora are in testdata/fuzz/FuzzParseHeader and
// testdata/fuzz/FuzzParseHandshake: a real frame for every opcode and
// length form, frames a real client wrote, and each kind of invalid
// header; browser and Go client handshakes and each kind of refusal.

// FuzzParseHeader checks ParseHeader on arbitrary bytes and limits:
// it never panics, a parsed header is exactly the canonical encoding of
// its fields and within the limit, and parsing is monotonic: every
// prefix of the input is incomplete until the answer for the whole input
// is decided, and then gives that same answer (the input split into two
// reads, for every split).
func FuzzParseHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, max32 uint32) {
		max := int(max32)
		h, n, err := ws.ParseHeader(data, max)
		if n < 0 || n > len(data) {
			t.Fatalf("n=%d for %d bytes", n, len(data))
		}
		switch {
		case err != nil:
			if n != 0 {
				t.Fatalf("n=%d with error %v", n, err)
			}
			e, ok := err.(*ws.Error)
			if !ok || e.Status != 0 || (e.Code != ws.CloseProtocol && e.Code != ws.CloseTooBig) {
				t.Fatalf("error %#v", err)
			}
			if (e.Code == ws.CloseTooBig) != (err == ws.ErrTooBig) {
				t.Fatalf("too big but not ErrTooBig: %v", err)
			}
		case n == 0:
			if len(data) >= 2 && len(data) >= headerLen(data) {
				t.Fatalf("incomplete with %d bytes, header is %d", len(data), headerLen(data))
			}
		default:
			if n != headerLen(data) {
				t.Fatalf("n=%d, header is %d", n, headerLen(data))
			}
			if h.Len < 0 || h.Len > max {
				t.Fatalf("Len=%d, max %d", h.Len, max)
			}
			if end := n + h.Len; end < n {
				t.Fatalf("n+Len overflows: %d+%d", n, h.Len)
			}
			if !h.Masked || data[0]&0x70 != 0 {
				t.Fatalf("accepted unmasked or RSV: % x", data[:n])
			}
			switch h.Op {
			case ws.OpContinuation, ws.OpText, ws.OpBinary:
			case ws.OpClose, ws.OpPing, ws.OpPong:
				if !h.Fin || h.Len > 125 {
					t.Fatalf("accepted control frame %+v", h)
				}
			default:
				t.Fatalf("accepted opcode %#x", h.Op)
			}
			// The header is the canonical encoding of its fields: minimal
			// length form, mask last.
			canon := clientFrame(h.Fin, h.Op, h.Mask, nil)
			canon = canon[:2]
			switch {
			case h.Len < 126:
				canon[1] = 0x80 | byte(h.Len)
			case h.Len <= 0xFFFF:
				canon[1] = 0x80 | 126
				canon = binary.BigEndian.AppendUint16(canon, uint16(h.Len))
			default:
				canon[1] = 0x80 | 127
				canon = binary.BigEndian.AppendUint64(canon, uint64(h.Len))
			}
			canon = append(canon, h.Mask[:]...)
			if !bytes.Equal(canon, data[:n]) {
				t.Fatalf("header % x parsed as %+v, which encodes as % x", data[:n], h, canon)
			}
		}

		// Monotonic in the input: incomplete, then decided for good.
		decided := -1
		for i := 0; i < len(data); i++ {
			ph, pn, perr := ws.ParseHeader(data[:i], max)
			if decided >= 0 && perr == nil && pn == 0 {
				t.Fatalf("prefix of %d incomplete, prefix of %d was decided", i, decided)
			}
			if decided < 0 && (perr != nil || pn != 0) {
				decided = i
			}
			checkPrefix(t, i, ph, pn, perr, h, n, err)
		}
	})
}

// FuzzParseHandshake checks ParseHandshake on arbitrary bytes: it never
// panics, an accepted request is consumed exactly up to its first blank
// line and carries a valid key, a refusal has an HTTP status and encodes
// into a well-formed HTTP answer, and prefixes of the input (the input
// split into two reads) are incomplete or give the same answer.
func FuzzParseHandshake(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := ws.ParseHandshake(data)
		if n < 0 || n > len(data) {
			t.Fatalf("n=%d for %d bytes", n, len(data))
		}
		end := bytes.Index(data, []byte("\r\n\r\n"))
		switch {
		case err != nil:
			if n != 0 {
				t.Fatalf("n=%d with error %v", n, err)
			}
			e, ok := err.(*ws.Error)
			if !ok || e.Code != 0 {
				t.Fatalf("error %#v", err)
			}
			switch e.Status {
			case 400, 405, 426:
				if end < 0 {
					t.Fatalf("status %d before the request is complete", e.Status)
				}
			case 431:
				if end >= 0 && end+4 <= ws.MaxHandshake {
					t.Fatalf("431 for a request of %d bytes", end+4)
				}
			default:
				t.Fatalf("status %d", e.Status)
			}
			out := ws.AppendReject(nil, e)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if err != nil || resp.StatusCode != e.Status || !resp.Close {
				t.Fatalf("reject answer %q: %v", out, err)
			}
			if body, err := io.ReadAll(resp.Body); err != nil || string(body) != e.Reason {
				t.Fatalf("reject body %q: %v", body, err)
			}
		case n == 0:
			if end >= 0 || len(data) >= ws.MaxHandshake {
				t.Fatalf("incomplete with %d bytes, blank line at %d", len(data), end)
			}
		default:
			if end < 0 || n != end+4 {
				t.Fatalf("n=%d, first blank line ends at %d", n, end+4)
			}
			if n > ws.MaxHandshake {
				t.Fatalf("accepted %d bytes, limit %d", n, ws.MaxHandshake)
			}
			line, _, _ := bytes.Cut(data, []byte("\r\n"))
			if f := bytes.Fields(line); len(f) != 3 || string(f[0]) != "GET" {
				t.Fatalf("accepted request line %q", line)
			}
			// Key and Origin alias the request.
			if len(h.Key) == 0 || !aliases(data[:n], h.Key) {
				t.Fatalf("key %q is not inside the request", h.Key)
			}
			if h.Origin != nil && !aliases(data[:n], h.Origin) {
				t.Fatalf("origin %q is not inside the request", h.Origin)
			}
			k, err := base64.StdEncoding.DecodeString(string(h.Key))
			if err != nil || len(k) != 16 {
				t.Fatalf("accepted key %q", h.Key)
			}
			out := ws.AppendAccept(nil, h)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), &http.Request{Method: "GET"})
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("accept answer %q: %v", out, err)
			}
			sum := sha1.Sum(append(append([]byte(nil), h.Key...), "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...))
			if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(sum[:]) {
				t.Fatalf("accept %q for key %q", got, h.Key)
			}
			if (resp.Header.Get("Sec-WebSocket-Protocol") == ws.Subprotocol) != h.Subprotocol {
				t.Fatalf("subprotocol %v, answer %q", h.Subprotocol, out)
			}
		}

		// The limit, without seeds of MaxHandshake bytes (which make the
		// fuzzer spend its time minimizing): an incomplete request grown
		// to the limit is refused with 431, one byte short of it is still
		// incomplete; an accepted request padded with a header to exactly
		// the limit is accepted, and to one byte more refused.
		if err == nil && n == 0 {
			big := append(append(make([]byte, 0, ws.MaxHandshake), data...), bytes.Repeat([]byte("x"), ws.MaxHandshake-len(data))...)
			if _, pn, perr := ws.ParseHandshake(big[:ws.MaxHandshake-1]); pn != 0 || perr != nil {
				t.Fatalf("grown to %d bytes: n=%d err=%v, want incomplete", ws.MaxHandshake-1, pn, perr)
			}
			if _, pn, perr := ws.ParseHandshake(big); pn != 0 || perr == nil || perr.(*ws.Error).Status != 431 {
				t.Fatalf("grown to %d bytes: n=%d err=%v, want 431", ws.MaxHandshake, pn, perr)
			}
		}
		if n > 0 {
			k := bytes.Index(data, []byte("\r\n")) + 2
			for _, size := range []int{ws.MaxHandshake, ws.MaxHandshake + 1} {
				pad := size - n - len("X-Pad: \r\n")
				if pad < 0 {
					continue
				}
				big := append(append(append(append([]byte(nil), data[:k]...), "X-Pad: "...), bytes.Repeat([]byte("p"), pad)...), "\r\n"...)
				big = append(big, data[k:n]...)
				ph, pn, perr := ws.ParseHandshake(big)
				if size <= ws.MaxHandshake && (perr != nil || pn != size || !bytes.Equal(ph.Key, h.Key)) {
					t.Fatalf("padded to %d bytes: n=%d err=%v", size, pn, perr)
				}
				if size > ws.MaxHandshake && (pn != 0 || perr == nil || perr.(*ws.Error).Status != 431) {
					t.Fatalf("padded to %d bytes: n=%d err=%v, want 431", size, pn, perr)
				}
			}
		}

		// Each prefix checked (the input split into two reads) is
		// incomplete or gives the whole input's answer.
		check := func(i int) {
			if i < 0 || i >= len(data) {
				return
			}
			ph, pn, perr := ws.ParseHandshake(data[:i])
			switch {
			case perr != nil:
				if perr != err {
					t.Fatalf("prefix of %d: %v, whole input: n=%d err=%v", i, perr, n, err)
				}
			case pn == 0:
				if end >= 0 && i >= end+4 {
					t.Fatalf("prefix of %d holds the blank line but is incomplete", i)
				}
				if i >= ws.MaxHandshake {
					t.Fatalf("prefix of %d (limit %d) is incomplete", i, ws.MaxHandshake)
				}
			default:
				if pn != n || err != nil || !bytes.Equal(ph.Key, h.Key) || !bytes.Equal(ph.Origin, h.Origin) || ph.Subprotocol != h.Subprotocol {
					t.Fatalf("prefix of %d: n=%d h=%+v, whole input: n=%d err=%v", i, pn, ph, n, err)
				}
			}
		}
		// All prefixes of short inputs; for longer ones, the prefixes
		// around the middle, the blank line and the limit. (Checking
		// every prefix of long inputs makes each run slow, and the fuzzer
		// minimizes each new input by running it thousands of times.)
		limit := len(data)
		if end >= 0 {
			limit = min(limit, end+4)
		}
		if limit <= 64 {
			for i := range limit {
				check(i)
			}
		} else {
			for _, i := range []int{0, 1, 2, limit / 3, limit / 2, limit - 2, limit - 1, ws.MaxHandshake - 1, ws.MaxHandshake, ws.MaxHandshake + 1} {
				check(i)
			}
		}
		for _, i := range []int{end, end + 1, end + 2, end + 3, end + 4, end + 5, len(data) - 1} {
			check(i)
		}
	})
}

// aliases reports whether sub is a sub-slice of b.
func aliases(b, sub []byte) bool {
	if len(sub) == 0 || len(b) == 0 {
		return false
	}
	for i := range b[:len(b)-len(sub)+1] {
		if &b[i] == &sub[0] {
			return true
		}
	}
	return false
}

// The seed corpora of the client side are in
// testdata/fuzz/FuzzParseServerHeader (a server frame for every opcode
// and length form, a fragment, and each kind of invalid header, masked
// included) and testdata/fuzz/FuzzParseAccept (the package's own answer
// to rfcKey, other spellings, and each kind of refusal).

// FuzzParseServerHeader checks ParseServerHeader on arbitrary bytes and
// limits: it never panics; a parsed header is unmasked, within the limit
// and exactly the canonical encoding of its fields; it agrees with
// ParseHeader on the same header with a mask key inserted (the two sides
// differ in the mask only); and parsing is monotonic, as FuzzParseHeader
// checks.
func FuzzParseServerHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, max32 uint32) {
		max := int(max32)
		h, n, err := ws.ParseServerHeader(data, max)
		if n < 0 || n > len(data) {
			t.Fatalf("n=%d for %d bytes", n, len(data))
		}
		switch {
		case err != nil:
			if n != 0 {
				t.Fatalf("n=%d with error %v", n, err)
			}
			e, ok := err.(*ws.Error)
			if !ok || e.Status != 0 || (e.Code != ws.CloseProtocol && e.Code != ws.CloseTooBig) {
				t.Fatalf("error %#v", err)
			}
			if (e.Code == ws.CloseTooBig) != (err == ws.ErrTooBig) {
				t.Fatalf("too big but not ErrTooBig: %v", err)
			}
		case n == 0:
			if len(data) >= 2 && len(data) >= headerLen(data)-4 {
				t.Fatalf("incomplete with %d bytes, header is %d", len(data), headerLen(data)-4)
			}
		default:
			if n != headerLen(data)-4 {
				t.Fatalf("n=%d, header is %d", n, headerLen(data)-4)
			}
			if h.Masked || h.Mask != ([4]byte{}) || h.Len < 0 || h.Len > max {
				t.Fatalf("accepted %+v, max %d", h, max)
			}
			canon := ws.AppendHeader(nil, h.Op, h.Len)
			if !h.Fin {
				canon[0] &^= 0x80
			}
			if !bytes.Equal(canon, data[:n]) {
				t.Fatalf("header % x parsed as %+v, which encodes as % x", data[:n], h, canon)
			}
		}

		// The same header from a client: mask bit set, a key after the
		// length. ParseHeader must say what ParseServerHeader said, but
		// for the mask.
		if len(data) >= 2 && data[1]&0x80 == 0 {
			hl := headerLen(data) - 4
			masked := append([]byte{data[0], data[1] | 0x80}, data[2:min(len(data), hl)]...)
			if len(data) >= hl {
				masked = append(append(masked, testMask[:]...), data[hl:]...)
			}
			ch, cn, cerr := ws.ParseHeader(masked, max)
			switch {
			case err != nil || cerr != nil:
				if cerr != err {
					t.Fatalf("server side: %v, client side: %v", err, cerr)
				}
			case n == 0:
				// The client side waits for the mask key too.
				if cn != 0 && len(data) < hl {
					t.Fatalf("server side incomplete, client side n=%d", cn)
				}
			default:
				if cn != n+4 || ch.Fin != h.Fin || ch.Op != h.Op || ch.Len != h.Len || ch.Mask != testMask {
					t.Fatalf("server side %+v n=%d, client side %+v n=%d", h, n, ch, cn)
				}
			}
		} else if len(data) >= 2 && err == nil {
			t.Fatalf("accepted a masked header % x (n=%d)", data[:2], n)
		}

		// Monotonic in the input: incomplete, then decided for good.
		for i := 0; i < len(data); i++ {
			ph, pn, perr := ws.ParseServerHeader(data[:i], max)
			checkPrefix(t, i, ph, pn, perr, h, n, err)
		}
	})
}

// FuzzParseAccept checks ParseAccept, for rfcKey, on arbitrary bytes: it
// never panics; an accepted answer is consumed exactly up to its first
// blank line, within MaxAccept, is a 101 and carries rfcKey's accept
// value; an incomplete one has no blank line and is under the limit; and
// every prefix (the answer split into two reads) is incomplete or gives
// the whole input's answer.
func FuzzParseAccept(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ws.ParseAccept(data, rfcKey)
		end := bytes.Index(data, []byte("\r\n\r\n"))
		switch {
		case err != nil:
			if n != 0 {
				t.Fatalf("n=%d with error %v", n, err)
			}
			if end < 0 && len(data) < ws.MaxAccept {
				t.Fatalf("error %v before the answer is complete", err)
			}
		case n == 0:
			if end >= 0 || len(data) >= ws.MaxAccept {
				t.Fatalf("incomplete with %d bytes, blank line at %d", len(data), end)
			}
		default:
			if end < 0 || n != end+4 || n > ws.MaxAccept {
				t.Fatalf("n=%d, first blank line ends at %d", n, end+4)
			}
			if !bytes.HasPrefix(data, []byte("HTTP/1.")) || string(data[9:12]) != "101" {
				t.Fatalf("accepted status line %q", data[:min(n, 40)])
			}
			if !bytes.Contains(data[:n], []byte(rfcAccept)) {
				t.Fatalf("accepted without the accept value: %q", data[:n])
			}
		}
		limit := len(data)
		if end >= 0 {
			limit = min(limit, end+4)
		}
		for i := range limit {
			pn, perr := ws.ParseAccept(data[:i], rfcKey)
			switch {
			case perr != nil:
				if err == nil {
					t.Fatalf("prefix of %d: %v, whole input: n=%d", i, perr, n)
				}
			case pn != 0:
				t.Fatalf("prefix of %d (blank line ends at %d) parsed with n=%d", i, end+4, pn)
			}
		}
	})
}

// checkPrefix checks what a header parser said of a prefix of i bytes
// (ph, pn, perr) against what it said of the whole input (h, n, err): the
// same error, incomplete, or the same header.
func checkPrefix(t *testing.T, i int, ph ws.Header, pn int, perr error, h ws.Header, n int, err error) {
	t.Helper()
	switch {
	case perr != nil:
		if perr != err {
			t.Fatalf("prefix of %d: %v, whole input: n=%d err=%v", i, perr, n, err)
		}
	case pn == 0:
		if err == nil && n != 0 && i >= n {
			t.Fatalf("prefix of %d incomplete, whole input parsed with n=%d", i, n)
		}
	default:
		if pn != n || ph != h || err != nil {
			t.Fatalf("prefix of %d: n=%d h=%+v, whole input: n=%d h=%+v err=%v", i, pn, ph, n, h, err)
		}
	}
}
