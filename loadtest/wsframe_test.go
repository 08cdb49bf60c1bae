package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	gws "github.com/longlink/longlink/websocket"
)

// The client side of RFC 6455 is package websocket's, tested there. Here:
// Longlink over it (one frame per message) and the client's reader,
// against the gateway's own server side (package websocket): what the
// generator writes must parse there as masked client frames, and what the
// gateway writes must parse here.

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return p
}

// TestWSAppendMessages: pipelined frames go out one per message.
func TestWSAppendMessages(t *testing.T) {
	var frames []byte
	bodies := [][]byte{nil, []byte("hi"), pattern(300)}
	for i, body := range bodies {
		frames = codec.AppendFrame(frames, codec.Header{Op: codec.OpRequest, Biz: 1, Seq: uint32(i + 1)},
			codec.AppendMetaString(nil, "k", strings.Repeat("v", i)), body)
	}
	b := wsAppendMessages(nil, frames)
	for i, body := range bodies {
		h, n, err := gws.ParseHeader(b, 1<<20)
		if err != nil || n == 0 || !h.Fin || h.Op != gws.OpBinary {
			t.Fatalf("message %d: %+v %d %v", i, h, n, err)
		}
		p := append([]byte(nil), b[n:n+h.Len]...)
		gws.Unmask(p, h.Mask)
		f, fn, err := codec.Decode(p, codec.DefaultMaxFrame)
		if err != nil || fn != len(p) || f.Seq != uint32(i+1) || !bytes.Equal(f.Body, body) {
			t.Fatalf("message %d: frame %+v (%d of %d bytes) %v", i, f.Header, fn, len(p), err)
		}
		b = b[n+h.Len:]
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes left over", len(b))
	}
}

// memConn is a net.Conn that reads from a script, a few bytes at a time,
// and records what is written.
type memConn struct {
	in    []byte
	chunk int
	out   bytes.Buffer
}

func (m *memConn) Read(p []byte) (int, error) {
	if len(m.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), m.chunk)], m.in)
	m.in = m.in[n:]
	return n, nil
}
func (m *memConn) Write(p []byte) (int, error)      { return m.out.Write(p) }
func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (m *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

// serverMessage is a WebSocket message as the gateway sends it.
func serverMessage(op byte, payload []byte) []byte {
	return append(gws.AppendHeader(nil, op, len(payload)), payload...)
}

// serverFragment is an unmasked server frame with FIN as given.
func serverFragment(op byte, fin bool, payload []byte) []byte {
	b := gws.AppendHeader(nil, op, len(payload))
	if !fin {
		b[0] &^= 0x80
	}
	return append(b, payload...)
}

// readClientFrames parses what the client wrote as the gateway would.
func readClientFrames(t *testing.T, b []byte) (ops []byte, payloads [][]byte) {
	t.Helper()
	for len(b) > 0 {
		h, n, err := gws.ParseHeader(b, 1<<20)
		if err != nil || n == 0 {
			t.Fatalf("client wrote a bad frame: %v", err)
		}
		p := append([]byte(nil), b[n:n+h.Len]...)
		gws.Unmask(p, h.Mask)
		ops, payloads = append(ops, h.Op), append(payloads, p)
		b = b[n+h.Len:]
	}
	return ops, payloads
}

// TestClientReadsWebSocket drives the client's reader over a scripted
// server, byte by byte and in larger chunks: the upgrade answer, a ping,
// a message in three fragments, big messages that grow the read buffer,
// and a close.
func TestClientReadsWebSocket(t *testing.T) {
	for _, chunk := range []int{1, 3, 100, 1 << 20} {
		pong := func(seq uint32) []byte {
			return codec.AppendFrame(nil, codec.Header{Op: codec.OpPong, Seq: seq}, nil, nil)
		}
		big := codec.AppendFrame(nil, codec.Header{Op: codec.OpResponse, Biz: 1, Seq: 9}, nil, pattern(20000))
		resp := codec.AppendFrame(nil, codec.Header{Op: codec.OpResponse, Biz: 1, Seq: 10}, nil, pattern(200))
		var script []byte
		script = append(script, serverMessage(gws.OpBinary, pong(1))...)
		script = append(script, serverMessage(gws.OpPing, []byte("hb"))...)
		script = append(script, serverFragment(gws.OpBinary, false, resp[:7])...)
		script = append(script, serverMessage(gws.OpPong, nil)...) // a control frame between fragments
		script = append(script, serverFragment(gws.OpContinuation, false, resp[7:100])...)
		script = append(script, serverFragment(gws.OpContinuation, true, resp[100:])...)
		script = append(script, serverMessage(gws.OpBinary, big)...)
		script = append(script, serverMessage(gws.OpBinary, pong(2))...)
		script = append(script, gws.AppendClose(nil, gws.CloseGoingAway, "bye")...)

		r := &runner{cfg: &Config{MaxFrame: codec.DefaultMaxFrame, DialTimeout: time.Second}, ws: true}
		mc := &memConn{chunk: chunk}
		c := &client{r: r, nc: mc, rbuf: make([]byte, initialReadBuf)}
		// The upgrade: the first message comes right behind the answer,
		// and must stay in the buffer.
		key := gws.NewKey()
		mc.in = append(gws.AppendAccept(nil, gws.Handshake{Key: []byte(key), Subprotocol: true}), script...)
		if err := c.upgradeWithKey("h:1", key); err != nil {
			t.Fatalf("chunk %d: upgrade: %v", chunk, err)
		}
		hs, n, err := gws.ParseHandshake(mc.out.Bytes())
		if err != nil || n != mc.out.Len() || string(hs.Key) != key || !hs.Subprotocol {
			t.Fatalf("chunk %d: request %q: %v", chunk, mc.out.Bytes(), err)
		}
		mc.out.Reset()

		var seqs []uint32
		var sizes []int
		for {
			var f codec.Frame
			f, err = c.readFrame()
			if err != nil {
				break
			}
			seqs = append(seqs, f.Seq)
			sizes = append(sizes, len(f.Body))
		}
		if !errors.Is(err, errWSClosed) || !strings.Contains(err.Error(), "1001") {
			t.Fatalf("chunk %d: ended with %v", chunk, err)
		}
		if want := []uint32{1, 10, 9, 2}; !slicesEqual(seqs, want) {
			t.Fatalf("chunk %d: seqs %v, want %v", chunk, seqs, want)
		}
		if sizes[1] != 200 || sizes[2] != 20000 {
			t.Fatalf("chunk %d: body sizes %v", chunk, sizes)
		}
		ops, payloads := readClientFrames(t, mc.out.Bytes())
		if len(ops) != 2 || ops[0] != gws.OpPong || string(payloads[0]) != "hb" || ops[1] != gws.OpClose ||
			binary.BigEndian.Uint16(payloads[1]) != gws.CloseGoingAway {
			t.Fatalf("chunk %d: client answered %v %q", chunk, ops, payloads)
		}
	}
}

// TestClientRefusesBadWebSocket: what the gateway must never send ends
// the connection as a protocol error.
func TestClientRefusesBadWebSocket(t *testing.T) {
	pong := codec.AppendFrame(nil, codec.Header{Op: codec.OpPong, Seq: 1}, nil, nil)
	cases := map[string][]byte{
		"two frames in one message": serverMessage(gws.OpBinary, append(append([]byte(nil), pong...), pong...)),
		"half a frame":              serverMessage(gws.OpBinary, pong[:10]),
		"text":                      serverMessage(gws.OpText, pong),
		"continuation first":        serverFragment(gws.OpContinuation, true, pong),
		"message inside fragments":  append(serverFragment(gws.OpBinary, false, pong[:5]), serverMessage(gws.OpBinary, pong)...),
		"bad protocol frame":        serverMessage(gws.OpBinary, []byte("not a longlink frame at all")),
		"masked":                    {0x82, 0x80, 1, 2, 3, 4},
		"above -max-frame":          {0x82, 127, 0, 0, 0, 0, 0, 2, 0, 0},
	}
	for name, script := range cases {
		r := &runner{cfg: &Config{MaxFrame: codec.DefaultMaxFrame}, ws: true}
		c := &client{r: r, nc: &memConn{in: script, chunk: 1 << 20}, rbuf: make([]byte, initialReadBuf)}
		_, err := c.readFrame()
		if err == nil || errors.Is(err, errWSClosed) || errors.Is(err, io.EOF) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
