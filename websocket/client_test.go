package websocket_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	ws "github.com/longlink/longlink/websocket"
)

// capture is what the test server saw from a real client.
type capture struct {
	raw    []byte // every byte the client wrote
	hsLen  int    // length of the opening handshake in raw
	hs     ws.Handshake
	frames []frame // parsed live, payloads unmasked
}

// serveCapture accepts one connection on ln and speaks the server side of
// RFC 6455 with this package only: it parses the handshake and answers
// it, parses each frame as bytes arrive, answers pings with pongs and a
// close with a close, and records everything until the client hangs up.
func serveCapture(ln net.Listener, max int) (*capture, error) {
	c, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))

	cp := &capture{}
	var buf []byte
	rd := make([]byte, 1500)
	read := func() error {
		n, err := c.Read(rd)
		cp.raw = append(cp.raw, rd[:n]...)
		buf = append(buf, rd[:n]...)
		return err
	}
	for {
		if err := read(); err != nil {
			return cp, fmt.Errorf("reading the handshake: %w", err)
		}
		h, n, err := ws.ParseHandshake(buf)
		if err != nil {
			c.Write(ws.AppendReject(nil, err.(*ws.Error)))
			return cp, err
		}
		if n > 0 {
			// Keep a copy of the key: buf is reused below.
			h.Key = append([]byte(nil), h.Key...)
			cp.hs, cp.hsLen = h, n
			buf = buf[n:]
			if _, err := c.Write(ws.AppendAccept(nil, h)); err != nil {
				return cp, err
			}
			break
		}
	}
	closed := false
	for {
		for {
			h, n, err := ws.ParseHeader(buf, max)
			if err != nil {
				c.Write(ws.AppendClose(nil, err.(*ws.Error).Code, err.Error()))
				return cp, err
			}
			if n == 0 || len(buf)-n < h.Len {
				break
			}
			p := append([]byte(nil), buf[n:n+h.Len]...)
			ws.Unmask(p, h.Mask)
			buf = buf[n+h.Len:]
			cp.frames = append(cp.frames, frame{h.Fin, h.Op, p})
			switch h.Op {
			case ws.OpPing:
				if _, err := c.Write(append(ws.AppendHeader(nil, ws.OpPong, len(p)), p...)); err != nil {
					return cp, err
				}
			case ws.OpClose:
				code, err := ws.CloseCode(p)
				if err != nil {
					return cp, err
				}
				if !closed {
					closed = true
					if _, err := c.Write(ws.AppendClose(nil, code, "")); err != nil {
						return cp, err
					}
				}
			}
		}
		if err := read(); err != nil {
			if errors.Is(err, io.EOF) && closed {
				if len(buf) != 0 {
					return cp, fmt.Errorf("%d bytes left after the close", len(buf))
				}
				return cp, nil
			}
			return cp, err
		}
	}
}

// TestRealClient runs github.com/coder/websocket against a loopback server
// built on this package, and checks every frame the client wrote: length
// forms, a fragmented message written with several Writes, text, a ping
// and a close. The client in turn checks AppendAccept (accept value and
// subprotocol) and the pong and close answers.
func TestRealClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cp  *capture
		err error
	}
	done := make(chan result, 1)
	go func() {
		cp, err := serveCapture(ln, testMax)
		done <- result{cp, err}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, resp, err := cws.Dial(ctx, "ws://"+ln.Addr().String()+"/gw?v=1", &cws.DialOptions{
		Subprotocols: []string{"chat", ws.Subprotocol},
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != ws.Subprotocol || resp.StatusCode != 101 {
		t.Errorf("status %d subprotocol %q", resp.StatusCode, c.Subprotocol())
	}

	var want []frame
	for _, size := range []int{0, 5, 125, 126, 200, 65535, 65536, 70000} {
		p := payloadOf(size)
		if err := c.Write(ctx, cws.MessageBinary, p); err != nil {
			t.Fatalf("write %d: %v", size, err)
		}
		want = append(want, frame{true, ws.OpBinary, p})
	}

	// A fragmented message: each Write is a frame with FIN=0, the first
	// binary and the rest continuations; Close sends an empty final one.
	w, err := c.Writer(ctx, cws.MessageBinary)
	if err != nil {
		t.Fatal(err)
	}
	for i, part := range [][]byte{[]byte("frag-1-"), payloadOf(300), []byte("frag-3")} {
		if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
		op := byte(ws.OpContinuation)
		if i == 0 {
			op = ws.OpBinary
		}
		want = append(want, frame{false, op, part})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want = append(want, frame{true, ws.OpContinuation, nil})

	if err := c.Write(ctx, cws.MessageText, []byte("text ✓")); err != nil {
		t.Fatal(err)
	}
	want = append(want, frame{true, ws.OpText, []byte("text ✓")})

	// Ping waits for the pong, which only a reader delivers.
	c.CloseRead(ctx)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	want = append(want, frame{true, ws.OpPing, []byte("1")})

	if err := c.Close(cws.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
	want = append(want, frame{true, ws.OpClose, binary.BigEndian.AppendUint16(nil, ws.CloseNormal)})
	want[len(want)-1].payload = append(want[len(want)-1].payload, "bye"...)

	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("server did not finish")
	}
	if res.err != nil {
		t.Fatalf("server: %v", res.err)
	}
	cp := res.cp

	checkFrames := func(t *testing.T, got []frame) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d\ngot  %v\nwant %v", len(got), len(want), got, want)
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.fin != w.fin || g.op != w.op || !bytes.Equal(g.payload, w.payload) {
				t.Errorf("frame %d: %v %q, want %v", i, g, trim(g.payload), w)
			}
		}
	}
	t.Run("live", func(t *testing.T) { checkFrames(t, cp.frames) })

	// Parse the captured bytes again, offline, fed whole and one byte at
	// a time.
	t.Run("handshake", func(t *testing.T) {
		raw := cp.raw[:cp.hsLen]
		h, n, err := ws.ParseHandshake(cp.raw)
		if err != nil || n != cp.hsLen || !bytes.Equal(h.Key, cp.hs.Key) || !h.Subprotocol {
			t.Fatalf("n=%d err=%v h=%+v", n, err, h)
		}
		if !bytes.HasSuffix(raw, []byte("\r\n\r\n")) || bytes.Index(raw, []byte("\r\n\r\n")) != len(raw)-4 {
			t.Fatalf("handshake does not end at the first blank line:\n%s", raw)
		}
		checkPrefixes(t, raw)
	})
	t.Run("frames whole", func(t *testing.T) {
		r := &reader{t: t, max: testMax}
		if err := r.feed(cp.raw[cp.hsLen:]); err != nil {
			t.Fatal(err)
		}
		if len(r.buf) != 0 {
			t.Fatalf("%d bytes left", len(r.buf))
		}
		checkFrames(t, r.frames)
	})
	t.Run("frames byte by byte", func(t *testing.T) {
		r := &reader{t: t, max: testMax}
		for i, b := range cp.raw[cp.hsLen:] {
			if err := r.feed([]byte{b}); err != nil {
				t.Fatalf("byte %d: %v", i, err)
			}
		}
		checkFrames(t, r.frames)
	})
	t.Run("limit", func(t *testing.T) {
		// With a limit of 65535 the 65536-byte frame is refused from its
		// header, before its payload has arrived.
		r := &reader{t: t, max: 65535}
		stream := cp.raw[cp.hsLen:]
		for i := range stream {
			if err := r.feed(stream[i : i+1]); err != nil {
				if err != ws.ErrTooBig {
					t.Fatalf("byte %d: %v, want ErrTooBig", i, err)
				}
				if len(r.frames) != 6 || len(r.buf) != 10 {
					t.Fatalf("refused after %d frames with %d bytes buffered, want 6 frames and the 10 bytes that hold the 64-bit length", len(r.frames), len(r.buf))
				}
				return
			}
		}
		t.Fatal("65536-byte frame accepted with a limit of 65535")
	})
}

// TestRealClientRejected checks that the real client reads the HTTP
// answer to a refused handshake.
func TestRealClientRejected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		var buf []byte
		rd := make([]byte, 1500)
		for {
			n, err := c.Read(rd)
			buf = append(buf, rd[:n]...)
			if _, hn, _ := ws.ParseHandshake(buf); hn > 0 || err != nil {
				break
			}
		}
		// Refuse as if the client spoke version 8.
		c.Write(ws.AppendReject(nil, &ws.Error{Status: 426, Reason: "unsupported WebSocket version (13 required)"}))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, resp, err := cws.Dial(ctx, "ws://"+ln.Addr().String()+"/", nil)
	if err == nil {
		t.Fatal("dial succeeded")
	}
	if resp == nil || resp.StatusCode != 426 || resp.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Fatalf("resp %+v err %v", resp, err)
	}
}

func trim(p []byte) []byte {
	if len(p) > 16 {
		return p[:16]
	}
	return p
}
