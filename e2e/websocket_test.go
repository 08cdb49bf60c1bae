package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/longlink/longlink/codec"
)

func startWSServer(t *testing.T, extra ...string) *server {
	return startServer(t, append([]string{"-ws-listen", "127.0.0.1:0"}, extra...)...)
}

// TestWebSocketRealClient drives the gateway with a third-party WebSocket
// client: login, ping, request, a push from the API, all as binary
// messages of one frame each.
func TestWebSocketRealClient(t *testing.T) {
	s := startWSServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws://"+s.WS+"/", &websocket.DialOptions{Subprotocols: []string{"longlink.v1"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	if resp.Header.Get("Sec-WebSocket-Protocol") != "longlink.v1" {
		t.Errorf("subprotocol not echoed: %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	send := func(h codec.Header, m, body []byte) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageBinary, codec.AppendFrame(nil, h, m, body)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	recv := func() codec.Frame {
		t.Helper()
		typ, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ != websocket.MessageBinary {
			t.Fatalf("message type %v", typ)
		}
		f, n, err := codec.Decode(b, 1<<20)
		if err != nil || n != len(b) {
			t.Fatalf("message is not exactly one frame: n=%d len=%d err=%v", n, len(b), err)
		}
		return f
	}
	send(codec.Header{Op: codec.OpLogin, Seq: 1}, meta("token", token(t, "dev-ws", time.Hour, "ws-room")), nil)
	if f := recv(); f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
		t.Fatalf("login: %v %v", f.Op, f.Status)
	}
	send(codec.Header{Op: codec.OpPing, Seq: 11}, nil, nil)
	if f := recv(); f.Op != codec.OpPong || f.Seq != 11 {
		t.Fatalf("ping: %v %d", f.Op, f.Seq)
	}
	send(codec.Header{Op: codec.OpRequest, Biz: 1, Seq: 12}, nil, []byte("over ws"))
	if f := recv(); f.Op != codec.OpResponse || f.Status != codec.StatusOK || string(f.Body) != "over ws" {
		t.Fatalf("request: %v %v %q", f.Op, f.Status, f.Body)
	}
	// A group with a TCP member and a WebSocket member: one push each.
	tcp, _ := loggedIn(t, s, "dev-ws-tcp", "ws-room")
	var res struct{ Delivered int }
	if s.api("POST", "/v1/groups/ws-room/push", map[string]any{"biz": 4, "data": "mixed"}, &res); res.Delivered != 2 {
		t.Fatalf("group push delivered %d, want 2", res.Delivered)
	}
	if f := recv(); f.Op != codec.OpPush || string(f.Body) != "mixed" || f.Seq != 1 {
		t.Fatalf("ws member: %v %q seq %d", f.Op, f.Body, f.Seq)
	}
	if f := tcp.read(5 * time.Second); f.Op != codec.OpPush || string(f.Body) != "mixed" {
		t.Fatalf("tcp member: %v %q", f.Op, f.Body)
	}
	// A text message is a protocol error: KICK, then a close frame.
	if err := ws.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if f := recv(); f.Op != codec.OpKick || f.Status != codec.StatusBadFrame {
		t.Fatalf("text message: %v %v", f.Op, f.Status)
	}
	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusProtocolError {
		t.Fatalf("close after text: %v", err)
	}
}

// rawWS is a hand-written client for frames a library would not send.
type rawWS struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawWS {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawWS{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func wsKey() string {
	var k [16]byte
	_, _ = rand.Read(k[:])
	return base64.StdEncoding.EncodeToString(k[:])
}

// handshake sends an upgrade request with the given extra/overriding
// header lines and returns the HTTP status.
func (r *rawWS) handshake(lines ...string) int {
	r.t.Helper()
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + wsKey() + "\r\n"
	if len(lines) > 0 {
		req = strings.Join(lines, "\r\n") + "\r\n"
	}
	if _, err := r.nc.Write([]byte(req + "\r\n")); err != nil {
		r.t.Fatal(err)
	}
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		r.t.Fatalf("handshake response: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// frame writes one masked client frame.
func (r *rawWS) frame(fin bool, op byte, payload []byte) {
	b := []byte{op, 0x80}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b[1] |= byte(n)
	case n <= 0xFFFF:
		b[1] |= 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] |= 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := []byte{1, 2, 3, 4}
	b = append(b, mask...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// next reads one server frame: opcode and payload.
func (r *rawWS) next() (byte, []byte) {
	r.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		r.t.Fatalf("read frame: %v", err)
	}
	if h[1]&0x80 != 0 {
		r.t.Fatal("server frame is masked")
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		r.t.Fatal(err)
	}
	return h[0] & 0x0F, p
}

func (r *rawWS) nextFrame() codec.Frame {
	r.t.Helper()
	op, p := r.next()
	if op != 2 {
		r.t.Fatalf("opcode %d, want binary", op)
	}
	f, n, err := codec.Decode(p, 1<<20)
	if err != nil || n != len(p) {
		r.t.Fatalf("not one frame: %v", err)
	}
	return f
}

func TestWebSocketHandshakeErrors(t *testing.T) {
	s := startWSServer(t)
	cases := map[string]struct {
		lines []string
		want  int
	}{
		"post":        {[]string{"POST / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: " + wsKey()}, 405},
		"no upgrade":  {[]string{"GET / HTTP/1.1", "Host: x"}, 400},
		"version 8":   {[]string{"GET / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 8", "Sec-WebSocket-Key: " + wsKey()}, 426},
		"bad key":     {[]string{"GET / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: short"}, 400},
		"huge header": {[]string{"GET / HTTP/1.1", "X-Pad: " + strings.Repeat("a", 9000)}, 431},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, s.WS)
			if got := r.handshake(tc.lines...); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
		})
	}
}

func TestWebSocketFraming(t *testing.T) {
	s := startWSServer(t)
	login := func(t *testing.T, device string) *rawWS {
		r := dialRaw(t, s.WS)
		if code := r.handshake(); code != 101 {
			t.Fatalf("handshake %d", code)
		}
		r.frame(true, 2, codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1}, meta("token", token(t, device, time.Hour)), nil))
		if f := r.nextFrame(); f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
			t.Fatalf("login %v %v", f.Op, f.Status)
		}
		return r
	}
	t.Run("fragmented message", func(t *testing.T) {
		r := login(t, "dev-frag")
		req := codec.AppendFrame(nil, codec.Header{Op: codec.OpRequest, Biz: 1, Seq: 9}, nil, bytes.Repeat([]byte("z"), 300))
		r.frame(false, 2, req[:7])
		r.frame(true, 9, []byte("ping-between")) // a control frame may interleave
		r.frame(false, 0, req[7:100])
		r.frame(true, 0, req[100:])
		if op, p := r.next(); op != 0xA || string(p) != "ping-between" {
			t.Fatalf("pong: op %d %q", op, p)
		}
		if f := r.nextFrame(); f.Op != codec.OpResponse || f.Seq != 9 || len(f.Body) != 300 {
			t.Fatalf("response %v seq %d len %d", f.Op, f.Seq, len(f.Body))
		}
	})
	expectKickClose := func(t *testing.T, r *rawWS, status codec.Status, code uint16) {
		t.Helper()
		if f := r.nextFrame(); f.Op != codec.OpKick || f.Status != status {
			t.Fatalf("got %v %v, want KICK %v", f.Op, f.Status, status)
		}
		op, p := r.next()
		if op != 8 || len(p) < 2 || binary.BigEndian.Uint16(p) != code {
			t.Fatalf("close frame op %d payload %v, want code %d", op, p, code)
		}
	}
	t.Run("two frames in one message", func(t *testing.T) {
		r := login(t, "dev-two")
		two := codec.AppendFrame(codec.AppendFrame(nil, codec.Header{Op: codec.OpPing}, nil, nil), codec.Header{Op: codec.OpPing}, nil, nil)
		r.frame(true, 2, two)
		expectKickClose(t, r, codec.StatusBadFrame, 1002)
	})
	t.Run("oversized message", func(t *testing.T) {
		r := login(t, "dev-big")
		var h []byte
		h = append(h, 0x82, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, 1<<20)
		_, _ = r.nc.Write(append(h, 1, 2, 3, 4)) // header only: refused before the payload
		expectKickClose(t, r, codec.StatusFrameTooLarge, 1009)
	})
	t.Run("oversized fragments", func(t *testing.T) {
		r := login(t, "dev-bigfrag")
		chunk := make([]byte, 40000)
		r.frame(false, 2, chunk)
		r.frame(false, 0, chunk)
		expectKickClose(t, r, codec.StatusFrameTooLarge, 1009)
	})
	t.Run("unmasked frame", func(t *testing.T) {
		r := login(t, "dev-unmasked")
		_, _ = r.nc.Write([]byte{0x82, 0x00})
		expectKickClose(t, r, codec.StatusBadFrame, 1002)
	})
	t.Run("close handshake", func(t *testing.T) {
		r := login(t, "dev-close")
		r.frame(true, 8, []byte{0x03, 0xE8}) // 1000
		op, p := r.next()
		if op != 8 || binary.BigEndian.Uint16(p) != 1000 {
			t.Fatalf("close answer op %d %v", op, p)
		}
		if _, err := r.br.ReadByte(); err == nil {
			t.Fatal("connection still open after the close handshake")
		}
	})
}
