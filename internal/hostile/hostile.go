// Package hostile is the attacking side of the hostile-clients suite
// (e2e/hostile_test.go) and of its measurement, bench/hostile: clients
// that flood a running gateway over real sockets, a well-behaved monitor
// connection that measures how the node answers meanwhile, and a sampler
// of the gateway process's resident memory.
//
// Every flood is bounded: it writes for a fixed time at most, stops early
// when its Stop channel closes (the sampler's Over, when the gateway's
// memory is past any bound worth measuring) and when the gateway closes
// the connection. Nothing here asserts: the callers judge the outcomes
// against the contract they test.
//
// Attack sockets leave from other loopback addresses than the monitor
// (From, Attackers): all of 127.0.0.0/8 is local on Linux, so per-source
// limits hit only the attacker.
package hostile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/longlink/longlink/codec"
)

// MaxFrame is the frame size the readers here accept: more than any
// gateway sends.
const MaxFrame = 1 << 24

// From is a dialer whose connections leave from the local address ip.
func From(ip string) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
}

// Attackers returns n dialers (at most 8), from 127.0.0.2 up: the
// addresses attacks come from, never the monitor's 127.0.0.1.
func Attackers(n int) []*net.Dialer {
	if n < 1 || n > 8 {
		panic(fmt.Sprintf("hostile: %d attacker addresses, want 1..8", n))
	}
	ds := make([]*net.Dialer, n)
	for i := range ds {
		ds[i] = From(fmt.Sprintf("127.0.0.%d", 2+i))
	}
	return ds
}

// Reader reads frames from a connection.
type Reader struct {
	nc  net.Conn
	buf []byte // unread bytes at buf[off:]
	off int
	tmp []byte
}

// NewReader reads frames from nc.
func NewReader(nc net.Conn) *Reader { return &Reader{nc: nc, tmp: make([]byte, 64<<10)} }

// Next returns the next frame, waiting until deadline. Its Meta and Body
// are the caller's to keep. The error is the read's (a timeout, io.EOF, a
// reset) or a decoding error.
func (r *Reader) Next(deadline time.Time) (codec.Frame, error) {
	for {
		f, n, err := codec.Decode(r.buf[r.off:], MaxFrame)
		if err != nil {
			return codec.Frame{}, err
		}
		if n > 0 {
			if len(f.Meta) > 0 {
				f.Meta = codec.Meta(bytes.Clone(f.Meta))
			}
			if len(f.Body) > 0 {
				f.Body = bytes.Clone(f.Body)
			}
			r.off += n
			if r.off == len(r.buf) {
				r.buf, r.off = r.buf[:0], 0
			}
			return f, nil
		}
		if r.off > 0 {
			r.buf = r.buf[:copy(r.buf, r.buf[r.off:])]
			r.off = 0
		}
		_ = r.nc.SetReadDeadline(deadline)
		k, err := r.nc.Read(r.tmp)
		r.buf = append(r.buf, r.tmp[:k]...)
		if err != nil && k == 0 {
			return codec.Frame{}, err
		}
	}
}

// Buffered is how many bytes were read but not returned as frames yet.
func (r *Reader) Buffered() int { return len(r.buf) - r.off }

// LoginFrame is a LOGIN with the token and the extra meta pairs.
func LoginFrame(seq uint32, token string, kv ...string) []byte {
	m := codec.AppendMetaString(nil, "token", token)
	for i := 0; i+1 < len(kv); i += 2 {
		m = codec.AppendMetaString(m, kv[i], kv[i+1])
	}
	return codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: seq}, m, nil)
}

// Login sends LOGIN on nc and reads its LOGIN_ACK, an error unless OK.
func Login(nc net.Conn, r *Reader, token string, kv ...string) (codec.Frame, error) {
	_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(LoginFrame(1, token, kv...)); err != nil {
		return codec.Frame{}, fmt.Errorf("write LOGIN: %w", err)
	}
	f, err := r.Next(time.Now().Add(5 * time.Second))
	if err != nil {
		return f, fmt.Errorf("read LOGIN_ACK: %w", err)
	}
	if f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
		reason, _ := f.Meta.Get("reason")
		return f, fmt.Errorf("login: got %v %v (%s), want LOGIN_ACK OK", f.Op, f.Status, reason)
	}
	return f, nil
}

// Dial connects with d and logs in.
func Dial(d *net.Dialer, addr, token string) (net.Conn, *Reader, error) {
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	r := NewReader(nc)
	if _, err := Login(nc, r, token); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, r, nil
}

// Echo sends one REQUEST to business biz and checks that its RESPONSE
// comes back OK with the same body (biz must be an echo), skipping other
// frames (PONGs, pushes) meanwhile.
func Echo(nc net.Conn, r *Reader, biz uint16, seq uint32, body []byte) error {
	_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(codec.AppendFrame(nil, codec.Header{Op: codec.OpRequest, Biz: biz, Seq: seq}, nil, body)); err != nil {
		return fmt.Errorf("write REQUEST: %w", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := r.Next(deadline)
		if err != nil {
			return fmt.Errorf("read RESPONSE: %w", err)
		}
		switch {
		case f.Op == codec.OpResponse && f.Seq == seq:
			if f.Status != codec.StatusOK || !bytes.Equal(f.Body, body) {
				return fmt.Errorf("RESPONSE %v body %.40q, want OK %.40q", f.Status, f.Body, body)
			}
			return nil
		case f.Op == codec.OpKick:
			return fmt.Errorf("KICK %v (%s) instead of the RESPONSE", f.Status, Reason(f))
		}
	}
}

// Reason is a frame's meta "reason".
func Reason(f codec.Frame) string {
	v, _ := f.Meta.Get("reason")
	return string(v)
}

// IsClosed reports whether err says the peer closed the connection (EOF,
// reset, broken pipe) or it was closed here.
func IsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// IsTimeout reports whether err is a deadline passing.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// CloseAll closes every connection.
func CloseAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// WithRcvBuf is d with a receive buffer of n bytes set before the
// connect, so the kernel cannot hide a reader that stops reading behind
// megabytes of socket buffer (the window is set at the handshake).
func WithRcvBuf(d *net.Dialer, n int) *net.Dialer {
	c := *d
	c.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
		}); err != nil {
			return err
		}
		return serr
	}
	return &c
}

// SendBuffer is the kernel send buffer of nc (SO_SNDBUF, as the kernel
// reports it: twice what was asked, for its bookkeeping).
func SendBuffer(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0, errors.New("hostile: not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		n, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	}); err != nil {
		return 0, err
	}
	return n, serr
}
