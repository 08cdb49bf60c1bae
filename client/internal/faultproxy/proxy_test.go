package faultproxy

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// echoServer echoes every byte back.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func frame(op codec.Op, body string) []byte {
	return codec.AppendFrame(nil, codec.Header{Op: op, Seq: 1}, nil, []byte(body))
}

func setup(t *testing.T) (*Proxy, net.Conn) {
	t.Helper()
	p, err := New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return p, c
}

// roundTrip writes b and reads len(b) bytes back within timeout.
func roundTrip(c net.Conn, b []byte, timeout time.Duration) ([]byte, error) {
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	got := make([]byte, len(b))
	n, err := io.ReadFull(c, got)
	return got[:n], err
}

func TestForwardAndCutAll(t *testing.T) {
	p, c := setup(t)
	f := frame(codec.OpPing, "hello")
	if got, err := roundTrip(c, f, time.Second); err != nil || !bytes.Equal(got, f) {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	// Non-Longlink bytes pass too.
	if got, err := roundTrip(c, []byte("raw bytes, not a frame at all"), time.Second); err != nil || string(got) != "raw bytes, not a frame at all" {
		t.Fatalf("raw round trip: %q, %v", got, err)
	}
	if n := p.CutAll(); n != 1 {
		t.Fatalf("CutAll = %d", n)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after CutAll")
	}
}

func TestStallAndDelay(t *testing.T) {
	p, c := setup(t)
	f := frame(codec.OpPing, "x")
	p.Stall()
	if _, err := roundTrip(c, f, 200*time.Millisecond); err == nil {
		t.Fatal("a frame went through a stalled proxy")
	}
	p.Unstall()
	c.SetReadDeadline(time.Now().Add(time.Second))
	got := make([]byte, len(f))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, f) {
		t.Fatalf("held frame after Unstall: %q, %v", got, err)
	}

	p.SetDelay(100 * time.Millisecond)
	start := time.Now()
	if _, err := roundTrip(c, f, time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("round trip took %v through a 100ms delay each way", d)
	}
}

func TestCutMidFrame(t *testing.T) {
	p, c := setup(t)
	cut := p.CutMidFrame(Downstream, codec.OpPush)
	ping := frame(codec.OpPing, "not this one")
	if got, err := roundTrip(c, ping, time.Second); err != nil || !bytes.Equal(got, ping) {
		t.Fatalf("a PING was cut: %q, %v", got, err)
	}
	push := frame(codec.OpPush, "0123456789")
	c.Write(push)
	c.SetReadDeadline(time.Now().Add(time.Second))
	got, err := io.ReadAll(c)
	if len(got) != len(push)/2 || !bytes.Equal(got, push[:len(push)/2]) {
		t.Fatalf("got %d bytes (%v), want the first %d of the PUSH then the close", len(got), err, len(push)/2)
	}
	select {
	case <-cut:
	case <-time.After(time.Second):
		t.Fatal("cut not reported")
	}
	if p.Conns() != 0 {
		t.Fatalf("%d connections left", p.Conns())
	}
}

func TestRefuse(t *testing.T) {
	p, _ := setup(t)
	p.SetRefuse(true)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("refused connection stayed open")
	}
	if p.Accepts() != 2 {
		t.Fatalf("Accepts = %d", p.Accepts())
	}
}
