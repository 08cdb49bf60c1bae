package websocket_test

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"

	ws "github.com/longlink/longlink/websocket"
)

// rfcKey and rfcAccept are the example of RFC 6455 section 1.3.
const (
	rfcKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// request joins a request line and header lines into a handshake.
func request(first string, headers ...string) []byte {
	return []byte(first + "\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n")
}

// validHeaders are the header lines of a minimal valid handshake.
func validHeaders() []string {
	return []string{
		"Host: gw.example.com",
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + rfcKey,
		"Sec-WebSocket-Version: 13",
	}
}

// replace returns validHeaders with the header called name replaced by
// line, or removed when line is empty.
func replace(name, line string) []string {
	var out []string
	for _, h := range validHeaders() {
		if strings.HasPrefix(strings.ToLower(h), strings.ToLower(name)+":") {
			if line != "" {
				out = append(out, line)
			}
			continue
		}
		out = append(out, h)
	}
	return out
}

// wsError asserts that err is a *ws.Error and returns it.
func wsError(t *testing.T, err error) *ws.Error {
	t.Helper()
	e, ok := err.(*ws.Error)
	if !ok {
		t.Fatalf("error %v (%T) is not a *websocket.Error", err, err)
	}
	return e
}

// checkPrefixes checks that every proper prefix of req is incomplete
// (n == 0, nil error) when feeding it one byte at a time.
func checkPrefixes(t *testing.T, req []byte) {
	t.Helper()
	for i := 0; i < len(req); i++ {
		h, n, err := ws.ParseHandshake(req[:i])
		if n != 0 || err != nil || h.Key != nil || h.Subprotocol {
			t.Fatalf("prefix of %d/%d bytes: n=%d err=%v h=%+v, want incomplete", i, len(req), n, err, h)
		}
	}
}

func TestParseHandshakeValid(t *testing.T) {
	tests := []struct {
		name   string
		req    []byte
		subpro bool
	}{
		{"minimal", request("GET /ws HTTP/1.1", validHeaders()...), false},
		{"rfc example", request("GET /chat HTTP/1.1",
			"Host: server.example.com",
			"Upgrade: websocket",
			"Connection: Upgrade",
			"Sec-WebSocket-Key: "+rfcKey,
			"Origin: http://example.com",
			"Sec-WebSocket-Protocol: chat, superchat",
			"Sec-WebSocket-Version: 13"), false},
		{"case-insensitive names and tokens", request("GET / HTTP/1.1",
			"host: a",
			"UPGRADE: WebSocket",
			"connection: UPGRADE",
			"sec-websocket-key: "+rfcKey,
			"SEC-WEBSOCKET-VERSION: 13"), false},
		{"token lists and extra headers (Firefox)", request("GET /gw?x=1 HTTP/1.1",
			"Host: gw.example.com:8443",
			"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
			"Accept: */*",
			"Accept-Language: en-US,en;q=0.5",
			"Accept-Encoding: gzip, deflate, br",
			"Sec-WebSocket-Version: 13",
			"Origin: https://app.example.com",
			"Sec-WebSocket-Extensions: permessage-deflate",
			"Sec-WebSocket-Key: "+rfcKey,
			"Connection: keep-alive, Upgrade",
			"Sec-Fetch-Dest: empty",
			"Pragma: no-cache",
			"Cache-Control: no-cache",
			"Upgrade: websocket"), false},
		{"odd spacing around values", request("GET / HTTP/1.1",
			"Host:a",
			"Upgrade:websocket",
			"Connection:   keep-alive ,upgrade  ",
			"Sec-WebSocket-Key:\t"+rfcKey+" ",
			"Sec-WebSocket-Version:13"), false},
		{"subprotocol offered alone", request("GET / HTTP/1.1",
			append(validHeaders(), "Sec-WebSocket-Protocol: longlink.v1")...), true},
		{"subprotocol in a list", request("GET / HTTP/1.1",
			append(validHeaders(), "Sec-WebSocket-Protocol: chat, longlink.v1 , mqtt")...), true},
		{"subprotocol in a second header line", request("GET / HTTP/1.1",
			append(validHeaders(), "Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: longlink.v1")...), true},
		{"other subprotocols only", request("GET / HTTP/1.1",
			append(validHeaders(), "Sec-WebSocket-Protocol: longlink.v2, longlink")...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := ws.ParseHandshake(tt.req)
			if err != nil || n != len(tt.req) {
				t.Fatalf("n=%d err=%v, want n=%d", n, err, len(tt.req))
			}
			if string(h.Key) != rfcKey {
				t.Errorf("key %q, want %q", h.Key, rfcKey)
			}
			if h.Subprotocol != tt.subpro {
				t.Errorf("Subprotocol=%v, want %v", h.Subprotocol, tt.subpro)
			}

			// Bytes that follow the request (a pipelined first frame)
			// are not consumed.
			more := append(append([]byte(nil), tt.req...), 0x82, 0x80, 1, 2, 3, 4)
			if _, n, err := ws.ParseHandshake(more); err != nil || n != len(tt.req) {
				t.Errorf("with trailing frame: n=%d err=%v, want n=%d", n, err, len(tt.req))
			}

			// Fed one byte at a time: incomplete until the last byte.
			checkPrefixes(t, tt.req)

			// Fed in random chunks, as a reactor would see it.
			r := rand.New(rand.NewPCG(uint64(len(tt.req)), 1))
			for got := 0; got < len(tt.req); {
				got = min(len(tt.req), got+1+r.IntN(40))
				_, n, err := ws.ParseHandshake(tt.req[:got])
				want := 0
				if got == len(tt.req) {
					want = got
				}
				if n != want || err != nil {
					t.Fatalf("after %d bytes: n=%d err=%v, want n=%d", got, n, err, want)
				}
			}
		})
	}
}

// TestParseHandshakeKeyAliases checks that Key is a sub-slice of the
// input, as documented, so parsing does not copy it.
func TestParseHandshakeKeyAliases(t *testing.T) {
	req := request("GET / HTTP/1.1", validHeaders()...)
	h, _, err := ws.ParseHandshake(req)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(req, []byte(rfcKey))
	if &h.Key[0] != &req[i] {
		t.Errorf("Key does not alias the input")
	}
}

func TestParseHandshakeErrors(t *testing.T) {
	tests := []struct {
		name   string
		req    []byte
		status int
	}{
		{"POST", request("POST / HTTP/1.1", validHeaders()...), 405},
		{"lower-case get", request("get / HTTP/1.1", validHeaders()...), 405},
		{"HEAD", request("HEAD / HTTP/1.1", validHeaders()...), 405},
		{"no Upgrade", request("GET / HTTP/1.1", replace("Upgrade", "")...), 400},
		{"Upgrade not websocket", request("GET / HTTP/1.1", replace("Upgrade", "Upgrade: h2c")...), 400},
		{"no Connection", request("GET / HTTP/1.1", replace("Connection", "")...), 400},
		{"Connection keep-alive only", request("GET / HTTP/1.1", replace("Connection", "Connection: keep-alive")...), 400},
		{"Connection token as substring", request("GET / HTTP/1.1", replace("Connection", "Connection: Upgraded")...), 400},
		{"version 8", request("GET / HTTP/1.1", replace("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")...), 426},
		{"version 13 in a list", request("GET / HTTP/1.1", replace("Sec-WebSocket-Version", "Sec-WebSocket-Version: 13, 8")...), 426},
		{"no version", request("GET / HTTP/1.1", replace("Sec-WebSocket-Version", "")...), 426},
		{"no key", request("GET / HTTP/1.1", replace("Sec-WebSocket-Key", "")...), 400},
		{"empty key", request("GET / HTTP/1.1", replace("Sec-WebSocket-Key", "Sec-WebSocket-Key:")...), 400},
		{"key not base64", request("GET / HTTP/1.1", replace("Sec-WebSocket-Key", "Sec-WebSocket-Key: not*base64*at*all!!!!==")...), 400},
		{"key of 15 bytes", request("GET / HTTP/1.1", replace("Sec-WebSocket-Key", "Sec-WebSocket-Key: "+base64.StdEncoding.EncodeToString(make([]byte, 15)))...), 400},
		{"key of 17 bytes", request("GET / HTTP/1.1", replace("Sec-WebSocket-Key", "Sec-WebSocket-Key: "+base64.StdEncoding.EncodeToString(make([]byte, 17)))...), 400},
		{"key unpadded", request("GET / HTTP/1.1", replace("Sec-WebSocket-Key", "Sec-WebSocket-Key: "+strings.TrimRight(rfcKey, "="))...), 400},
		{"key url alphabet", request("GET / HTTP/1.1", replace("Sec-WebSocket-Key", "Sec-WebSocket-Key: "+base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}))...), 400},
		{"header line without colon", request("GET / HTTP/1.1", append(validHeaders(), "Bogus")...), 400},
		{"header with empty name", request("GET / HTTP/1.1", append(validHeaders(), ": x")...), 400},
		{"request line of two fields", request("GET HTTP/1.1", validHeaders()...), 400},
		{"request line of four fields", request("GET / x HTTP/1.1", validHeaders()...), 400},
		{"empty request target", request("GET  HTTP/1.1", validHeaders()...), 400},
		{"two Origin headers", request("GET / HTTP/1.1", append(validHeaders(), "Origin: https://a.example", "Origin: https://b.example")...), 400},
		{"not HTTP", request("GET / SPDY/3", validHeaders()...), 400},
		{"HTTP/2", request("GET / HTTP/2.0", validHeaders()...), 400},
		{"empty request", []byte("\r\n\r\n"), 400},
		{"garbage", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"), 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := ws.ParseHandshake(tt.req)
			if err == nil {
				t.Fatalf("n=%d, want an error with status %d", n, tt.status)
			}
			if n != 0 {
				t.Errorf("n=%d with an error, want 0", n)
			}
			if e := wsError(t, err); e.Status != tt.status || e.Code != 0 {
				t.Errorf("status %d code %d (%v), want status %d", e.Status, e.Code, e, tt.status)
			}
			// The error is only decided once the whole request is in.
			checkPrefixes(t, tt.req)
		})
	}
}

// TestParseHandshakeRFCRequirements covers the "MUST"s of RFC 6455
// section 4.2.1 (and section 11.3.1) that a server has to check: "If the
// server, while reading the handshake, finds that the client did not
// send a handshake that matches the description below ..., the server
// MUST stop processing the client's handshake and return an HTTP
// response with an appropriate error code (such as 400 Bad Request)."
func TestParseHandshakeRFCRequirements(t *testing.T) {
	tests := []struct {
		name string
		req  []byte
	}{
		// 4.2.1 item 1: "An HTTP/1.1 or higher GET request".
		{"HTTP/1.0", request("GET / HTTP/1.0", validHeaders()...)},
		// 4.2.1 item 2: "A |Host| header field"; RFC 7230 section 5.4
		// also requires a 400 for an HTTP/1.1 request without Host.
		{"no Host", request("GET / HTTP/1.1", replace("Host", "")...)},
		// 11.3.1: "The |Sec-WebSocket-Key| header field MUST NOT appear
		// more than once in an HTTP request."
		{"two keys", request("GET / HTTP/1.1", append(validHeaders(), "Sec-WebSocket-Key: "+base64.StdEncoding.EncodeToString(make([]byte, 16)))...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := ws.ParseHandshake(tt.req)
			if err == nil {
				t.Fatalf("accepted (n=%d), want a 400", n)
			}
			if e := wsError(t, err); e.Status != 400 {
				t.Errorf("status %d, want 400", e.Status)
			}
		})
	}
}

// TestParseHandshakeRepeatedListHeaders checks that a list header split
// over several lines is read as one list. RFC 7230 section 3.2.2: a
// recipient MAY combine multiple header fields with the same name into
// one "field-name: field-value" pair by appending each subsequent value
// to the combined value in order, separated by a comma, without changing
// the semantics; so the order of the lines must not matter.
func TestParseHandshakeRepeatedListHeaders(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
	}{
		{"Connection keep-alive then Upgrade", []string{"Connection: keep-alive", "Connection: Upgrade"}},
		{"Connection Upgrade then keep-alive", []string{"Connection: Upgrade", "Connection: keep-alive"}},
		{"Upgrade websocket then other", []string{"Upgrade: websocket", "Upgrade: foo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hs []string
			for _, h := range validHeaders() {
				if !strings.HasPrefix(h, "Connection:") && !strings.HasPrefix(h, "Upgrade:") {
					hs = append(hs, h)
				}
			}
			for _, h := range []string{"Connection: Upgrade", "Upgrade: websocket"} {
				name := h[:strings.IndexByte(h, ':')+1]
				if !strings.HasPrefix(tt.lines[0], name) {
					hs = append(hs, h)
				}
			}
			req := request("GET / HTTP/1.1", append(hs, tt.lines...)...)
			if _, n, err := ws.ParseHandshake(req); err != nil || n != len(req) {
				t.Errorf("n=%d err=%v, want the request accepted\n%s", n, err, req)
			}
		})
	}
}

func TestParseHandshakeTooLong(t *testing.T) {
	// A request of exactly size bytes, padded with an X-Pad header.
	sized := func(size int) []byte {
		base := request("GET / HTTP/1.1", validHeaders()...)
		pad := size - len(base) - len("X-Pad: \r\n")
		if pad < 0 {
			t.Fatalf("size %d too small", size)
		}
		req := request("GET / HTTP/1.1", append(validHeaders(), "X-Pad: "+strings.Repeat("p", pad))...)
		if len(req) != size {
			t.Fatalf("built %d bytes, want %d", len(req), size)
		}
		return req
	}

	t.Run("exactly the limit", func(t *testing.T) {
		req := sized(ws.MaxHandshake)
		if _, n, err := ws.ParseHandshake(req); err != nil || n != ws.MaxHandshake {
			t.Fatalf("n=%d err=%v, want n=%d", n, err, ws.MaxHandshake)
		}
	})
	t.Run("one past the limit", func(t *testing.T) {
		req := sized(ws.MaxHandshake + 1)
		_, n, err := ws.ParseHandshake(req)
		if err == nil || n != 0 {
			t.Fatalf("n=%d err=%v, want 431", n, err)
		}
		if e := wsError(t, err); e.Status != 431 {
			t.Errorf("status %d, want 431", e.Status)
		}
	})
	t.Run("no terminator", func(t *testing.T) {
		req := sized(ws.MaxHandshake + 100)
		req = req[:len(req)-4] // drop the final "\r\n\r\n"
		for i := 0; i < len(req); i++ {
			_, n, err := ws.ParseHandshake(req[:i])
			if i < ws.MaxHandshake {
				if n != 0 || err != nil {
					t.Fatalf("%d bytes: n=%d err=%v, want incomplete", i, n, err)
				}
				continue
			}
			if err == nil || n != 0 {
				t.Fatalf("%d bytes: n=%d err=%v, want 431", i, n, err)
			}
			if e := wsError(t, err); e.Status != 431 {
				t.Fatalf("%d bytes: status %d, want 431", i, e.Status)
			}
		}
	})
	t.Run("terminator far away", func(t *testing.T) {
		// A huge buffer whose terminator lies past the limit.
		req := append(bytes.Repeat([]byte("a"), 1<<20), "\r\n\r\n"...)
		_, _, err := ws.ParseHandshake(req)
		if err == nil || wsError(t, err).Status != 431 {
			t.Fatalf("err=%v, want 431", err)
		}
	})
}

// readResponse parses b as an HTTP response to a GET and returns it with
// its body; it fails if anything follows the body.
func readResponse(t *testing.T, b []byte) (*http.Response, []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(b))
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("not an HTTP response: %v\n%q", err, b)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	if br.Buffered() != 0 {
		t.Fatalf("%d bytes after the response", br.Buffered())
	}
	return resp, body
}

func TestAppendAccept(t *testing.T) {
	t.Run("rfc example", func(t *testing.T) {
		h, _, err := ws.ParseHandshake(request("GET /chat HTTP/1.1", validHeaders()...))
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte("kept")
		out := ws.AppendAccept(prefix, h)
		if !bytes.HasPrefix(out, []byte("kept")) {
			t.Fatalf("dst not kept: %q", out)
		}
		out = out[len(prefix):]
		if !bytes.HasPrefix(out, []byte("HTTP/1.1 101 ")) || !bytes.HasSuffix(out, []byte("\r\n\r\n")) {
			t.Fatalf("answer %q", out)
		}
		if !bytes.Contains(out, []byte("\r\nSec-WebSocket-Accept: "+rfcAccept+"\r\n")) {
			t.Errorf("answer lacks the RFC 6455 section 1.3 accept value %s:\n%s", rfcAccept, out)
		}
		resp, body := readResponse(t, out)
		if resp.StatusCode != 101 || len(body) != 0 {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if got := resp.Header.Get("Sec-WebSocket-Accept"); got != rfcAccept {
			t.Errorf("accept %q, want %q", got, rfcAccept)
		}
		if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !strings.EqualFold(resp.Header.Get("Connection"), "Upgrade") {
			t.Errorf("Upgrade %q Connection %q", resp.Header.Get("Upgrade"), resp.Header.Get("Connection"))
		}
		if _, ok := resp.Header["Sec-Websocket-Protocol"]; ok {
			t.Errorf("subprotocol answered though not offered")
		}
	})
	t.Run("subprotocol echoed when offered", func(t *testing.T) {
		h, _, err := ws.ParseHandshake(request("GET / HTTP/1.1", append(validHeaders(), "Sec-WebSocket-Protocol: chat, longlink.v1")...))
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := readResponse(t, ws.AppendAccept(nil, h))
		if got := resp.Header.Values("Sec-WebSocket-Protocol"); len(got) != 1 || got[0] != ws.Subprotocol {
			t.Errorf("Sec-WebSocket-Protocol %q, want exactly %q", got, ws.Subprotocol)
		}
	})
	t.Run("subprotocol not echoed when others offered", func(t *testing.T) {
		h, _, err := ws.ParseHandshake(request("GET / HTTP/1.1", append(validHeaders(), "Sec-WebSocket-Protocol: chat")...))
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := readResponse(t, ws.AppendAccept(nil, h))
		if _, ok := resp.Header["Sec-Websocket-Protocol"]; ok {
			t.Errorf("subprotocol answered though not offered")
		}
	})
	t.Run("random keys", func(t *testing.T) {
		r := rand.New(rand.NewPCG(2, 3))
		for range 100 {
			var raw [16]byte
			for i := range raw {
				raw[i] = byte(r.Uint32())
			}
			key := base64.StdEncoding.EncodeToString(raw[:])
			h, _, err := ws.ParseHandshake(request("GET / HTTP/1.1", replace("Sec-WebSocket-Key", "Sec-WebSocket-Key: "+key)...))
			if err != nil {
				t.Fatalf("key %s: %v", key, err)
			}
			sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			want := base64.StdEncoding.EncodeToString(sum[:])
			resp, _ := readResponse(t, ws.AppendAccept(nil, h))
			if got := resp.Header.Get("Sec-WebSocket-Accept"); got != want {
				t.Fatalf("key %s: accept %q, want %q", key, got, want)
			}
		}
	})
}

func TestAppendReject(t *testing.T) {
	// Every error ParseHandshake returns, plus a framing error (status 0)
	// and an unexpected status.
	reqs := map[int][]byte{
		405: request("POST / HTTP/1.1", validHeaders()...),
		400: request("GET / HTTP/1.1", replace("Upgrade", "")...),
		426: request("GET / HTTP/1.1", replace("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")...),
		431: bytes.Repeat([]byte("a"), ws.MaxHandshake),
	}
	var errs []*ws.Error
	for _, status := range []int{400, 405, 426, 431} {
		_, _, err := ws.ParseHandshake(reqs[status])
		e := wsError(t, err)
		if e.Status != status {
			t.Fatalf("setup: status %d, want %d", e.Status, status)
		}
		errs = append(errs, e)
	}
	errs = append(errs, ws.ErrTooBig, &ws.Error{Status: 503, Reason: "busy"}, &ws.Error{Status: 400})

	for _, e := range errs {
		t.Run(strconv.Itoa(e.Status)+"/"+e.Reason, func(t *testing.T) {
			out := ws.AppendReject([]byte("kept"), e)
			if !bytes.HasPrefix(out, []byte("kept")) {
				t.Fatalf("dst not kept: %q", out)
			}
			out = out[len("kept"):]
			resp, body := readResponse(t, out)
			want := e.Status
			if want == 0 {
				want = 400
			}
			if resp.StatusCode != want {
				t.Errorf("status %d, want %d", resp.StatusCode, want)
			}
			if want != 503 && resp.Status != strconv.Itoa(want)+" "+http.StatusText(want) {
				t.Errorf("status line %q", resp.Status)
			}
			// net/http consumes "Connection: close" into resp.Close.
			if !resp.Close || !bytes.Contains(out, []byte("\r\nConnection: close\r\n")) {
				t.Errorf("close=%v, want Connection: close\n%s", resp.Close, out)
			}
			if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(e.Reason)) || resp.ContentLength != int64(len(body)) {
				t.Errorf("Content-Length %q (%d), body %d bytes", cl, resp.ContentLength, len(body))
			}
			if string(body) != e.Reason {
				t.Errorf("body %q, want %q", body, e.Reason)
			}
			if v := resp.Header.Get("Sec-WebSocket-Version"); (want == 426) != (v == "13") {
				t.Errorf("status %d with Sec-WebSocket-Version %q", want, v)
			}
		})
	}
}
