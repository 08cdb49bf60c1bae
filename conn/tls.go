package conn

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/valyala/bytebufferpool"
)

// TLS on the reactor.
//
// netpoll has no TLS and crypto/tls reads from a blocking net.Conn, so a
// TLS connection runs crypto/tls over an in-memory transport (tlsConn)
// that the reactor feeds:
//
//   - The handshake starts with the first ciphertext (the ClientHello),
//     so a socket that sends nothing holds no handshake and is closed by
//     the login timeout. It runs on a goroutine of its own that waits for
//     ciphertext as it arrives, lasts at most the handshake timeout, and at
//     most MaxHandshakes run at once (more are refused), so a crowd of slow
//     handshakes costs bounded goroutines; the per-source cap on
//     connections not logged in (package admit) keeps one address from
//     taking them all.
//   - After the handshake, reading never blocks: when the buffered
//     ciphertext runs out, the transport answers with a timeout error,
//     which crypto/tls does not treat as fatal, so the session stays usable
//     and the reactor goroutine returns. No goroutine waits on an idle TLS
//     connection.
//   - The downstream worker encrypts (tls.Conn.Write) into the transport's
//     output, which it writes to the socket without blocking; ciphertext
//     the socket does not take is the connection's Backlog and counts
//     towards the slow-consumer limit.

// MaxHandshakes bounds the TLS handshakes in progress on one node.
const MaxHandshakes = 4096

// maxCipherIn bounds the ciphertext buffered for one connection during
// its handshake: a whole TLS record is at most 16 KiB plus overhead, so
// more than this unread means the peer is flooding a handshake. After the
// handshake what arrives is decrypted at once, in chunks the reactor's
// input limit bounds.
const maxCipherIn = 32 << 10

// wouldBlock is the transport's answer when no ciphertext is buffered.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "conn: tls transport would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errCipherFlood = errors.New("conn: too much unread TLS data")

// tlsConn is one connection's TLS session and the in-memory transport
// under it.
type tlsConn struct {
	c  *Conn
	tc *tls.Conn

	mu          sync.Mutex
	cond        *sync.Cond // the handshake goroutine waits here for ciphertext
	in          []byte     // ciphertext received, not yet read by the session
	out         []byte     // ciphertext the socket has not taken yet
	handshaking bool
	closed      bool

	// proc serialises reading the session: the reactor's data callbacks
	// and the handshake goroutine's first read after the handshake.
	proc  sync.Mutex
	plain *bytebufferpool.ByteBuffer // decrypted bytes not yet a whole frame
}

var _ net.Conn = (*tlsConn)(nil)

// tlsTransport carries frames back to back inside a TLS session, whose
// state is Conn.ext.tls from the ClientHello on.
type tlsTransport struct{ reactorSocket }

// input starts the handshake with the first bytes, then feeds the session
// ciphertext.
func (tlsTransport) input(c *Conn, in []byte) {
	if c.ext == nil && !c.hub.startTLS(c) {
		return
	}
	c.feedTLS(in)
}

func (tlsTransport) appendFrame(dst, frame []byte) ([]byte, int) {
	return append(dst, frame...), len(dst)
}

func (tlsTransport) frameLen(b []byte) int { return codec.FrameSize(b) }

// write encrypts b into the session. Before the ClientHello there is no
// session (a kick before it): the client could not read a frame, so it is
// dropped.
func (tlsTransport) write(c *Conn, b []byte) (int, error) {
	if c.ext == nil || c.ext.tls == nil {
		return len(b), nil
	}
	return c.ext.tls.write(c, b)
}

// backlog is the ciphertext the session holds for the socket.
func (tlsTransport) backlog(c *Conn) int {
	if c.ext != nil && c.ext.tls != nil {
		return c.ext.tls.backlog()
	}
	return 0
}

func (tlsTransport) terminate(c *Conn, _ codec.Status) { c.closeSocket() }

// refusal is nothing: a TLS client reads no frame before its handshake.
func (tlsTransport) refusal([]byte) []byte { return nil }

func (tlsTransport) release(c *Conn) {
	if c.ext != nil && c.ext.tls != nil {
		c.ext.tls.release()
	}
}

// startTLS begins the handshake of a TLS connection whose first bytes
// arrived, or closes it and reports false when MaxHandshakes are running.
func (h *Hub) startTLS(c *Conn) bool {
	if h.handshakes.Add(1) > MaxHandshakes {
		h.handshakes.Add(-1)
		h.refused.Add(1)
		c.setState(StateClosing, codec.StatusOverloaded) // no KICK can reach it; the close reason says why
		c.nc.Close()
		return false
	}
	t := &tlsConn{c: c, handshaking: true}
	t.cond = sync.NewCond(&t.mu)
	t.tc = tls.Server(t, h.opts.TLS)
	c.ext = &ext{tls: t}
	go t.handshake(h)
	return true
}

func (t *tlsConn) handshake(h *Hub) {
	defer h.handshakes.Add(-1)
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.HandshakeTimeout)
	defer cancel()
	err := t.tc.HandshakeContext(ctx)
	t.mu.Lock()
	t.handshaking = false
	t.mu.Unlock()
	if err != nil {
		h.tlsFailures.Add(1)
		h.log.Debug("tls handshake failed", "conn", t.c.id, "err", err)
		t.c.failed()
		return
	}
	t.c.input(nil) // what arrived right behind the handshake
}

// feedTLS takes ciphertext from the reactor; after the handshake it
// decrypts what it can and feeds the frames to the session.
func (c *Conn) feedTLS(in []byte) {
	t := c.ext.tls
	t.mu.Lock()
	if t.handshaking && len(t.in)+len(in) > maxCipherIn {
		t.mu.Unlock()
		c.hub.log.Debug("tls flood", "conn", c.id, "err", errCipherFlood)
		c.failed()
		return
	}
	t.in = append(t.in, in...)
	handshaking := t.handshaking
	t.cond.Signal()
	t.mu.Unlock()
	if !handshaking {
		t.pump()
	}
}

// pump reads every whole record buffered, then hands the plaintext's
// whole frames to the session. A session that is over is closed after
// proc is released: the close hook, which may run at once, takes proc to
// release the session.
func (t *tlsConn) pump() {
	t.proc.Lock()
	err := t.read()
	t.proc.Unlock()
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		t.c.nc.Close() // close_notify: the client's goodbye
	default:
		t.c.failed() // a bad record or an alert
	}
}

// read decrypts what is buffered and feeds the session; an error means
// the session is over.
func (t *tlsConn) read() error {
	c := t.c
	if c.State() >= StateClosing {
		return nil
	}
	if t.plain == nil {
		t.plain = bytebufferpool.Get()
	}
	for {
		b := t.plain.B
		if cap(b)-len(b) < 16<<10 {
			b = append(b, make([]byte, 16<<10)...)[:len(b)]
		}
		n, err := t.tc.Read(b[len(b):cap(b)])
		t.plain.B = b[:len(b)+n]
		if err != nil {
			var wb wouldBlock
			if errors.As(err, &wb) {
				break
			}
			return err
		}
	}
	keepRest(c, &t.plain, t.plain.B, streamFrames(c, t.plain.B))
	return nil
}

// write is Conn.Write for TLS: encrypt b and write what the socket takes.
// Ciphertext still held from an earlier write goes first; while any is
// held, nothing new is taken.
func (t *tlsConn) write(c *Conn, b []byte) (int, error) {
	t.mu.Lock()
	handshaking := t.handshaking
	t.mu.Unlock()
	if handshaking {
		// No session yet to carry a frame (a kick during the handshake):
		// there is nothing the client could read; drop it.
		return len(b), nil
	}
	if err := t.flush(); err != nil {
		return 0, err
	}
	if t.backlog() > 0 || len(b) == 0 {
		return 0, nil
	}
	if _, err := t.tc.Write(b); err != nil {
		return 0, err
	}
	if err := t.flush(); err != nil {
		return 0, err
	}
	return len(b), nil
}

// flush writes held ciphertext to the socket without blocking.
func (t *tlsConn) flush() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.out) > 0 {
		n, err := t.c.writeRaw(t.out)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		t.out = t.out[:copy(t.out, t.out[n:])]
	}
	t.out = nil // all written: an idle session keeps no buffer
	return nil
}

func (t *tlsConn) backlog() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.out)
}

// release drops the session's buffers when the connection has closed.
func (t *tlsConn) release() {
	t.mu.Lock()
	t.closed = true
	t.in, t.out = nil, nil
	t.cond.Broadcast()
	t.mu.Unlock()
	t.proc.Lock()
	if t.plain != nil {
		bytebufferpool.Put(t.plain)
		t.plain = nil
	}
	t.proc.Unlock()
}

// Read implements net.Conn for crypto/tls: buffered ciphertext; during the
// handshake it waits for more, afterwards it reports wouldBlock.
func (t *tlsConn) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.in) == 0 {
		if t.closed {
			return 0, io.EOF
		}
		if !t.handshaking {
			return 0, wouldBlock{}
		}
		t.cond.Wait()
	}
	n := copy(p, t.in)
	t.in = t.in[:copy(t.in, t.in[n:])]
	if len(t.in) == 0 {
		t.in = nil // an idle session keeps no buffer (the handshake's was large)
	}
	return n, nil
}

// Write implements net.Conn for crypto/tls. During the handshake the
// records go straight out (the socket is new and takes a few KiB at once;
// a full buffer is waited out briefly); afterwards they are held for the
// downstream worker's flush.
func (t *tlsConn) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.out = append(t.out, p...)
	handshaking := t.handshaking
	t.mu.Unlock()
	if !handshaking {
		return len(p), nil
	}
	deadline := time.Now().Add(t.c.hub.opts.HandshakeTimeout)
	for t.backlog() > 0 {
		if err := t.flush(); err != nil {
			return 0, err
		}
		if t.backlog() == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, syscall.ETIMEDOUT
		}
		time.Sleep(time.Millisecond)
	}
	return len(p), nil
}

// Close implements net.Conn for crypto/tls: it ends a waiting handshake.
// The socket itself is closed by the connection.
func (t *tlsConn) Close() error {
	t.mu.Lock()
	t.closed = true
	t.cond.Broadcast()
	t.mu.Unlock()
	return nil
}

func (t *tlsConn) LocalAddr() net.Addr              { return t.c.nc.LocalAddr() }
func (t *tlsConn) RemoteAddr() net.Addr             { return t.c.nc.RemoteAddr() }
func (t *tlsConn) SetDeadline(time.Time) error      { return nil }
func (t *tlsConn) SetReadDeadline(time.Time) error  { return nil }
func (t *tlsConn) SetWriteDeadline(time.Time) error { return nil }
