package main

import (
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Arrival times. On a machine shared with the gateway, the generator's
// own goroutines can be late to read what has arrived: a delivery's
// latency, measured when the read returns, then includes the generator's
// lag. For plain TCP the kernel says when the data reached the socket
// (SO_TIMESTAMPNS: the receive time of the last segment a read returns),
// so each delivery is also measured up to that moment, as the "arrival"
// latency. The difference between the two is the generator's lag; the
// arrival latency is what the gateway and the network took.

// arrivalReader reads a TCP connection with recvmsg, keeping the
// kernel's receive timestamp of each read. The message header is built
// once per connection and the system call made directly: x/sys's Recvmsg
// allocates on every call.
type arrivalReader struct {
	rc   syscall.RawConn
	read func(fd uintptr) bool // the RawConn callback, made once per connection

	iov  unix.Iovec
	msg  unix.Msghdr
	n    int
	err  error
	ts   int64 // Unix nanos of the last read's last segment; 0 when unknown
	cmsg [64]byte
}

// newArrivalReader turns on receive timestamps for nc; nil when the
// socket refuses them (the connection is then read without).
func newArrivalReader(nc *net.TCPConn) *arrivalReader {
	rc, err := nc.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return nil
	}
	a := &arrivalReader{rc: rc}
	a.msg.Iov = &a.iov
	a.msg.SetIovlen(1)
	a.read = func(fd uintptr) bool {
		a.msg.Control = &a.cmsg[0]
		a.msg.SetControllen(len(a.cmsg))
		for {
			n, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&a.msg)), 0)
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait until the socket is readable
			case 0:
				a.n, a.err, a.ts = int(n), nil, timestampNS(a.cmsg[:a.msg.Controllen])
				if n == 0 {
					a.err = io.EOF
				}
			default:
				a.n, a.err, a.ts = 0, errno, 0
			}
			return true
		}
	}
	return a
}

// Read reads once into p, like net.Conn.Read.
func (a *arrivalReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	a.iov.Base = &p[0]
	a.iov.SetLen(len(p))
	err := a.rc.Read(a.read)
	a.iov.Base = nil
	if err != nil {
		return 0, err
	}
	return a.n, a.err
}

// timestampNS finds the SCM_TIMESTAMPNS message in a control buffer and
// returns its time in Unix nanos, 0 when there is none. It parses in
// place: unix.ParseSocketControlMessage allocates.
func timestampNS(b []byte) int64 {
	const hdr = unix.SizeofCmsghdr
	for len(b) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < hdr || l > len(b) {
			return 0
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= hdr+int(unsafe.Sizeof(unix.Timespec{})) {
			return (*unix.Timespec)(unsafe.Pointer(&b[hdr])).Nano()
		}
		b = b[min(cmsgAlign(l), len(b)):]
	}
	return 0
}

func cmsgAlign(n int) int { return (n + 7) &^ 7 }
