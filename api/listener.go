package api

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// refusalWriteTimeout bounds the write of the 503 to a connection over the
// cap. The answer is far smaller than any socket's send buffer, so on a
// fresh connection the write does not wait at all; the deadline only makes
// sure that Accept, which does the write, can never be held up by a peer.
const refusalWriteTimeout = 100 * time.Millisecond

// refusalBody is the JSON body of the 503 sent over the cap.
const refusalBody = `{"error":"too many API connections"}` + "\n"

// refusal is the whole answer to a connection over the cap: a complete
// HTTP/1.1 response that needs no request to have been read, and that
// tells the client the connection is over.
var refusal = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: " + strconv.Itoa(len(refusalBody)) + "\r\n" +
	"Connection: close\r\n" +
	"\r\n" +
	refusalBody)

// LimitListener returns a listener that keeps at most maxConns connections
// from l open at once. A connection accepted over the cap gets a 503
// {"error":"too many API connections"} with Connection: close and is
// closed at once, and Accept goes on to the next one: Accept never waits
// for a slot, so a flood of connections cannot stop the listener from
// answering, and the connections already open are served as before. A
// slot is freed when its connection is closed, however many times Close
// is called. maxConns < 1 is treated as 1.
func LimitListener(l net.Listener, maxConns int) net.Listener {
	return &limitListener{Listener: l, max: int64(max(1, maxConns))}
}

// limitListener is the listener LimitListener returns. Invariant: open is
// the number of connections Accept has returned whose Close has not yet
// been called, and it never exceeds max once Accept returns.
type limitListener struct {
	net.Listener
	max  int64
	open atomic.Int64
}

// Accept returns the next connection under the cap, refusing those over it.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		refuse(c)
	}
}

// refuse answers c with the 503 and closes it. Errors are ignored: the
// peer may already be gone, and there is nobody else to tell.
func refuse(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
	_, _ = c.Write(refusal)
	_ = c.Close()
}

// limitConn frees its slot in the listener on the first Close.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// CloseWrite passes a half-close through to the connection when it has
// one: net/http half-closes before closing a connection after an error
// answer, so that the client reads the answer before a reset.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("api: half-close of a %T: %w", c.Conn, errors.ErrUnsupported)
}
