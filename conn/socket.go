package conn

import (
	"net"
	"syscall"
	"time"

	"github.com/longlink/longlink/dispatch/downstream"
	"golang.org/x/sys/unix"
)

// sock is what the session needs of a connection's socket: netpoll's
// connection for the reactor's transports; a transport off the reactor
// brings its own.
type sock interface {
	Close() error
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
}

// reactorSocket is the socket part of the reactor's transports (TCP,
// WebSocket, TLS): a netpoll connection whose descriptor the downstream
// worker writes directly, without blocking.
type reactorSocket struct{}

func (reactorSocket) write(c *Conn, b []byte) (int, error) { return c.writeRaw(b) }

// watchWritable holds c.mu, which keeps the descriptor from being closed,
// and its number reused, while it is registered.
func (reactorSocket) watchWritable(c *Conn, ep int, key uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return errClosed
	}
	return downstream.ArmWritable(ep, int(c.fd), key)
}

// writeRaw writes b to the socket without blocking.
func (c *Conn) writeRaw(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return 0, errClosed
	}
	for {
		n, err := syscall.Write(int(c.fd), b)
		switch {
		case err == nil:
			return n, nil
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, nil
		default:
			return 0, err
		}
	}
}

// closeSocket closes the socket, or lingers (lingerClose); the close hook
// does the rest.
func (c *Conn) closeSocket() {
	if c.lingerClose() {
		return
	}
	c.nc.Close()
}

// closeLinger is how long a connection closed while its client was still
// sending stays half-open for the client to read its last frames: the
// write timeout a slow consumer is given for its KICK.
const closeLinger = downstream.DefaultWriteTimeout

// lingerClose closes c's sending side and leaves the close of the socket
// to the client's own close or closeLinger, when the kernel holds input
// from the client: closing a socket with unread input makes the kernel
// reset the connection, and a reset makes the client's kernel throw away
// what it had received and not yet read, the KICK included. Input that
// arrives meanwhile is read and dropped. It reports false when c can be
// closed at once.
func (c *Conn) lingerClose() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return false
	}
	if n, err := unix.IoctlGetInt(int(c.fd), unix.SIOCINQ); err != nil || n == 0 {
		return false
	}
	if err := syscall.Shutdown(int(c.fd), syscall.SHUT_WR); err != nil {
		return false
	}
	time.AfterFunc(closeLinger, func() { c.nc.Close() })
	return true
}
