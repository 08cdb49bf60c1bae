package main

import (
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestTimestampNS: the in-place parser finds SCM_TIMESTAMPNS behind
// another control message, and gives 0 for none or for a malformed one.
func TestTimestampNS(t *testing.T) {
	ts := unix.NsecToTimespec(1_700_000_000_123_456_789)
	tsBytes := unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
	other := []byte{1, 2, 3, 4}
	b := make([]byte, unix.CmsgSpace(len(other))+unix.CmsgSpace(len(tsBytes)))
	put := func(at, level, typ int, data []byte) int {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[at]))
		h.Level, h.Type = int32(level), int32(typ)
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[at+unix.CmsgLen(0):], data)
		return at + unix.CmsgSpace(len(data))
	}
	next := put(0, unix.SOL_SOCKET, unix.SCM_RIGHTS, other)
	put(next, unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, tsBytes)
	if got := timestampNS(b); got != ts.Nano() {
		t.Fatalf("timestampNS = %d, want %d", got, ts.Nano())
	}
	if got := timestampNS(b[:next]); got != 0 {
		t.Fatalf("without a timestamp: %d, want 0", got)
	}
	bad := append([]byte(nil), b...)
	(*unix.Cmsghdr)(unsafe.Pointer(&bad[0])).SetLen(len(bad) + 1) // longer than the buffer
	if got := timestampNS(bad); got != 0 {
		t.Fatalf("malformed: %d, want 0", got)
	}
}

// TestArrivalReader: on a real socket the kernel's receive time comes
// with the data, before the read that returns it.
func TestArrivalReader(t *testing.T) {
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
		// Send only once the reader has noted its start (it says so with a
		// byte), so the data arrives inside the read's window.
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return
		}
		c.Write([]byte("hello"))
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	a := newArrivalReader(nc.(*net.TCPConn))
	if a == nil {
		t.Fatal("no receive timestamps on a TCP socket")
	}
	before := time.Now().UnixNano()
	if _, err := nc.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := a.Read(buf)
	after := time.Now().UnixNano()
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if a.ts < before || a.ts > after {
		t.Fatalf("receive time %d outside the read's window [%d, %d]", a.ts, before, after)
	}
	if n, err := a.Read(buf); n != 0 || err == nil {
		t.Fatalf("read after the peer closed: %d, %v; want an error", n, err)
	}
}
