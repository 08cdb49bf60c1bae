package websocket_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	ws "github.com/longlink/longlink/websocket"
)

// testMax is the payload limit the frame tests parse with.
const testMax = 1 << 20

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame encodes a masked client frame (RFC 6455 section 5.2) with
// the minimal length form, masking a copy of payload.
func clientFrame(fin bool, op byte, mask [4]byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range b[start:] {
		b[start+i] ^= mask[i&3]
	}
	return b
}

// rawHeader builds a header from its first byte, the 7-bit length field
// (mask bit added), an extended length of extLen bytes and the mask.
func rawHeader(b0 byte, len7 byte, ext uint64, extLen int, mask [4]byte) []byte {
	b := []byte{b0, 0x80 | len7}
	switch extLen {
	case 2:
		b = binary.BigEndian.AppendUint16(b, uint16(ext))
	case 8:
		b = binary.BigEndian.AppendUint64(b, ext)
	}
	return append(b, mask[:]...)
}

func payloadOf(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

// frame is one parsed frame, its payload unmasked.
type frame struct {
	fin     bool
	op      byte
	payload []byte
}

func (f frame) String() string {
	return fmt.Sprintf("{fin=%v op=%#x len=%d}", f.fin, f.op, len(f.payload))
}

// reader mimics the gateway's feed loop (conn/ws.go feedWS): bytes arrive
// in chunks and are appended to a buffer, complete frames are consumed
// from its front, and what remains is kept for the next read. After each
// chunk it checks that ParseHeader reports "incomplete" exactly when the
// buffer does not hold the whole header.
type reader struct {
	t      *testing.T
	max    int
	buf    []byte
	frames []frame
}

func (r *reader) feed(chunk []byte) error {
	r.buf = append(r.buf, chunk...)
	for {
		h, n, err := ws.ParseHeader(r.buf, r.max)
		if err != nil {
			return err
		}
		if n == 0 {
			if hl := headerLen(r.buf); hl != 0 && len(r.buf) >= hl {
				r.t.Fatalf("incomplete with %d bytes buffered, header is %d", len(r.buf), hl)
			}
			return nil
		}
		if hl := headerLen(r.buf); n != hl {
			r.t.Fatalf("n=%d, want header length %d", n, hl)
		}
		if len(r.buf)-n < h.Len {
			return nil // wait for the payload
		}
		p := append([]byte(nil), r.buf[n:n+h.Len]...)
		ws.Unmask(p, h.Mask)
		r.frames = append(r.frames, frame{h.Fin, h.Op, p})
		r.buf = r.buf[n+h.Len:]
	}
}

// headerLen is the length of the masked client header at the start of
// b, from its first two bytes, or 0 when b is shorter than two bytes.
func headerLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] & 0x7F {
	case 126:
		return 8
	case 127:
		return 14
	}
	return 6
}

func TestParseHeaderLengthForms(t *testing.T) {
	tests := []struct {
		size, hdr int
	}{
		{0, 6}, {1, 6}, {125, 6},
		{126, 8}, {127, 8}, {1000, 8}, {65535, 8},
		{65536, 14}, {65537, 14}, {testMax, 14},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("size=%d", tt.size), func(t *testing.T) {
			p := payloadOf(tt.size)
			b := clientFrame(true, ws.OpBinary, testMask, p)
			h, n, err := ws.ParseHeader(b, testMax)
			if err != nil || n != tt.hdr {
				t.Fatalf("n=%d err=%v, want n=%d", n, err, tt.hdr)
			}
			want := ws.Header{Fin: true, Op: ws.OpBinary, Masked: true, Mask: testMask, Len: tt.size}
			if h != want {
				t.Fatalf("header %+v, want %+v", h, want)
			}
			if n+h.Len != len(b) {
				t.Fatalf("n+Len=%d, frame is %d bytes", n+h.Len, len(b))
			}
			got := b[n:]
			ws.Unmask(got, h.Mask)
			if !bytes.Equal(got, p) {
				t.Fatalf("payload differs after Unmask")
			}
			// The header alone, one byte at a time: incomplete until the
			// mask is in, then the same header.
			b = clientFrame(true, ws.OpBinary, testMask, p)
			for i := 0; i < tt.hdr; i++ {
				h, n, err := ws.ParseHeader(b[:i], testMax)
				if n != 0 || err != nil {
					t.Fatalf("%d header bytes: n=%d err=%v h=%+v, want incomplete", i, n, err, h)
				}
			}
			for i := tt.hdr; i <= min(len(b), tt.hdr+3); i++ {
				if h, n, err := ws.ParseHeader(b[:i], testMax); h != want || n != tt.hdr || err != nil {
					t.Fatalf("%d bytes: n=%d err=%v h=%+v", i, n, err, h)
				}
			}
		})
	}
}

// TestParseHeaderFeed feeds a stream of every kind of valid frame whole,
// one byte at a time and in random chunks, through a reader that checks
// ParseHeader's answer after each step (STYLE item 14).
func TestParseHeaderFeed(t *testing.T) {
	var stream []byte
	var want []frame
	add := func(fin bool, op byte, p []byte) {
		mask := [4]byte{byte(len(want)), 0xA5, byte(len(p)), 0x5A}
		stream = append(stream, clientFrame(fin, op, mask, p)...)
		want = append(want, frame{fin, op, p})
	}
	add(true, ws.OpBinary, payloadOf(10))
	add(true, ws.OpText, []byte("héllo"))
	add(false, ws.OpBinary, payloadOf(3))
	add(true, ws.OpPing, []byte("ping in the middle"))
	add(false, ws.OpContinuation, payloadOf(126))
	add(true, ws.OpContinuation, nil)
	add(true, ws.OpPong, nil)
	add(true, ws.OpBinary, payloadOf(0))
	add(true, ws.OpBinary, payloadOf(125))
	add(true, ws.OpBinary, payloadOf(65535))
	add(true, ws.OpBinary, payloadOf(65536))
	add(true, ws.OpPing, payloadOf(125))
	add(true, ws.OpClose, append([]byte{0x03, 0xE8}, "bye"...))

	check := func(t *testing.T, r *reader) {
		t.Helper()
		if len(r.buf) != 0 {
			t.Fatalf("%d bytes left over", len(r.buf))
		}
		if len(r.frames) != len(want) {
			t.Fatalf("%d frames, want %d: %v", len(r.frames), len(want), r.frames)
		}
		for i, f := range r.frames {
			w := want[i]
			if f.fin != w.fin || f.op != w.op || !bytes.Equal(f.payload, w.payload) {
				t.Fatalf("frame %d: %v, want %v", i, f, w)
			}
		}
	}
	t.Run("whole", func(t *testing.T) {
		r := &reader{t: t, max: testMax}
		if err := r.feed(stream); err != nil {
			t.Fatal(err)
		}
		check(t, r)
	})
	t.Run("byte by byte", func(t *testing.T) {
		r := &reader{t: t, max: testMax}
		for i := range stream {
			if err := r.feed(stream[i : i+1]); err != nil {
				t.Fatalf("byte %d: %v", i, err)
			}
		}
		check(t, r)
	})
	t.Run("random chunks", func(t *testing.T) {
		for seed := range uint64(20) {
			rnd := rand.New(rand.NewPCG(seed, 7))
			r := &reader{t: t, max: testMax}
			for i := 0; i < len(stream); {
				n := min(len(stream)-i, 1+rnd.IntN(1+rnd.IntN(300)))
				if err := r.feed(stream[i : i+n]); err != nil {
					t.Fatalf("seed %d at %d: %v", seed, i, err)
				}
				i += n
			}
			check(t, r)
		}
	})
}

func TestParseHeaderErrors(t *testing.T) {
	type tc struct {
		name string
		b    []byte
		max  int
		code uint16
	}
	tests := []tc{
		// Non-minimal lengths and the 64-bit high bit.
		{"126 form with 0", rawHeader(0x82, 126, 0, 2, testMask), testMax, ws.CloseProtocol},
		{"126 form with 125", rawHeader(0x82, 126, 125, 2, testMask), testMax, ws.CloseProtocol},
		{"127 form with 0", rawHeader(0x82, 127, 0, 8, testMask), testMax, ws.CloseProtocol},
		{"127 form with 125", rawHeader(0x82, 127, 125, 8, testMask), testMax, ws.CloseProtocol},
		{"127 form with 65535", rawHeader(0x82, 127, 65535, 8, testMask), testMax, ws.CloseProtocol},
		{"127 form with high bit", rawHeader(0x82, 127, 1<<63|70000, 8, testMask), math.MaxInt, ws.CloseProtocol},
		{"127 form all ones", rawHeader(0x82, 127, math.MaxUint64, 8, testMask), math.MaxInt, ws.CloseProtocol},
		// Unmasked client frames.
		{"unmasked", []byte{0x82, 0x05, 1, 2, 3, 4, 5}, testMax, ws.CloseProtocol},
		{"unmasked empty", []byte{0x82, 0x00}, testMax, ws.CloseProtocol},
		{"unmasked 126 form", []byte{0x82, 126, 0, 200}, testMax, ws.CloseProtocol},
		{"unmasked close", []byte{0x88, 0x00}, testMax, ws.CloseProtocol},
		// Control frames fragmented or over 125 bytes.
		{"ping FIN=0", rawHeader(0x09, 0, 0, 0, testMask), testMax, ws.CloseProtocol},
		{"pong FIN=0", rawHeader(0x0A, 5, 0, 0, testMask), testMax, ws.CloseProtocol},
		{"close FIN=0", rawHeader(0x08, 2, 0, 0, testMask), testMax, ws.CloseProtocol},
		{"ping of 126", rawHeader(0x89, 126, 126, 2, testMask), testMax, ws.CloseProtocol},
		{"close of 65535", rawHeader(0x88, 126, 65535, 2, testMask), testMax, ws.CloseProtocol},
		{"pong in 127 form", rawHeader(0x8A, 127, 70000, 8, testMask), testMax, 0}, // protocol error or too big
		// Over the limit, decided from the header alone.
		{"7-bit over max", rawHeader(0x82, 101, 0, 0, testMask), 100, ws.CloseTooBig},
		{"16-bit over max", rawHeader(0x82, 126, 1001, 2, testMask), 1000, ws.CloseTooBig},
		{"64-bit over max", rawHeader(0x82, 127, testMax+1, 8, testMask), testMax, ws.CloseTooBig},
		{"64-bit huge", rawHeader(0x82, 127, 1<<62, 8, testMask), testMax, ws.CloseTooBig},
		{"64-bit largest legal", rawHeader(0x82, 127, math.MaxInt64, 8, testMask), testMax, ws.CloseTooBig},
		{"continuation over max", rawHeader(0x00, 126, 200, 2, testMask), 199, ws.CloseTooBig},
	}
	for rsv := byte(1); rsv < 8; rsv++ {
		tests = append(tests, tc{fmt.Sprintf("rsv=%03b", rsv), rawHeader(0x82|rsv<<4, 5, 0, 0, testMask), testMax, ws.CloseProtocol})
	}
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		tests = append(tests, tc{fmt.Sprintf("opcode %#x", op), rawHeader(0x80|op, 5, 0, 0, testMask), testMax, ws.CloseProtocol})
		tests = append(tests, tc{fmt.Sprintf("opcode %#x FIN=0", op), rawHeader(op, 5, 0, 0, testMask), testMax, ws.CloseProtocol})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := ws.ParseHeader(tt.b, tt.max)
			if err == nil {
				t.Fatalf("n=%d h=%+v, want an error", n, h)
			}
			if n != 0 {
				t.Errorf("n=%d with an error", n)
			}
			e := wsError(t, err)
			if e.Status != 0 {
				t.Errorf("framing error with HTTP status %d", e.Status)
			}
			if tt.code != 0 && e.Code != tt.code {
				t.Errorf("code %d (%v), want %d", e.Code, e, tt.code)
			}
			if tt.code == 0 && e.Code != ws.CloseProtocol && e.Code != ws.CloseTooBig {
				t.Errorf("code %d (%v)", e.Code, e)
			}
			if e.Code == ws.CloseTooBig && err != ws.ErrTooBig {
				t.Errorf("too big, but not ErrTooBig: %v", err)
			}
			// The error does not wait for the mask: it is reported as soon
			// as the bytes that decide it are in, and never changes.
			decided := -1
			for i := 0; i <= len(tt.b); i++ {
				_, n, perr := ws.ParseHeader(tt.b[:i], tt.max)
				if n != 0 {
					t.Fatalf("%d bytes: n=%d", i, n)
				}
				if perr == nil {
					if decided >= 0 {
						t.Fatalf("%d bytes: incomplete after an error at %d", i, decided)
					}
					continue
				}
				if perr != err {
					t.Fatalf("%d bytes: %v, whole header: %v", i, perr, err)
				}
				if decided < 0 {
					decided = i
				}
			}
			if tt.b[1]&0x80 != 0 && decided > len(tt.b)-4 {
				t.Errorf("error decided only at %d of %d bytes: it waited for the mask", decided, len(tt.b))
			}
		})
	}
}

// TestParseHeaderTooBigBeforePayload checks that a frame over the limit
// is refused from its header alone, with no payload buffered, for each
// length form, and that the limit itself is accepted.
func TestParseHeaderTooBigBeforePayload(t *testing.T) {
	for _, max := range []int{0, 1, 125, 126, 1000, 65535, 65536, 70000} {
		for _, size := range []int{max, max + 1} {
			p := payloadOf(size)
			b := clientFrame(true, ws.OpBinary, testMask, p)
			hdr := headerLen(b)
			h, n, err := ws.ParseHeader(b[:hdr], max)
			if size <= max {
				if err != nil || n != hdr || h.Len != size {
					t.Errorf("max=%d size=%d: n=%d len=%d err=%v", max, size, n, h.Len, err)
				}
				continue
			}
			if err != ws.ErrTooBig {
				t.Errorf("max=%d size=%d: n=%d err=%v, want ErrTooBig", max, size, n, err)
			}
		}
	}
}

func TestParseHeaderFields(t *testing.T) {
	for _, op := range []byte{ws.OpContinuation, ws.OpText, ws.OpBinary, ws.OpClose, ws.OpPing, ws.OpPong} {
		for _, fin := range []bool{true, false} {
			if op >= ws.OpClose && !fin {
				continue
			}
			b := clientFrame(fin, op, testMask, []byte("abc"))
			h, n, err := ws.ParseHeader(b, testMax)
			want := ws.Header{Fin: fin, Op: op, Masked: true, Mask: testMask, Len: 3}
			if err != nil || n != 6 || h != want {
				t.Errorf("op %#x fin %v: h=%+v n=%d err=%v", op, fin, h, n, err)
			}
		}
	}
}

func TestUnmask(t *testing.T) {
	rnd := rand.New(rand.NewPCG(4, 5))
	for _, size := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 64, 100, 4096, 4099} {
		p := payloadOf(size)
		var mask [4]byte
		binary.LittleEndian.PutUint32(mask[:], rnd.Uint32())
		b := append([]byte(nil), p...)
		ws.Unmask(b, mask)
		for i := range b {
			if b[i] != p[i]^mask[i%4] {
				t.Fatalf("size %d: byte %d is %#x, want %#x", size, i, b[i], p[i]^mask[i%4])
			}
		}
		ws.Unmask(b, mask)
		if !bytes.Equal(b, p) {
			t.Fatalf("size %d: masking twice is not the identity", size)
		}
	}
	// Unmasking a sub-slice in place leaves the bytes around it alone.
	buf := payloadOf(32)
	orig := append([]byte(nil), buf...)
	ws.Unmask(buf[5:20], testMask)
	if !bytes.Equal(buf[:5], orig[:5]) || !bytes.Equal(buf[20:], orig[20:]) {
		t.Fatal("Unmask wrote outside its slice")
	}
}

// serverFrame is a parsed server frame.
type serverFrame struct {
	fin     bool
	rsv     byte
	op      byte
	masked  bool
	hdr     int
	payload []byte
}

// parseServerFrame parses one whole unmasked server frame at the start of
// b per RFC 6455 section 5.2, checking the minimal length rule.
func parseServerFrame(t *testing.T, b []byte) serverFrame {
	t.Helper()
	if len(b) < 2 {
		t.Fatalf("frame of %d bytes", len(b))
	}
	f := serverFrame{fin: b[0]&0x80 != 0, rsv: b[0] >> 4 & 7, op: b[0] & 0xF, masked: b[1]&0x80 != 0}
	n := uint64(b[1] & 0x7F)
	f.hdr = 2
	switch n {
	case 126:
		n = uint64(binary.BigEndian.Uint16(b[2:]))
		f.hdr = 4
		if n < 126 {
			t.Fatalf("16-bit length %d is not minimal", n)
		}
	case 127:
		n = binary.BigEndian.Uint64(b[2:])
		f.hdr = 10
		if n < 1<<16 || n>>63 != 0 {
			t.Fatalf("64-bit length %d is not minimal or has the high bit", n)
		}
	}
	if f.masked {
		f.hdr += 4
	}
	if uint64(len(b)-f.hdr) < n {
		t.Fatalf("frame truncated: %d of %d payload bytes", len(b)-f.hdr, n)
	}
	f.payload = b[f.hdr : f.hdr+int(n)]
	return f
}

func TestAppendHeader(t *testing.T) {
	for _, tt := range []struct{ size, hdr int }{{0, 2}, {1, 2}, {125, 2}, {126, 4}, {65535, 4}, {65536, 10}, {1 << 20, 10}} {
		for _, op := range []byte{ws.OpBinary, ws.OpText, ws.OpPong, ws.OpClose} {
			if op >= ws.OpClose && tt.size > 125 {
				continue
			}
			p := payloadOf(tt.size)
			b := ws.AppendHeader([]byte("kept"), op, tt.size)
			if string(b[:4]) != "kept" {
				t.Fatalf("dst not kept")
			}
			b = append(b[4:], p...)
			f := parseServerFrame(t, b)
			if !f.fin || f.rsv != 0 || f.op != op || f.masked || f.hdr != tt.hdr || !bytes.Equal(f.payload, p) || f.hdr+len(f.payload) != len(b) {
				t.Errorf("size %d op %#x: %+v", tt.size, op, f)
			}
		}
	}
}

func TestAppendClose(t *testing.T) {
	tests := []struct {
		name   string
		code   uint16
		reason string
		want   string
	}{
		{"no reason", ws.CloseNormal, "", ""},
		{"short reason", ws.CloseTooBig, "message too big", "message too big"},
		{"123 bytes fit", ws.ClosePolicy, strings.Repeat("r", 123), strings.Repeat("r", 123)},
		{"124 bytes cut", ws.ClosePolicy, strings.Repeat("r", 124), strings.Repeat("r", 123)},
		{"long reason cut", ws.CloseGoingAway, strings.Repeat("0123456789", 50), strings.Repeat("0123456789", 13)[:123]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ws.AppendClose(nil, tt.code, tt.reason)
			f := parseServerFrame(t, b)
			if !f.fin || f.op != ws.OpClose || f.masked || len(f.payload) > 125 || f.hdr+len(f.payload) != len(b) {
				t.Fatalf("frame %+v", f)
			}
			code, err := ws.CloseCode(f.payload)
			if err != nil || code != tt.code {
				t.Errorf("code %d err %v, want %d", code, err, tt.code)
			}
			if got := string(f.payload[2:]); got != tt.want {
				t.Errorf("reason %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAppendCloseUTF8 checks that cutting a long reason keeps it valid
// UTF-8. RFC 6455 section 5.5.1: the body after the code "MAY contain
// UTF-8-encoded data"; section 8.1: a receiver that finds invalid UTF-8
// MUST fail the connection. Cutting at byte 123 can split a rune.
func TestAppendCloseUTF8(t *testing.T) {
	for _, reason := range []string{
		strings.Repeat("é", 100),         // 2-byte runes: byte 123 is inside one
		"ab" + strings.Repeat("日本語", 20), // 3-byte runes
		"x" + strings.Repeat("😀", 40),    // 4-byte runes
		strings.Repeat("a", 122) + "é!",  // the cut lands exactly in the last rune
	} {
		b := ws.AppendClose(nil, ws.ClosePolicy, reason)
		f := parseServerFrame(t, b)
		got := f.payload[2:]
		if !utf8.Valid(got) {
			t.Errorf("reason of %d bytes cut to %d bytes of invalid UTF-8: ...%q", len(reason), len(got), got[max(0, len(got)-6):])
			continue
		}
		if len(f.payload) > 125 || !strings.HasPrefix(reason, string(got)) || len(got) < 120 {
			t.Errorf("reason cut to %q", got)
		}
	}
}

func TestCloseCode(t *testing.T) {
	if code, err := ws.CloseCode(nil); code != 1005 || err != nil {
		t.Errorf("empty: %d %v, want 1005", code, err)
	}
	if _, err := ws.CloseCode([]byte{0x03}); err == nil {
		t.Errorf("one byte: no error")
	}
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4000, 4999} {
		p := binary.BigEndian.AppendUint16(nil, code)
		if got, err := ws.CloseCode(p); got != code || err != nil {
			t.Errorf("code %d: %d %v", code, got, err)
		}
		if got, err := ws.CloseCode(append(p, "reason"...)); got != code || err != nil {
			t.Errorf("code %d with a reason: %d %v", code, got, err)
		}
	}
}

// TestCloseCodeInvalid checks codes that may not appear in a close frame.
// RFC 6455 section 7.4.1: 1005, 1006 and 1015 "MUST NOT be set as a
// status code in a Close control frame by an endpoint"; section 7.4.2:
// 0-999 are not used, and only 1000-2999 (as registered) and 3000-4999
// are defined. A real client (github.com/coder/websocket, close.go,
// validWireCloseCode) refuses all of these. The gateway (conn/ws.go,
// wsMessage, OpClose) echoes the code CloseCode returns in its own close
// frame, so an invalid code from a client must come back as an error.
func TestCloseCodeInvalid(t *testing.T) {
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535} {
		p := binary.BigEndian.AppendUint16(nil, code)
		if got, err := ws.CloseCode(p); err == nil {
			t.Errorf("code %d on the wire: got %d and no error", code, got)
		}
	}
}

// TestCloseCodeReason checks the reason of a close frame: it must be
// UTF-8 (RFC 6455 section 5.5.1), and one that is not is ErrCloseReason,
// which the gateway answers with 1007 (section 7.4.1).
func TestCloseCodeReason(t *testing.T) {
	for _, reason := range []string{"", "bye", "ça va", "设备", "\u0000"} {
		p := append(binary.BigEndian.AppendUint16(nil, 1000), reason...)
		if code, err := ws.CloseCode(p); code != 1000 || err != nil {
			t.Errorf("reason %q: %d %v, want 1000", reason, code, err)
		}
	}
	for _, reason := range []string{"\xff", "ok\xc3", "\xed\xa0\x80", "\xc0\xaf", "caf\xe9"} {
		p := append(binary.BigEndian.AppendUint16(nil, 1000), reason...)
		code, err := ws.CloseCode(p)
		if err != ws.ErrCloseReason || code != 0 {
			t.Errorf("reason %q: %d %v, want ErrCloseReason", reason, code, err)
		}
	}
	if ws.ErrCloseReason.Code != ws.CloseInvalidData || ws.CloseInvalidData != 1007 {
		t.Errorf("ErrCloseReason carries code %d", ws.ErrCloseReason.Code)
	}
	// An invalid code is reported first: 1002, not 1007.
	if _, err := ws.CloseCode([]byte{0x03, 0xED, 0xff}); err == nil || err == ws.ErrCloseReason {
		t.Errorf("code 1005 with a bad reason: %v, want the close code error", err)
	}
}

// TestParseHeaderNoAlloc guards the reactor's hot path: parsing a header
// and unmasking its payload allocate nothing.
func TestParseHeaderNoAlloc(t *testing.T) {
	frame := clientFrame(true, ws.OpBinary, testMask, payloadOf(70000))
	allocs := testing.AllocsPerRun(100, func() {
		h, n, err := ws.ParseHeader(frame, testMax)
		if err != nil || n == 0 {
			t.Fatal(n, err)
		}
		ws.Unmask(frame[n:n+64], h.Mask)
		if _, _, err := ws.ParseHeader(frame[:3], testMax); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per header", allocs)
	}
}
