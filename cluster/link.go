package cluster

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Links carries requests from this node straight to another node on a
// TCP connection of their own (a link), with the answers coming back on
// it: a push to another node's device costs no Redis command, and many
// requests in flight share each write. A node dials one link to each node
// it sends to, when it first sends, and the other node serves it; so two
// nodes that send to each other hold two links, each carrying requests
// one way and answers the other.
//
// A link opens with a handshake that proves both ends hold the same key
// (an HMAC over each other's nonce) and that the dialed end is the node
// and instance the registry announced, so that an address that now
// belongs to another process is never sent a push.
//
// Send fails with ErrNoLink when it cannot tell whether the node would
// hear: it announces no link address, the link cannot be made, or it
// broke before the request was written. The caller then goes through the
// bus, whose receiver count tells a dead node from a live one. Links do
// not replace the bus: messages for every node stay on it.
type Links struct {
	node, instance string
	key            []byte
	addr           func(node string) (addr, instance string, ok bool)
	timeout        time.Duration
	log            *slog.Logger
	handler        Handler

	ln     net.Listener
	mu     sync.Mutex
	peers  map[string]*peerLink // by node id, guarded by mu
	served map[*link]struct{}   // links other nodes dialed, guarded by mu
	nextID atomic.Uint64
	closed chan struct{}
	wg     sync.WaitGroup

	stats LinkStats
}

// LinkConfig configures Links. Zero values take the defaults in the
// comments.
type LinkConfig struct {
	Node, Instance string // this node and run; required
	// Key authenticates links: every node of the cluster holds the same.
	Key []byte
	// Addr returns where node's links are dialed and the instance that
	// must answer there (the registry's announcement); ok false when node
	// announces none.
	Addr func(node string) (addr, instance string, ok bool)
	// ReplyTimeout is how long Send waits for an answer; zero means
	// DefaultReplyTimeout.
	ReplyTimeout time.Duration
	Logger       *slog.Logger // nil: slog.Default()
}

// LinkStats counts the links' traffic.
type LinkStats struct {
	// Sent and Answered count requests; Fallbacks the sends that failed
	// with ErrNoLink; Dropped the answers this node could not queue.
	Sent, Answered, Fallbacks, Dropped atomic.Uint64
	Dials, DialFailures                atomic.Uint64
}

// ErrNoLink: the request was not sent on a link (see Links).
var ErrNoLink = errors.New("cluster: no link to the node")

// Limits of a link.
const (
	maxLinkFrame     = 64 << 20 // bytes of one message: a push frame with its device list
	maxLinkQueued    = 16 << 20 // bytes waiting to be written, past which sends fail
	linkKeepBuffer   = 256 << 10
	linkWriteTimeout = 10 * time.Second // a node that reads nothing about this long loses its link
	handshakeTime    = 2 * time.Second
	redialAfter      = time.Second // after a failed dial, sends go through the bus this long
	nonceSize        = 16
)

var linkMagic = []byte("LLLINK1\n")

// NewLinks returns links that serve nothing until Listen.
func NewLinks(cfg LinkConfig, h Handler) *Links {
	l := &Links{
		node: cfg.Node, instance: cfg.Instance, key: cfg.Key, addr: cfg.Addr,
		timeout: cfg.ReplyTimeout, log: cfg.Logger, handler: h,
		peers:  make(map[string]*peerLink),
		served: make(map[*link]struct{}),
		closed: make(chan struct{}),
	}
	if l.timeout <= 0 {
		l.timeout = DefaultReplyTimeout
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	return l
}

// Listen binds addr, where other nodes dial this node's links; Serve
// then serves them.
func (l *Links) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster: links: %w", err)
	}
	l.ln = ln
	return nil
}

// Serve serves the links other nodes dial, until Close: the handler
// must be ready.
func (l *Links) Serve() { l.wg.Go(l.accept) }

// Addr is the address Listen bound, "" before (and for nil Links).
func (l *Links) Addr() string {
	if l == nil || l.ln == nil {
		return ""
	}
	return l.ln.Addr().String()
}

// Stats returns the links' counters.
func (l *Links) Stats() *LinkStats { return &l.stats }

// Close stops listening and closes every link; requests waiting for an
// answer get ErrNoReply.
func (l *Links) Close() error {
	select {
	case <-l.closed:
		return nil
	default:
	}
	close(l.closed)
	var err error
	if l.ln != nil {
		err = l.ln.Close()
	}
	l.mu.Lock()
	for _, p := range l.peers {
		if p.link != nil {
			p.link.fail()
		}
	}
	for k := range l.served {
		k.fail()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

// peerLink is the state of this node's link to one node.
type peerLink struct {
	link     *link         // nil until dialed, and after it broke
	dialing  chan struct{} // closed when the dial in progress ends; nil when none
	instance string        // whom link reaches
	failed   time.Time     // the last failed dial
}

// Send writes m to node on its link and waits for the answer. ErrNoLink
// means m was not sent (go through the bus); ErrNoReply that it was
// written and no answer came within the reply timeout (or ctx's
// deadline), or the link broke meanwhile.
func (l *Links) Send(ctx context.Context, node string, m Msg) (Reply, error) {
	k, err := l.get(ctx, node)
	if err != nil {
		l.stats.Fallbacks.Add(1)
		return Reply{}, err
	}
	id := l.nextID.Add(1)
	e := envelope{kind: m.Kind, id: id, node: l.node, instance: l.instance, msg: m}
	w := getWaiter(l.timeout)
	if !k.expect(id, w.ch) {
		l.stats.Fallbacks.Add(1)
		return Reply{}, ErrNoLink // w.ch may be closed: not reused
	}
	if !k.send(id, e.appendTo(make([]byte, 4, 68+len(m.Frame)))) {
		k.forget(id)
		l.stats.Fallbacks.Add(1)
		return Reply{}, ErrNoLink
	}
	l.stats.Sent.Add(1)
	select {
	case r, ok := <-w.ch:
		if !ok {
			return Reply{}, ErrNoReply
		}
		putWaiter(w) // answered: nothing more comes on it
		if r.unsent {
			l.stats.Fallbacks.Add(1)
			return Reply{}, ErrNoLink
		}
		l.stats.Answered.Add(1)
		return r, nil
	case <-w.t.C:
	case <-ctx.Done():
	}
	// Not reused: an answer may still be on its way to w.ch.
	k.forget(id)
	return Reply{}, ErrNoReply
}

// waiter is what a request waits on: its answer's channel and its reply
// timeout, reused (waiters) when the answer came, so that a request
// allocates neither.
type waiter struct {
	ch chan Reply
	t  *time.Timer
}

var waiters sync.Pool

func getWaiter(d time.Duration) *waiter {
	if w, ok := waiters.Get().(*waiter); ok {
		w.t.Reset(d)
		return w
	}
	return &waiter{ch: make(chan Reply, 1), t: time.NewTimer(d)}
}

func putWaiter(w *waiter) {
	w.t.Stop() // since Go 1.23 a stopped timer's channel holds nothing
	waiters.Put(w)
}

// get returns the live link to node, dialing it when there is none.
func (l *Links) get(ctx context.Context, node string) (*link, error) {
	for {
		addr, instance, ok := l.addr(node)
		if !ok {
			return nil, ErrNoLink
		}
		l.mu.Lock()
		p := l.peers[node]
		if p == nil {
			p = &peerLink{}
			l.peers[node] = p
		}
		if p.link != nil && (p.link.broken() || p.instance != instance) {
			p.link.fail()
			p.link = nil
		}
		switch {
		case p.link != nil:
			k := p.link
			l.mu.Unlock()
			return k, nil
		case p.dialing != nil:
			wait := p.dialing
			l.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ErrNoLink
			}
		case time.Since(p.failed) < redialAfter && p.instance == instance:
			l.mu.Unlock()
			return nil, ErrNoLink
		}
		done := make(chan struct{})
		p.dialing = done
		p.instance = instance
		l.mu.Unlock()

		k, err := l.dial(node, addr, instance)
		l.mu.Lock()
		p.dialing = nil
		if err != nil {
			p.failed = time.Now()
		} else {
			select {
			case <-l.closed:
				k.fail()
				err = ErrNoLink
			default:
				p.link = k
			}
		}
		l.mu.Unlock()
		close(done)
		if err != nil {
			if !errors.Is(err, ErrNoLink) {
				l.log.Warn("cluster: cannot link to a node; its messages go through Redis meanwhile", "node", node, "addr", addr, "err", err)
			}
			return nil, ErrNoLink
		}
		return k, nil
	}
}

// dial opens and authenticates a link to node's instance at addr, and
// starts its reader and writer.
func (l *Links) dial(node, addr, instance string) (*link, error) {
	l.stats.Dials.Add(1)
	c, err := net.DialTimeout("tcp", addr, handshakeTime)
	if err != nil {
		l.stats.DialFailures.Add(1)
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTime))
	r := bufio.NewReaderSize(c, 64<<10)
	// Hello: magic, our nonce, whom we expect.
	nonce := newNonce()
	hello := append(append([]byte{}, linkMagic...), nonce...)
	hello = appendString(hello, node)
	hello = appendString(hello, instance)
	if err := writeFrame(c, hello); err != nil {
		return l.dialFailed(c, err)
	}
	// The server's answer: its nonce and its proof.
	b, err := readFrame(r)
	if err != nil {
		return l.dialFailed(c, fmt.Errorf("reading the handshake: %w", err))
	}
	d := decoder{b: b}
	theirs := d.bytes()
	proof := d.bytes()
	if d.bad || len(theirs) != nonceSize || !hmac.Equal(proof, l.mac('s', nonce, node, instance)) {
		return l.dialFailed(c, errors.New("the node there is not the one announced, or holds another key"))
	}
	mine := appendString(nil, l.node)
	mine = appendString(mine, l.instance)
	mine = appendBytes(mine, l.mac('c', theirs, l.node, l.instance))
	if err := writeFrame(c, mine); err != nil {
		return l.dialFailed(c, err)
	}
	_ = c.SetDeadline(time.Time{})
	k := newLink(c)
	l.wg.Go(func() { l.readAnswers(k, r) })
	return k, nil
}

func (l *Links) dialFailed(c net.Conn, err error) (*link, error) {
	_ = c.Close()
	l.stats.DialFailures.Add(1)
	return nil, err
}

// mac is the proof that the sender of role ('s' the dialed end, 'c' the
// dialing one) of node's instance holds the key, over the other end's
// nonce.
func (l *Links) mac(role byte, nonce []byte, node, instance string) []byte {
	h := hmac.New(sha256.New, l.key)
	h.Write([]byte{role})
	h.Write(nonce)
	h.Write(appendString(appendString(nil, node), instance))
	return h.Sum(nil)
}

func newNonce() []byte {
	b := make([]byte, nonceSize)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// accept serves the links other nodes dial.
func (l *Links) accept() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.log.Warn("cluster: links: accept failed", "err", err)
			select {
			case <-l.closed:
				return
			case <-time.After(100 * time.Millisecond): // a file limit, say: let it pass
			}
			continue
		}
		l.wg.Go(func() { l.serve(c) })
	}
}

// serve authenticates a link another node dialed and carries out its
// requests, in order, answering on it.
func (l *Links) serve(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTime))
	r := bufio.NewReaderSize(c, 64<<10)
	from, err := l.greet(c, r)
	if err != nil {
		l.log.Warn("cluster: links: refusing a link", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	k := newLink(c)
	l.mu.Lock()
	select {
	case <-l.closed:
		l.mu.Unlock()
		_ = c.Close()
		return
	default:
	}
	l.served[k] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.served, k)
		l.mu.Unlock()
		k.fail()
	}()
	// Corked while the next request is already read: the answers so far
	// go out in one write before the read may wait.
	corked := false
	defer func() {
		if corked {
			k.uncork()
		}
	}()
	for {
		if corked && !frameBuffered(r) {
			k.uncork()
			corked = false
		}
		b, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !k.broken() {
				l.log.Info("cluster: links: a link from a node broke", "node", from, "err", err)
			}
			return
		}
		e, err := decode(b)
		if err != nil || e.kind == kindReply {
			l.log.Warn("cluster: links: closing a link that sent a malformed message", "node", from, "bytes", len(b))
			return
		}
		if !corked && frameBuffered(r) {
			k.cork()
			corked = true
		}
		carryOut(l.handler, e, 2*l.timeout, func(r Reply) {
			if e.id == 0 {
				return
			}
			out := envelope{kind: kindReply, id: e.id, node: l.node, instance: l.instance, to: e.instance, reply: r}
			if !k.send(0, out.appendTo(make([]byte, 4, 64+16*(len(r.Missing)+len(r.Moved))))) {
				l.stats.Dropped.Add(1)
			}
		})
	}
}

// greet is the served end of the handshake: it returns the dialing node.
func (l *Links) greet(c net.Conn, r *bufio.Reader) (string, error) {
	b, err := readFrame(r)
	if err != nil {
		return "", fmt.Errorf("reading the hello: %w", err)
	}
	if len(b) < len(linkMagic)+nonceSize || string(b[:len(linkMagic)]) != string(linkMagic) {
		return "", errors.New("not a link")
	}
	theirs := b[len(linkMagic) : len(linkMagic)+nonceSize]
	d := decoder{b: b[len(linkMagic)+nonceSize:]}
	node, instance := d.string(), d.string()
	if d.bad || node != l.node || instance != l.instance {
		return "", fmt.Errorf("it expects node %q instance %q, not this one", node, instance)
	}
	nonce := newNonce()
	answer := appendBytes(nil, nonce)
	answer = appendBytes(answer, l.mac('s', theirs, l.node, l.instance))
	if err := writeFrame(c, answer); err != nil {
		return "", err
	}
	b, err = readFrame(r)
	if err != nil {
		return "", fmt.Errorf("reading the proof: %w", err)
	}
	d = decoder{b: b}
	from, fromInstance, proof := d.string(), d.string(), d.bytes()
	if d.bad || !hmac.Equal(proof, l.mac('c', nonce, from, fromInstance)) {
		return "", errors.New("the dialing node holds another key")
	}
	return from, nil
}

// readAnswers hands each answer read on k to its request, until k breaks.
func (l *Links) readAnswers(k *link, r *bufio.Reader) {
	defer k.fail()
	for {
		b, err := readFrame(r)
		if err != nil {
			return
		}
		e, err := decode(b)
		if err != nil || e.kind != kindReply {
			l.log.Warn("cluster: links: closing a link that answered with a malformed message", "bytes", len(b))
			return
		}
		k.answer(e.id, e.reply)
	}
}

// link is one connection between two nodes, either end. It has no
// writer goroutine: whoever sends while nobody is writing writes, and
// takes along what others queued meanwhile (so requests in flight share
// writes without a hand-off to another goroutine); the served end corks
// the link while it carries out the requests already read, and writes
// their answers at once when it runs out.
type link struct {
	c    net.Conn
	dead chan struct{}
	once sync.Once

	mu      sync.Mutex
	pending map[uint64]chan Reply // requests waiting for an answer; nil once broken
	out     []byte                // messages queued, not yet being written
	outIDs  []uint64              // the requests among them
	spare   []byte                // the buffer of the last write, for reuse
	writing bool                  // a sender is writing: it writes out as well
	renewed time.Time             // when the write deadline was last pushed back
	corked  int                   // while > 0, sends queue and nobody writes
}

func newLink(c net.Conn) *link {
	return &link{c: c, dead: make(chan struct{}), pending: make(map[uint64]chan Reply)}
}

func (k *link) broken() bool {
	select {
	case <-k.dead:
		return true
	default:
		return false
	}
}

// fail breaks the link: the connection closes, the requests still
// queued learn they were never written, and every other request waiting
// for an answer gets none (its channel closes).
func (k *link) fail() {
	k.once.Do(func() {
		close(k.dead)
		_ = k.c.Close()
		k.mu.Lock()
		p := k.pending
		k.pending = nil
		for _, id := range k.outIDs {
			if ch := p[id]; ch != nil {
				ch <- Reply{unsent: true}
				delete(p, id)
			}
		}
		k.out, k.outIDs = nil, nil
		k.mu.Unlock()
		for _, ch := range p {
			close(ch)
		}
	})
}

// expect registers request id's answer channel; false once broken.
func (k *link) expect(id uint64, ch chan Reply) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pending == nil {
		return false
	}
	k.pending[id] = ch
	return true
}

func (k *link) forget(id uint64) {
	k.mu.Lock()
	delete(k.pending, id)
	k.mu.Unlock()
}

// answer hands r to request id, if it still waits.
func (k *link) answer(id uint64, r Reply) {
	k.mu.Lock()
	ch := k.pending[id]
	delete(k.pending, id)
	k.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// send queues a message (id is the request's, 0 for an answer) and, when
// nobody is writing and the link is not corked, writes it with whatever
// else is queued. b holds 4 bytes for the length, then the envelope.
// False when the link is broken or too much waits already: the message
// is not sent.
func (k *link) send(id uint64, b []byte) bool {
	if len(b)-4 > maxLinkFrame {
		return false
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	k.mu.Lock()
	if k.pending == nil || len(k.out) > maxLinkQueued {
		k.mu.Unlock()
		return false
	}
	k.out = append(k.out, b...)
	if id != 0 {
		k.outIDs = append(k.outIDs, id)
	}
	k.flushLocked()
	return true
}

// cork holds writes back until uncork.
func (k *link) cork() {
	k.mu.Lock()
	k.corked++
	k.mu.Unlock()
}

// uncork writes what was queued while corked.
func (k *link) uncork() {
	k.mu.Lock()
	k.corked--
	k.flushLocked()
}

// flushLocked writes the queue, again and again while others add to it,
// unless someone else is writing or the link is corked. It is called with
// mu held and returns with it released.
func (k *link) flushLocked() {
	if k.writing || k.corked > 0 {
		k.mu.Unlock()
		return
	}
	k.writing = true
	// One yield before the first write lets the other senders that are
	// ready to run (API calls in flight) queue theirs: one write carries
	// them all, where each would have made its own.
	k.mu.Unlock()
	runtime.Gosched()
	k.mu.Lock()
	for len(k.out) > 0 && k.pending != nil {
		buf := k.out
		k.out = k.spare[:0]
		k.outIDs = k.outIDs[:0] // written now, or lost with the link: no longer "unsent"
		k.mu.Unlock()
		// The deadline moves at most once a second (setting it costs as
		// much as a small write): a blocked write fails between
		// linkWriteTimeout less a second and linkWriteTimeout after it
		// began. Only the writer touches renewed.
		if now := time.Now(); now.Sub(k.renewed) > time.Second {
			k.renewed = now
			_ = k.c.SetWriteDeadline(now.Add(linkWriteTimeout))
		}
		_, err := k.c.Write(buf)
		k.mu.Lock()
		if cap(buf) <= linkKeepBuffer {
			k.spare = buf[:0]
		}
		if err != nil {
			k.writing = false
			k.mu.Unlock()
			k.fail()
			return
		}
	}
	k.writing = false
	k.mu.Unlock()
}

// writeFrame writes b with its 4-byte length (the handshake's frames).
func writeFrame(w io.Writer, b []byte) error {
	f := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	_, err := w.Write(append(f, b...))
	return err
}

// frameBuffered reports whether r holds a whole message already.
func frameBuffered(r *bufio.Reader) bool {
	if r.Buffered() < 4 {
		return false // Peek would wait for more
	}
	h, err := r.Peek(4)
	if err != nil {
		return false
	}
	return uint64(r.Buffered()) >= 4+uint64(binary.BigEndian.Uint32(h))
}

// readFrame reads one length-prefixed message into a buffer of its own.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > maxLinkFrame {
		return nil, fmt.Errorf("a message of %d bytes (at most %d)", n, maxLinkFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
