package websocket_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	ws "github.com/longlink/longlink/websocket"
)

// The client side (client.go) is checked against the package's own server
// side, frame by frame and handshake by handshake, and against a real
// server (github.com/coder/websocket).

var clientSizes = []int{0, 1, 7, 8, 9, 125, 126, 127, 1000, 0xFFFF, 0x10000, 70000}

// serverFrameOf is a server frame with FIN as given and no mask.
func serverFrameOf(op byte, fin bool, payload []byte) []byte {
	b := ws.AppendHeader(nil, op, len(payload))
	if !fin {
		b[0] &^= 0x80
	}
	return append(b, payload...)
}

func TestAppendClientFrame(t *testing.T) {
	for _, n := range clientSizes {
		p := payloadOf(n)
		mask := [4]byte{0xA1, 0xB2, byte(n), byte(n >> 8)}
		b := ws.AppendClientFrame([]byte("kept"), ws.OpBinary, p, mask)
		if !bytes.HasPrefix(b, []byte("kept")) {
			t.Fatalf("size %d: dst not kept", n)
		}
		b = b[len("kept"):]
		if want := clientFrame(true, ws.OpBinary, mask, p); !bytes.Equal(b, want) {
			t.Fatalf("size %d: % x…, want % x…", n, b[:min(len(b), 20)], want[:min(len(want), 20)])
		}
		h, hn, err := ws.ParseHeader(b, testMax)
		if err != nil || hn == 0 || !h.Fin || h.Op != ws.OpBinary || !h.Masked || h.Mask != mask || h.Len != n || hn+n != len(b) {
			t.Fatalf("size %d: the server side parses %+v n=%d err=%v (frame %d bytes)", n, h, hn, err, len(b))
		}
		got := append([]byte(nil), b[hn:]...)
		ws.Unmask(got, h.Mask)
		if !bytes.Equal(got, p) {
			t.Fatalf("size %d: payload differs after unmasking", n)
		}
	}
	// Control frames, as a client answers them.
	b := ws.AppendClientFrame(nil, ws.OpPong, []byte("hb"), testMask)
	if want := clientFrame(true, ws.OpPong, testMask, []byte("hb")); !bytes.Equal(b, want) {
		t.Fatalf("pong % x, want % x", b, want)
	}
}

func TestNewMask(t *testing.T) {
	seen := map[[4]byte]bool{}
	for range 100 {
		seen[ws.NewMask()] = true
	}
	if len(seen) < 99 {
		t.Errorf("%d distinct masks of 100", len(seen))
	}
}

func TestParseServerHeader(t *testing.T) {
	for _, n := range clientSizes {
		for _, fin := range []bool{true, false} {
			b := serverFrameOf(ws.OpBinary, fin, payloadOf(n))
			h, hn, err := ws.ParseServerHeader(b, testMax)
			if err != nil || hn == 0 || h.Fin != fin || h.Op != ws.OpBinary || h.Masked || h.Mask != ([4]byte{}) || h.Len != n || hn+n != len(b) {
				t.Fatalf("size %d fin %v: %+v n=%d err=%v", n, fin, h, hn, err)
			}
			if hn != ws.FrameLen(b)-n {
				t.Fatalf("size %d: header %d bytes, FrameLen says %d", n, hn, ws.FrameLen(b)-n)
			}
			// Every proper prefix of the header is incomplete, never an error.
			for cut := range hn {
				if _, k, err := ws.ParseServerHeader(b[:cut], testMax); k != 0 || err != nil {
					t.Fatalf("size %d, prefix %d: n=%d err=%v", n, cut, k, err)
				}
			}
		}
	}
	for _, op := range []byte{ws.OpText, ws.OpContinuation, ws.OpPing, ws.OpPong} {
		if h, n, err := ws.ParseServerHeader(serverFrameOf(op, true, []byte("x")), testMax); err != nil || n != 2 || h.Op != op {
			t.Errorf("op %#x: %+v n=%d err=%v", op, h, n, err)
		}
	}
	close := ws.AppendClose(nil, ws.CloseProtocol, "bad")
	if h, n, err := ws.ParseServerHeader(close, testMax); err != nil || h.Op != ws.OpClose || h.Len != 5 || n != 2 {
		t.Fatalf("close: %+v n=%d err=%v", h, n, err)
	}
	bad := []struct {
		name string
		b    []byte
		max  int
		code uint16
	}{
		{"masked", []byte{0x82, 0x81, 1, 2, 3, 4, 0}, testMax, ws.CloseProtocol},
		{"masked, header only", []byte{0x82, 0x80}, testMax, ws.CloseProtocol},
		{"rsv1", []byte{0xC2, 0x00}, testMax, ws.CloseProtocol},
		{"rsv3", []byte{0x92, 0x00}, testMax, ws.CloseProtocol},
		{"opcode 3", []byte{0x83, 0x00}, testMax, ws.CloseProtocol},
		{"opcode 0xB", []byte{0x8B, 0x00}, testMax, ws.CloseProtocol},
		{"fragmented ping", []byte{0x09, 0x00}, testMax, ws.CloseProtocol},
		{"long close", []byte{0x88, 126, 0, 126}, testMax, ws.CloseProtocol},
		{"non-minimal 16-bit", []byte{0x82, 126, 0, 125}, testMax, ws.CloseProtocol},
		{"non-minimal 64-bit", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, testMax, ws.CloseProtocol},
		{"64-bit high bit", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 1, 0, 0}, testMax, ws.CloseProtocol},
		{"above max", []byte{0x82, 126, 0x01, 0x00}, 255, ws.CloseTooBig},
		{"above max, 7-bit", []byte{0x82, 100}, 99, ws.CloseTooBig},
		{"above max, 64-bit", []byte{0x82, 127, 0, 0, 0, 0, 0, 2, 0, 0}, 0x1FFFF, ws.CloseTooBig},
	}
	for _, c := range bad {
		_, n, err := ws.ParseServerHeader(c.b, c.max)
		if err == nil || n != 0 {
			t.Errorf("%s: accepted (n=%d)", c.name, n)
			continue
		}
		if e := wsError(t, err); e.Code != c.code || e.Status != 0 {
			t.Errorf("%s: %+v, want close code %d", c.name, e, c.code)
		}
	}
	// A client frame is refused here, and a server frame there.
	if _, _, err := ws.ParseServerHeader(clientFrame(true, ws.OpBinary, testMask, nil), testMax); err == nil {
		t.Error("a client frame parsed as a server's")
	}
	if _, _, err := ws.ParseHeader(serverFrameOf(ws.OpBinary, true, nil), testMax); err == nil {
		t.Error("a server frame parsed as a client's")
	}
}

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k := ws.NewKey()
		if raw, err := base64.StdEncoding.DecodeString(k); err != nil || len(raw) != 16 {
			t.Fatalf("key %q: %d bytes, %v", k, len(raw), err)
		}
		seen[k] = true
	}
	if len(seen) != 100 {
		t.Errorf("%d distinct keys of 100", len(seen))
	}
}

func TestAppendHandshake(t *testing.T) {
	req := ws.AppendHandshake([]byte("kept"), "127.0.0.1:7001", "/gw", rfcKey)
	if !bytes.HasPrefix(req, []byte("kept")) {
		t.Fatalf("dst not kept: %q", req)
	}
	req = req[len("kept"):]
	h, n, err := ws.ParseHandshake(req)
	if err != nil || n != len(req) || string(h.Key) != rfcKey || !h.Subprotocol || h.Origin != nil {
		t.Fatalf("the server side parses %+v n=%d/%d err=%v", h, n, len(req), err)
	}
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
	if err != nil || r.Method != "GET" || r.URL.Path != "/gw" || r.Host != "127.0.0.1:7001" {
		t.Fatalf("net/http reads %v: %v", r, err)
	}
	if r.Header.Get("Sec-WebSocket-Extensions") != "" {
		t.Error("an extension offered")
	}
}

// answer is the server side's 101 to the handshake with key.
func answer(key string) []byte {
	return ws.AppendAccept(nil, ws.Handshake{Key: []byte(key), Subprotocol: true})
}

func TestParseAccept(t *testing.T) {
	// RFC 6455 section 1.3's key and accept value.
	rfc := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + rfcAccept + "\r\n\r\n"
	if n, err := ws.ParseAccept([]byte(rfc), rfcKey); err != nil || n != len(rfc) {
		t.Fatalf("RFC example: n=%d err=%v", n, err)
	}

	key := ws.NewKey()
	ans := answer(key)
	frame := ws.AppendHeader(nil, ws.OpBinary, 0)
	// Every proper prefix is incomplete; a frame right behind the answer
	// is left to the caller.
	for cut := range len(ans) {
		if n, err := ws.ParseAccept(ans[:cut], key); n != 0 || err != nil {
			t.Fatalf("prefix %d: n=%d err=%v", cut, n, err)
		}
	}
	if n, err := ws.ParseAccept(append(append([]byte(nil), ans...), frame...), key); err != nil || n != len(ans) {
		t.Fatalf("answer and a frame: n=%d/%d err=%v", n, len(ans), err)
	}
	if _, err := ws.ParseAccept(ans, ws.NewKey()); err == nil {
		t.Error("accepted the answer to another key")
	}

	accept := string(answer(key))
	accept = accept[strings.Index(accept, "Sec-WebSocket-Accept: ")+len("Sec-WebSocket-Accept: "):]
	accept = accept[:strings.Index(accept, "\r\n")]
	hdr := func(lines ...string) []byte {
		return []byte("HTTP/1.1 101 Switching Protocols\r\n" + strings.Join(lines, "\r\n") + "\r\n\r\n")
	}
	good := map[string][]byte{
		"no subprotocol":                  hdr("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: "+accept),
		"other spelling":                  hdr("upgrade: WebSocket", "connection: keep-alive, Upgrade", "sec-websocket-accept:  "+accept+" "),
		"connection split over two lines": hdr("Upgrade: websocket", "Connection: Upgrade", "Connection: keep-alive", "Sec-WebSocket-Accept: "+accept),
		"HTTP/1.0, other headers":         []byte("HTTP/1.0 101 OK\r\nServer: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\nDate: now\r\n\r\n"),
		"status line without a reason":    []byte("HTTP/1.1 101\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n"),
	}
	for name, a := range good {
		if n, err := ws.ParseAccept(a, key); err != nil || n != len(a) {
			t.Errorf("%s: n=%d/%d err=%v", name, n, len(a), err)
		}
	}

	bad := map[string]struct {
		answer string
		want   string // in the error
	}{
		"refused":        {string(ws.AppendReject(nil, ws.ErrOrigin)), `upgrade refused: "HTTP/1.1 403 Forbidden" "origin not allowed"`},
		"200":            {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "upgrade refused"},
		"1010":           {"HTTP/1.1 1010 X\r\n\r\n", "upgrade refused"},
		"no upgrade":     {string(hdr("Connection: Upgrade", "Sec-WebSocket-Accept: "+accept)), "without Upgrade"},
		"upgrade h2c":    {string(hdr("Upgrade: h2c", "Connection: Upgrade", "Sec-WebSocket-Accept: "+accept)), "without Upgrade"},
		"no connection":  {string(hdr("Upgrade: websocket", "Sec-WebSocket-Accept: "+accept)), "without Upgrade"},
		"no accept":      {string(hdr("Upgrade: websocket", "Connection: Upgrade")), "Sec-WebSocket-Accept"},
		"extension":      {string(ans[:len(ans)-2]) + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", "extensions"},
		"subprotocol":    {string(hdr("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: "+accept, "Sec-WebSocket-Protocol: other")), "subprotocol"},
		"not http":       {"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP answer"},
		"http/2":         {"HTTP/2 101\r\n\r\n", "not an HTTP answer"},
		"bad line":       {"HTTP/1.1 101 Switching Protocols\r\nnonsense\r\n\r\n", "bad header line"},
		"no terminator":  {"HTTP/1.1 101 Switching Protocols\r\nX: " + strings.Repeat("a", ws.MaxAccept), "too long"},
		"terminator far": {"HTTP/1.1 101 Switching Protocols\r\nX: " + strings.Repeat("a", ws.MaxAccept) + "\r\n\r\n", "too long"},
	}
	for name, c := range bad {
		n, err := ws.ParseAccept([]byte(c.answer), key)
		if err == nil || n != 0 {
			t.Errorf("%s: accepted (n=%d)", name, n)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want it to mention %s", name, err, c.want)
		}
	}

	// The limit: an answer of exactly MaxAccept bytes is accepted.
	base := answer(key)
	pad := ws.MaxAccept - len(base) - len("X-Pad: \r\n")
	atLimit := append(append(append([]byte(nil), base[:len(base)-2]...), "X-Pad: "+strings.Repeat("p", pad)+"\r\n"...), "\r\n"...)
	if n, err := ws.ParseAccept(atLimit, key); err != nil || n != ws.MaxAccept {
		t.Errorf("at the limit: n=%d err=%v, want n=%d", n, err, ws.MaxAccept)
	}
	if n, err := ws.ParseAccept(atLimit[:ws.MaxAccept-1], key); err != nil || n != 0 {
		t.Errorf("at the limit, one byte short: n=%d err=%v, want incomplete", n, err)
	}
}

// TestClientSideNoAlloc: the per-frame calls and the answer check make no
// allocation.
func TestClientSideNoAlloc(t *testing.T) {
	payload := payloadOf(1000)
	buf := make([]byte, 0, ws.MaxHeader+len(payload))
	if a := testing.AllocsPerRun(100, func() { buf = ws.AppendClientFrame(buf[:0], ws.OpBinary, payload, testMask) }); a != 0 {
		t.Errorf("AppendClientFrame: %v allocations", a)
	}
	frame := serverFrameOf(ws.OpBinary, true, payload)
	if a := testing.AllocsPerRun(100, func() { _, _, _ = ws.ParseServerHeader(frame, testMax) }); a != 0 {
		t.Errorf("ParseServerHeader: %v allocations", a)
	}
	if a := testing.AllocsPerRun(100, func() { _ = ws.NewMask() }); a != 0 {
		t.Errorf("NewMask: %v allocations", a)
	}
	key := ws.NewKey()
	ans := answer(key)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := ws.ParseAccept(ans, key); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("ParseAccept: %v allocations", a)
	}
}

// TestRealServer speaks the client side to github.com/coder/websocket's
// server, which echoes every message: the handshake, masked messages of
// every length form, a ping (answered by the library) and the close.
func TestRealServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := cws.Accept(w, r, &cws.AcceptOptions{Subprotocols: []string{ws.Subprotocol}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))

	// buf holds what arrived and is not consumed yet.
	var buf []byte
	rd := make([]byte, 4096)
	more := func() {
		t.Helper()
		n, err := nc.Read(rd)
		if n == 0 {
			t.Fatalf("read: %v", err)
		}
		buf = append(buf, rd[:n]...)
	}
	key := ws.NewKey()
	if _, err := nc.Write(ws.AppendHandshake(nil, addr, "/", key)); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := ws.ParseAccept(buf, key)
		if err != nil {
			t.Fatalf("answer %q: %v", buf, err)
		}
		if n > 0 {
			buf = buf[n:]
			break
		}
		more()
	}
	// next reads the next server frame, payload copied.
	next := func() (ws.Header, []byte) {
		t.Helper()
		for {
			h, n, err := ws.ParseServerHeader(buf, 1<<20)
			if err != nil {
				t.Fatalf("server frame % x: %v", buf[:min(len(buf), 14)], err)
			}
			if n > 0 && len(buf) >= n+h.Len {
				p := append([]byte(nil), buf[n:n+h.Len]...)
				buf = buf[n+h.Len:]
				return h, p
			}
			more()
		}
	}

	for _, size := range clientSizes {
		p := payloadOf(size)
		if _, err := nc.Write(ws.AppendClientFrame(nil, ws.OpBinary, p, ws.NewMask())); err != nil {
			t.Fatal(err)
		}
		h, got := next()
		if h.Op != ws.OpBinary || !h.Fin || !bytes.Equal(got, p) {
			t.Fatalf("size %d: echo %+v, %d bytes", size, h, len(got))
		}
	}
	if _, err := nc.Write(ws.AppendClientFrame(nil, ws.OpPing, []byte("hb"), ws.NewMask())); err != nil {
		t.Fatal(err)
	}
	if h, got := next(); h.Op != ws.OpPong || string(got) != "hb" {
		t.Fatalf("ping answered with %+v %q", h, got)
	}
	var cb [2]byte
	binary.BigEndian.PutUint16(cb[:], ws.CloseNormal)
	if _, err := nc.Write(ws.AppendClientFrame(nil, ws.OpClose, cb[:], ws.NewMask())); err != nil {
		t.Fatal(err)
	}
	h, got := next()
	if code, err := ws.CloseCode(got); h.Op != ws.OpClose || err != nil || code != ws.CloseNormal {
		t.Fatalf("close answered with %+v %q (%d, %v)", h, got, code, err)
	}
}
