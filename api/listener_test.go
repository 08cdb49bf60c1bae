package api

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// limitTestListener is a LimitListener on loopback whose accepted
// connections arrive on accepted.
type limitTestListener struct {
	*limitListener
	accepted chan net.Conn
}

func newLimitTestListener(t *testing.T, maxConns int) *limitTestListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &limitTestListener{limitListener: LimitListener(ln, maxConns).(*limitListener), accepted: make(chan net.Conn, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			l.accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(l.accepted)
		for c := range l.accepted {
			c.Close()
		}
	})
	return l
}

// dial connects to the listener, closing the connection at the end of the test.
func (l *limitTestListener) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns the next accepted connection, failing after a while.
func (l *limitTestListener) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-l.accepted:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// expectRefused reads the 503 over the cap from c and then the close.
func expectRefused(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the refusal: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the refusal's body: %v", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Proto != "HTTP/1.1" {
		t.Errorf("refusal %s %s, want HTTP/1.1 503", resp.Proto, resp.Status)
	}
	if !resp.Close { // http.ReadResponse turns Connection: close into Close
		t.Errorf("refusal headers %v, want Connection: close", resp.Header)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("refusal Content-Type %q", ct)
	}
	if got := strings.TrimSpace(string(body)); got != `{"error":"too many API connections"}` {
		t.Errorf("refusal body %q", body)
	}
	expectClosedConn(t, br)
}

// expectClosedConn fails unless r (a connection) ends with EOF or a reset
// before a deadline the caller has set, with no more bytes.
func expectClosedConn(t *testing.T, r io.Reader) {
	t.Helper()
	n, err := r.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case n > 0:
		t.Errorf("bytes after the refusal")
	case errors.As(err, &ne) && ne.Timeout():
		t.Errorf("the refused connection is still open")
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
	default:
		t.Errorf("read after the refusal: %v, want EOF or a reset", err)
	}
}

func TestLimitListenerRefusesOverTheCap(t *testing.T) {
	l := newLimitTestListener(t, 2)
	l.dial(t)
	l.dial(t)
	first, second := l.next(t), l.next(t)
	if n := l.open.Load(); n != 2 {
		t.Fatalf("open = %d with 2 connections, want 2", n)
	}

	// Over the cap: refused at once, twice in a row. Accept went on
	// after the first refusal, or the second would never be answered.
	for range 2 {
		expectRefused(t, l.dial(t))
	}
	if n := l.open.Load(); n != 2 {
		t.Errorf("open = %d after refusals, want 2", n)
	}

	// The refused connections never reached the accepted side.
	select {
	case c := <-l.accepted:
		t.Fatalf("a connection over the cap was accepted: %v", c.RemoteAddr())
	default:
	}

	// Closing twice frees one slot, not two.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	_ = first.Close()
	if n := l.open.Load(); n != 1 {
		t.Fatalf("open = %d after closing one connection twice, want 1", n)
	}
	third := l.dial(t)
	l.next(t)
	if n := l.open.Load(); n != 2 {
		t.Errorf("open = %d after a new connection, want 2", n)
	}
	expectRefused(t, l.dial(t))

	// The connections under the cap are untouched.
	if _, err := third.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	second.Close()
	if n := l.open.Load(); n != 1 {
		t.Errorf("open = %d after closing the second, want 1", n)
	}
}

func TestLimitListenerCapOfAtLeastOne(t *testing.T) {
	l := newLimitTestListener(t, 0)
	l.dial(t)
	l.next(t)
	expectRefused(t, l.dial(t))
}

// TestLimitListenerUnderHTTPServer runs the cap under net/http, as the
// gateway does: a connection that net/http closes (here after its idle
// timeout) frees its slot.
func TestLimitListenerUnderHTTPServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limited := LimitListener(ln, 1)
	srv := &http.Server{
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		IdleTimeout: 200 * time.Millisecond,
	}
	go func() { _ = srv.Serve(limited) }()
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	get := func(c net.Conn) *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	held := dial()
	if resp := get(held); resp.StatusCode != 200 {
		t.Fatalf("first connection: %s", resp.Status)
	}
	// held is now an idle keep-alive connection holding the only slot.
	expectRefused(t, dial())

	// net/http closes held after its idle timeout, which frees the slot.
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	expectClosedConn(t, held)
	deadline := time.Now().Add(5 * time.Second)
	for limited.(*limitListener).open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slot of the closed connection was not freed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp := get(dial()); resp.StatusCode != 200 {
		t.Errorf("after the close: %s", resp.Status)
	}
}

func TestLimitConnCloseWrite(t *testing.T) {
	l := newLimitTestListener(t, 1)
	client := l.dial(t)
	c := l.next(t).(*limitConn)
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read after CloseWrite: %v, want EOF", err)
	}
	// A connection without a half-close says so.
	p1, p2 := net.Pipe()
	defer p2.Close()
	pc := &limitConn{Conn: p1, l: &limitListener{max: 1}}
	pc.l.open.Store(1)
	if err := pc.CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CloseWrite on a pipe: %v, want ErrUnsupported", err)
	}
	pc.Close()
	if n := pc.l.open.Load(); n != 0 {
		t.Errorf("open = %d after Close, want 0", n)
	}
}
