package downstream_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
)

// The tests drive the task group over real TCP loopback connections: the
// server side's descriptor is written with syscall.Write in non-blocking
// mode, so a peer that does not read really makes the kernel say EAGAIN.

var errConnClosed = errors.New("test: connection closed")

// sockConn implements downstream.Conn over the server side of a TCP
// loopback pair. Its methods run on the owning worker; the test reads its
// counters through atomics and mutex-guarded fields.
type sockConn struct {
	t    testing.TB
	id   uint64
	out  downstream.Outbox // owned by the worker
	nc   *net.TCPConn      // server side; kept open while fd is used
	peer *net.TCPConn      // client side, read by the test
	fd   int

	ws       bool          // AppendFrame wraps each frame in a WebSocket binary message header
	noKick   bool          // AppendKick appends nothing: a connection that sends no KICK
	gate     chan struct{} // when set, Outbox blocks until it is closed
	gateSkip atomic.Int32  // Outbox calls the gate lets through before it blocks
	entered  chan struct{} // closed when the worker first blocks on gate
	once     sync.Once

	seq atomic.Uint32 // the last seq StampPush gave

	writes    atomic.Int64 // Write calls
	refusals  atomic.Int64 // Write calls that took nothing (EAGAIN)
	wrote     atomic.Int64 // bytes the socket took
	termCount atomic.Int32
	cuts      atomic.Int32      // Cut calls
	termC     chan codec.Status // the first Terminate's status

	mu           sync.Mutex
	closed       bool
	lastAttempt  []byte      // the bytes of the last Write call
	progressAt   []time.Time // when each Write that took bytes returned
	undelivered  []*downstream.Push
	terminatedAt time.Time
	writeErr     error // what Terminate was told of the failed write
}

var _ downstream.Conn = (*sockConn)(nil)

func (c *sockConn) ID() uint64 { return c.id }

func (c *sockConn) Outbox() *downstream.Outbox {
	if c.gate != nil && c.gateSkip.Add(-1) < 0 {
		c.once.Do(func() { close(c.entered) })
		<-c.gate
	}
	return &c.out
}

// AppendFrame is the transport's framing: the frame itself for TCP; for
// WebSocket, an RFC 6455 server-to-client binary message header first.
func (c *sockConn) AppendFrame(dst, frame []byte) ([]byte, int) {
	if c.ws {
		dst = appendWSHeader(dst, len(frame))
	}
	at := len(dst)
	return append(dst, frame...), at
}

func appendWSHeader(dst []byte, n int) []byte {
	switch {
	case n < 126:
		return append(dst, 0x82, byte(n))
	case n <= 0xFFFF:
		return append(dst, 0x82, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x82, 127)
		for i := 7; i >= 0; i-- {
			dst = append(dst, byte(uint64(n)>>(8*i)))
		}
		return dst
	}
}

// AppendKick implements downstream.Conn: kickFrame, unless noKick.
func (c *sockConn) AppendKick(dst []byte, status codec.Status, reason string) []byte {
	if c.noKick {
		return dst
	}
	return kickFrame(dst, status, reason)
}

// FrameLen implements downstream.Conn for the framing AppendFrame uses.
func (c *sockConn) FrameLen(b []byte) int {
	if !c.ws {
		return codec.FrameSize(b)
	}
	if len(b) < 2 {
		return 0
	}
	switch l := int(b[1] & 0x7F); l {
	case 126:
		return 4 + int(b[2])<<8 + int(b[3])
	case 127:
		n := 0
		for i := 2; i < 10; i++ {
			n = n<<8 | int(b[i])
		}
		return 10 + n
	default:
		return 2 + l
	}
}

// Cut implements downstream.Conn: it records the status like Terminate's
// first call would not, since the KICK comes before the close.
func (c *sockConn) Cut(status codec.Status) { c.cuts.Add(1) }

// Backlog implements downstream.Conn: a socket keeps nothing of its own.
func (c *sockConn) Backlog() int { return 0 }

func (c *sockConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastAttempt = append(c.lastAttempt[:0], b...)
	if c.closed {
		return 0, errConnClosed
	}
	for {
		n, err := syscall.Write(c.fd, b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			c.refusals.Add(1)
			return 0, nil
		case err != nil:
			return 0, err
		}
		if n > 0 {
			c.wrote.Add(int64(n))
			c.progressAt = append(c.progressAt, time.Now())
		}
		return n, nil
	}
}

func (c *sockConn) StampPush(frame []byte, p *downstream.Push) {
	if len(frame) != len(p.Frame) || &frame[0] == &p.Frame[0] {
		c.t.Errorf("conn %d: StampPush got the shared frame, not a copy", c.id)
	}
	if !bytes.Equal(frame[:codec.OffsetSeq], p.Frame[:codec.OffsetSeq]) || !bytes.Equal(frame[codec.OffsetSeq+4:], p.Frame[codec.OffsetSeq+4:]) {
		c.t.Errorf("conn %d: StampPush got %x, not the push's frame %x", c.id, frame, p.Frame)
	}
	codec.SetSeq(frame, c.seq.Add(1))
}

func (c *sockConn) WatchWritable(ep int, key uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errConnClosed
	}
	return downstream.ArmWritable(ep, c.fd, key)
}

func (c *sockConn) Undelivered(p *downstream.Push) {
	c.mu.Lock()
	c.undelivered = append(c.undelivered, p)
	c.mu.Unlock()
}

func (c *sockConn) Terminate(status codec.Status, writeErr error) {
	c.mu.Lock()
	c.closed = true
	c.writeErr = writeErr
	if c.terminatedAt.IsZero() {
		c.terminatedAt = time.Now()
	}
	c.nc.Close()
	c.mu.Unlock()
	if c.termCount.Add(1) == 1 {
		c.termC <- status
	} else {
		c.t.Errorf("conn %d: Terminate(%v) called again", c.id, status)
	}
}

func (c *sockConn) undeliveredPushes() []*downstream.Push {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*downstream.Push(nil), c.undelivered...)
}

func (c *sockConn) lastWrite() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.lastAttempt)
}

// waitTerminated waits for the first Terminate and returns its status.
func (c *sockConn) waitTerminated(t testing.TB, timeout time.Duration) codec.Status {
	t.Helper()
	select {
	case s := <-c.termC:
		c.termC <- s // keep it for later calls
		return s
	case <-time.After(timeout):
		t.Fatalf("conn %d: not terminated within %v", c.id, timeout)
		return 0
	}
}

func (c *sockConn) terminated() bool { return c.termCount.Load() > 0 }

// pairOpts sizes a connection's kernel buffers; zero keeps the default.
type pairOpts struct {
	sndbuf int // server side SO_SNDBUF
	rcvbuf int // client side SO_RCVBUF, set before connecting
	gate   bool
	// gateAfter is how many Outbox calls the gate lets through before it
	// blocks (a run's start marks its members through Outbox).
	gateAfter int32
}

// server is a loopback listener that hands out sockConns.
type server struct {
	t  testing.TB
	ln net.Listener
}

func newServer(t testing.TB) *server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &server{t: t, ln: ln}
}

// conn connects a new client and returns the server side as a sockConn.
func (s *server) conn(id uint64, o pairOpts) *sockConn {
	t := s.t
	t.Helper()
	d := net.Dialer{}
	if o.rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := s.ln.Accept()
		if err != nil {
			t.Errorf("accept: %v", err)
		}
		accepted <- c
	}()
	client, err := d.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.FailNow()
	}
	tc := srv.(*net.TCPConn)
	if o.sndbuf > 0 {
		if err := tc.SetWriteBuffer(o.sndbuf); err != nil {
			t.Fatal(err)
		}
	}
	c := &sockConn{t: t, id: id, nc: tc, peer: client.(*net.TCPConn), termC: make(chan codec.Status, 1)}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		c.fd = int(fd)
		serr = syscall.SetNonblock(int(fd), true)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if o.gate {
		c.gate, c.entered = make(chan struct{}), make(chan struct{})
		c.gateSkip.Store(o.gateAfter)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		c.closed = true
		c.nc.Close()
		c.mu.Unlock()
		c.peer.Close()
	})
	return c
}

// frame is a decoded frame copied out of the read buffer.
type frame struct {
	codec.Header
	meta map[string]string
	body []byte
}

// peerReader reads the client side of a connection in the background and
// decodes what arrives.
type peerReader struct {
	mu     sync.Mutex
	frames []frame
	raw    int   // bytes read
	tail   int   // undecoded bytes (a frame cut by the close)
	err    error // decode error: the stream is corrupt
	eof    bool
	done   chan struct{}
}

func startReader(c net.Conn) *peerReader {
	r := &peerReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		var buf []byte
		tmp := make([]byte, 64<<10)
		for {
			n, err := c.Read(tmp)
			buf = append(buf, tmp[:n]...)
			r.mu.Lock()
			r.raw += n
			for r.err == nil {
				f, k, derr := codec.Decode(buf, 1<<24)
				if derr != nil {
					r.err = derr
					break
				}
				if k == 0 {
					break
				}
				fr := frame{Header: f.Header, meta: map[string]string{}, body: bytes.Clone(f.Body)}
				f.Meta.Range(func(k, v []byte) bool { fr.meta[string(k)] = string(v); return true })
				r.frames = append(r.frames, fr)
				buf = buf[k:]
			}
			r.tail = len(buf)
			if err != nil {
				r.eof = errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *peerReader) snapshot() (frames []frame, eof bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]frame(nil), r.frames...), r.eof, r.err
}

// waitFrames waits until at least n frames have arrived.
func (r *peerReader) waitFrames(t testing.TB, n int, timeout time.Duration) []frame {
	t.Helper()
	var fs []frame
	checkFor(t, timeout, time.Millisecond, func() error {
		var err error
		fs, _, err = r.snapshot()
		if err != nil {
			t.Fatalf("peer stream corrupt after %d frames: %v", len(fs), err)
		}
		if len(fs) < n {
			return fmt.Errorf("%d of %d frames", len(fs), n)
		}
		return nil
	})
	return fs
}

// waitEOF waits for the server to close the connection and returns all
// frames received.
func (r *peerReader) waitEOF(t testing.TB, timeout time.Duration) []frame {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		fs, _, _ := r.snapshot()
		t.Fatalf("no EOF within %v (%d frames so far)", timeout, len(fs))
	}
	fs, eof, err := r.snapshot()
	if err != nil {
		t.Fatalf("peer stream corrupt after %d frames: %v", len(fs), err)
	}
	if !eof {
		t.Fatal("reader stopped without EOF")
	}
	return fs
}

// checkFor polls f until it returns nil or timeout passes (nats style).
func checkFor(t testing.TB, timeout, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(every)
	}
}

// kickFrame is the KICK of the tests' connections (sockConn.AppendKick):
// a KICK with meta reason.
func kickFrame(dst []byte, status codec.Status, reason string) []byte {
	b, start := codec.BeginFrame(dst)
	b = codec.AppendMetaString(b, "reason", reason)
	codec.EndFrame(b, start, codec.Header{Op: codec.OpKick, Status: status}, len(b)-start-codec.HeaderSize)
	return b
}

// respFrame is a RESPONSE with seq and a body derived from it.
func respFrame(dst []byte, seq uint32, bodyLen int) []byte {
	b, start := codec.BeginFrame(dst)
	for i := range bodyLen {
		b = append(b, byte(seq)+byte(i))
	}
	codec.EndFrame(b, start, codec.Header{Op: codec.OpResponse, Biz: 1, Seq: seq}, 0)
	return b
}

func checkRespBody(t testing.TB, f frame, bodyLen int) {
	t.Helper()
	if len(f.body) != bodyLen {
		t.Fatalf("seq %d: body of %d bytes, want %d", f.Seq, len(f.body), bodyLen)
	}
	for i, c := range f.body {
		if c != byte(f.Seq)+byte(i) {
			t.Fatalf("seq %d: body byte %d is %d", f.Seq, i, c)
		}
	}
}

// newPush encodes a PUSH with seq 0, meta id and body, as the gateway does.
func newPush(id string, body []byte) *downstream.Push {
	b, start := codec.BeginFrame(nil)
	b = codec.AppendMetaString(b, "id", id)
	metaLen := len(b) - start - codec.HeaderSize
	b = append(b, body...)
	codec.EndFrame(b, start, codec.Header{Op: codec.OpPush, Biz: 7, Flags: codec.FlagAckRequired}, metaLen)
	return &downstream.Push{Frame: b}
}

// newGroup starts a group and stops it when the test ends; stop stops it
// earlier (Close may be called only once).
func newGroup(t testing.TB, o downstream.Options) (g *downstream.Group, stop func()) {
	g, err := downstream.New(o)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(g.Close) }
	t.Cleanup(stop)
	return g, stop
}

// rawReader reads a connection to EOF without decoding.
type rawReader struct {
	done chan struct{}
	buf  bytes.Buffer
	err  error
}

func startRawReader(c net.Conn) *rawReader {
	r := &rawReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_, r.err = io.Copy(&r.buf, c)
	}()
	return r
}

func (r *rawReader) wait(t testing.TB, timeout time.Duration) []byte {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("no EOF within %v", timeout)
	}
	if r.err != nil {
		t.Fatalf("read: %v", r.err)
	}
	return r.buf.Bytes()
}

// targets is the fan-out list of cs (a new slice: PushMany keeps it).
func targets(cs ...downstream.Conn) []downstream.Target {
	ts := make([]downstream.Target, len(cs))
	for i, c := range cs {
		ts[i] = downstream.Target{Conn: c, ID: c.ID()}
	}
	return ts
}

// pushFromTwo starts two producers, a and b, each queuing each pushes
// (ids a-000, a-001, ...) with PushMany to the list that list returns;
// wg waits for them.
func pushFromTwo(wg *sync.WaitGroup, g *downstream.Group, each int, list func() []downstream.Target) {
	for _, name := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				g.PushMany(list(), newPush(fmt.Sprintf("%s-%03d", name, k), nil))
			}
		}()
	}
}
