package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/longlink/longlink/codec"
)

// conn is one client connection. Its own goroutine (serve) reads and
// handles frames; any goroutine may write to it through write or push,
// which serialise on wmu.
type conn struct {
	s  *server
	nc net.Conn
	id uint64

	// device is set by the reader at login, before the connection is
	// registered; others read it only after finding c in the maps.
	device string
	groups []string // guarded by s.mu

	wmu     sync.Mutex
	bw      *bufio.Writer // guarded by wmu
	pushSeq uint32        // last PUSH seq sent on this connection; guarded by wmu
	dead    bool          // a write failed or a KICK was sent; guarded by wmu
}

var errDead = errors.New("connection closed")

// serve is the connection's goroutine: it reads one frame at a time until
// the connection ends, then unregisters it.
func (c *conn) serve() {
	defer c.close()
	br := bufio.NewReaderSize(c.nc, bufSize)
	loggedIn := false
	for {
		timeout := c.s.idleTimeout
		if !loggedIn {
			timeout = loginTimeout
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(timeout))

		hdr, err := br.Peek(codec.HeaderSize)
		if err != nil {
			c.readFailed(err, loggedIn)
			return
		}
		h, err := codec.ParseHeader(hdr, maxFrame)
		if err != nil {
			c.kickFor(err)
			return
		}
		// A frame that fits the reader's buffer is decoded in place;
		// a larger one is read into its own slice.
		n := h.Size()
		inPlace := n <= br.Size()
		var b []byte
		if inPlace {
			b, err = br.Peek(n)
		} else {
			b = make([]byte, n)
			_, err = io.ReadFull(br, b)
		}
		if err != nil {
			c.readFailed(err, loggedIn)
			return
		}
		f, _, err := codec.Decode(b, maxFrame)
		if err != nil {
			c.kickFor(err)
			return
		}
		c.s.framesIn.Add(1)
		ok := c.handle(&f, &loggedIn)
		if inPlace {
			_, _ = br.Discard(n)
		}
		if !ok {
			return
		}
	}
}

// readFailed ends the connection after a failed read: a timeout is
// answered with a KICK, anything else (EOF, reset, our own close) is not.
func (c *conn) readFailed(err error, loggedIn bool) {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return
	}
	if loggedIn {
		c.kick(codec.StatusIdleTimeout, "idle timeout")
	} else {
		c.kick(codec.StatusNotLoggedIn, "login timeout")
	}
}

// kickFor answers a decoding error with the KICK the protocol prescribes.
func (c *conn) kickFor(err error) {
	var ce *codec.Error
	if errors.As(err, &ce) {
		c.kick(ce.Status, ce.Reason)
		return
	}
	c.kick(codec.StatusBadFrame, err.Error())
}

// handle applies one frame. It reports whether the connection goes on.
// f aliases the read buffer: everything done with it is done here.
func (c *conn) handle(f *codec.Frame, loggedIn *bool) bool {
	if !*loggedIn {
		if f.Op != codec.OpLogin {
			c.kick(codec.StatusNotLoggedIn, "LOGIN must be the first frame")
			return false
		}
		*loggedIn = c.login(f)
		return *loggedIn
	}
	switch f.Op {
	case codec.OpPing:
		return c.write(codec.Header{Op: codec.OpPong, Seq: f.Seq}, nil, nil) == nil
	case codec.OpRequest:
		if f.Biz != echoBiz {
			return c.write(codec.Header{Op: codec.OpResponse, Biz: f.Biz, Seq: f.Seq, Status: codec.StatusUnknownBiz}, nil, nil) == nil
		}
		c.s.echoRequests.Add(1)
		return c.write(codec.Header{Op: codec.OpResponse, Biz: f.Biz, Seq: f.Seq}, f.Meta, f.Body) == nil
	case codec.OpPushAck:
		c.s.acks.Add(1)
		return true
	case codec.OpLogin:
		c.kick(codec.StatusBadFrame, "already logged in")
		return false
	default:
		c.kick(codec.StatusBadFrame, "op "+f.Op.String()+" is sent by the server only")
		return false
	}
}

// login verifies the token, registers the device (kicking its previous
// connection) and answers LOGIN_ACK. It reports success.
func (c *conn) login(f *codec.Frame) bool {
	s := c.s
	token, _ := f.Meta.Get("token")
	claims, err := s.verify(token)
	if err != nil {
		s.loginFail.Add(1)
		c.wmu.Lock()
		_ = c.writeLocked(codec.Header{Op: codec.OpLoginAck, Seq: f.Seq, Status: codec.StatusUnauthorized},
			codec.AppendMetaString(nil, "reason", err.Error()), nil)
		c.dead = true
		c.wmu.Unlock()
		return false
	}
	meta := codec.AppendMetaString(nil, "conn", strconv.FormatUint(c.id, 10))
	meta = codec.AppendMetaString(meta, "node", s.node)
	meta = codec.AppendMetaString(meta, "hb", s.hbSeconds)
	if _, ok := f.Meta.Get("resume"); ok {
		meta = codec.AppendMetaString(meta, "resumed", "0") // no recovery here
	}

	// Registering and answering under wmu keeps a push from reaching the
	// client before its LOGIN_ACK. Nobody takes a wmu while holding s.mu.
	c.device = claims.Subject
	c.wmu.Lock()
	old := s.register(c, claims.Groups)
	err = c.writeLocked(codec.Header{Op: codec.OpLoginAck, Seq: f.Seq}, meta, nil)
	c.wmu.Unlock()
	s.logins.Add(1)
	s.loggedIn.Add(1)
	if old != nil {
		old.kick(codec.StatusDuplicateLogin, "logged in on another connection")
	}
	return err == nil
}

// write sends one frame: lock, write, flush.
func (c *conn) write(h codec.Header, meta, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(h, meta, body)
}

// push sends one PUSH with the connection's next seq. h.Seq is ignored.
func (c *conn) push(h codec.Header, meta, body []byte) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.pushSeq++
	h.Seq = c.pushSeq
	return c.writeLocked(h, meta, body) == nil
}

// writeLocked encodes the frame into the writer's free space and flushes
// it: one write system call per frame. A failure closes the connection,
// which ends its reader. wmu must be held.
func (c *conn) writeLocked(h codec.Header, meta, body []byte) error {
	if c.dead {
		return errDead
	}
	if c.s.writeTimeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.writeTimeout))
	}
	_, err := c.bw.Write(codec.AppendFrame(c.bw.AvailableBuffer(), h, meta, body))
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		c.dead = true
		_ = c.nc.Close()
		return err
	}
	c.s.framesOut.Add(1)
	c.s.writes.Add(1)
	return nil
}

// kick sends KICK(status) with a reason and closes the connection. It may
// be called from any goroutine.
func (c *conn) kick(status codec.Status, reason string) {
	c.wmu.Lock()
	if c.writeLocked(codec.Header{Op: codec.OpKick, Status: status}, codec.AppendMetaString(nil, "reason", reason), nil) == nil {
		c.s.kicks[status].Add(1)
	}
	c.dead = true
	c.wmu.Unlock()
	_ = c.nc.Close()
}

// close runs when the reader returns.
func (c *conn) close() {
	_ = c.nc.Close()
	if c.device != "" {
		c.s.unregister(c)
		c.s.loggedIn.Add(-1)
	}
	c.s.conns.Add(-1)
}
