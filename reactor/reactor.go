// Package reactor runs the gateway's listeners on netpoll's epoll event
// loops, so that an idle connection costs a registered file descriptor
// and a small read buffer, and no goroutine.
//
// netpoll calls Handler.Data on a pooled goroutine only while a
// connection has input. The handler must consume all of it (or close the
// connection) before returning: netpoll calls it again at once while
// input remains. The gateway's handler never blocks waiting for more
// bytes; a frame split across reads is copied aside until it completes.
//
// netpoll is built from third_party/netpoll, patched twice (see PATCH.md
// there). Its epoll loop parks on the Go runtime's netpoller instead of
// blocking in epoll_wait while it has nothing to do: a blocked loop held
// a P in a system call, and the runtime's sysmon spent half of an idle
// node's CPU taking it back. And each connection can bound its buffered
// input (netpoll.InputLimiter): past the bound the loop stops reading the
// socket, so a client that sends faster than its handler works is slowed
// by TCP flow control instead of growing the node's memory.
//
// Callback order, per connection:
//
//	Prepare       accept goroutine, once, before the first read
//	Data          pooled goroutine, while input is buffered; never two at once
//	close hooks   whichever goroutine saw the close (see conn.Hub)
package reactor

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/cloudwego/netpoll"
)

// Handler receives a listener's connections.
type Handler interface {
	// Prepare is called for each accepted connection before it is
	// registered for reads; it returns the context passed to Data.
	Prepare(nc netpoll.Connection) context.Context
	// Data is called while the connection has unread input.
	Data(ctx context.Context, nc netpoll.Connection) error
}

// Configure sets netpoll's process-wide options: the number of epoll
// loops (zero keeps netpoll's default) and the size of each connection's
// read buffer (zero keeps netpoll's 8 KiB). A small buffer is what keeps
// an idle connection small; a busy connection's buffer still grows with
// what it reads.
//
// netpoll rounds every buffer node up to LinkBufferCap (4 KiB), which
// would make a smaller BufferSize pointless, so Configure lowers that
// floor to readBuffer too. It must run before the first listener starts.
func Configure(loops, readBuffer int) error {
	if readBuffer > 0 {
		netpoll.LinkBufferCap = readBuffer
	}
	cfg := netpoll.Config{PollerNum: loops, BufferSize: readBuffer}
	if err := netpoll.Configure(cfg); err != nil {
		return fmt.Errorf("reactor: configure netpoll: %w", err)
	}
	return nil
}

// Listener is one listening socket served by netpoll's event loops.
type Listener struct {
	ln   netpoll.Listener
	loop netpoll.EventLoop
	done chan error
}

// Options tunes a listener's sockets.
type Options struct {
	// SendBuffer, when positive, is the SO_SNDBUF of every accepted
	// socket; zero leaves the kernel's autotuning. It is set once on the
	// listening socket, which accepted sockets inherit it from, so it
	// costs nothing per connection. A fixed send buffer bounds the kernel
	// memory held for a device that stops reading: autotuned, it grows to
	// net.ipv4.tcp_wmem's maximum (4 MiB by default).
	SendBuffer int
}

// Listen starts serving addr (TCP) with h.
func Listen(addr string, h Handler, opts Options) (*Listener, error) {
	ln, err := netpoll.CreateListener("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("reactor: listen %s: %w", addr, err)
	}
	if opts.SendBuffer > 0 {
		if err := syscall.SetsockoptInt(ln.Fd(), syscall.SOL_SOCKET, syscall.SO_SNDBUF, opts.SendBuffer); err != nil {
			ln.Close()
			return nil, fmt.Errorf("reactor: listen %s: set SO_SNDBUF %d: %w", addr, opts.SendBuffer, err)
		}
	}
	loop, err := netpoll.NewEventLoop(h.Data, netpoll.WithOnPrepare(h.Prepare))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("reactor: event loop for %s: %w", addr, err)
	}
	l := &Listener{ln: ln, loop: loop, done: make(chan error, 1)}
	go func() { l.done <- loop.Serve(ln) }()
	return l, nil
}

// Addr is the address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// StopAccepting closes the listening socket; connections already
// accepted are untouched.
func (l *Listener) StopAccepting() error {
	return l.ln.Close()
}

// Shutdown stops accepting and closes the connections netpoll still
// holds once they are idle, until ctx ends.
func (l *Listener) Shutdown(ctx context.Context) error {
	err := l.loop.Shutdown(ctx)
	select {
	case <-l.done:
	case <-time.After(time.Second):
	}
	return err
}
