package downstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"
)

// writable tells the workers when a socket that refused bytes can take
// more. It is one epoll instance and one goroutine for the whole group:
// a blocked socket is registered for a single EPOLLOUT report
// (EPOLLONESHOT), and the report hands the connection's ID back to its
// worker. A full socket then costs nothing until the kernel has room for
// it, where retrying blocked sockets on a timer costs a write system call
// per socket per tick for as long as a slow reader stays slow
// (docs/BENCHMARKS.md, "Stalled readers").
//
// The instance is the gateway's own, beside netpoll's: netpoll watches the
// same sockets for reading, and an epoll set may hold a descriptor that
// another one holds too. A socket leaves the set by itself when it is
// closed (netpoll does not duplicate descriptors), so a report can only
// name a connection by ID, never by pointer: a stale ID finds nothing.
type writable struct {
	ep   int // the epoll instance
	stop int // an eventfd: written once by close, it ends run
	done chan struct{}
}

// stopKey is the key of the stop eventfd; connection IDs never reach it.
const stopKey = ^uint64(0)

func newWritable() (*writable, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("downstream: epoll_create1: %w", err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("downstream: eventfd: %w", err)
	}
	ev := epollEvent(unix.EPOLLIN, stopKey)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, stop, &ev); err != nil {
		unix.Close(stop)
		unix.Close(ep)
		return nil, fmt.Errorf("downstream: epoll_ctl add eventfd: %w", err)
	}
	return &writable{ep: ep, stop: stop, done: make(chan struct{})}, nil
}

// ArmWritable registers fd with the epoll instance ep for one EPOLLOUT
// report under key; it is what a Conn's WatchWritable calls, with the
// lock held that keeps fd from being closed (and its number reused)
// meanwhile. If the socket can take bytes already, the report comes at
// once.
func ArmWritable(ep, fd int, key uint64) error {
	ev := epollEvent(unix.EPOLLOUT|unix.EPOLLONESHOT, key)
	err := unix.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, &ev)
	if errors.Is(err, unix.ENOENT) {
		err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		return fmt.Errorf("downstream: watch fd %d for EPOLLOUT: %w", fd, err)
	}
	return nil
}

// epollEvent carries a 64-bit key in the event's data (Fd and Pad are its
// two halves in x/sys/unix).
func epollEvent(events uint32, key uint64) unix.EpollEvent {
	return unix.EpollEvent{Events: events, Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
}

func eventKey(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// run hands each report to the worker of the connection it names, until
// close. It blocks in epoll_wait with no timeout: with no blocked socket
// it costs nothing.
func (p *writable) run(g *Group) {
	defer close(p.done)
	var events [128]unix.EpollEvent
	for {
		n, err := unix.EpollWait(p.ep, events[:], -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// Cannot happen with a valid instance; the workers' timer
			// still retries blocked sockets, only later.
			slog.Error("downstream: epoll_wait failed; blocked sockets wait for the retry timer", "err", err)
			return
		}
		for i := range n {
			key := eventKey(&events[i])
			if key == stopKey {
				return
			}
			g.workers[key%uint64(len(g.workers))].writable(key)
		}
	}
}

// close ends run and releases the descriptors.
func (p *writable) close() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(p.stop, one[:])
	<-p.done
	unix.Close(p.stop)
	unix.Close(p.ep)
}
