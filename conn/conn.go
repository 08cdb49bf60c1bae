package conn

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
	"github.com/longlink/longlink/recovery"
	"github.com/valyala/bytebufferpool"
)

// State is where a connection is in its life; see the package doc for the
// legal moves.
type State uint32

const (
	StateAccepted State = iota // connected, not logged in
	StateLoggedIn              // LOGIN succeeded
	StateClosing               // the server decided to close; the KICK is on its way
	StateClosed                // the socket is closed
)

func (s State) String() string {
	switch s {
	case StateAccepted:
		return "accepted"
	case StateLoggedIn:
		return "logged-in"
	case StateClosing:
		return "closing"
	case StateClosed:
		return "closed"
	}
	return "invalid"
}

// legal[from] is the set of states reachable from `from`, as bits.
var legal = [...]uint8{
	StateAccepted: 1<<StateLoggedIn | 1<<StateClosing | 1<<StateClosed,
	StateLoggedIn: 1<<StateClosing | 1<<StateClosed,
	StateClosing:  1 << StateClosed,
	StateClosed:   0,
}

// Conn is one client connection. Every field earns its place: this struct
// is multiplied by a million.
type Conn struct {
	id  uint64 // node-unique, never reused in a run; picks the downstream worker
	hub *Hub   // the node's hub, for callbacks from the downstream worker
	nc  sock   // the socket's close and addresses (netpoll's connection on the reactor)

	mu    sync.Mutex // guards fd against close: held across every write syscall
	fd    int32      // the socket's descriptor, -1 once closed (guarded by mu)
	state atomic.Uint32
	seen  atomic.Uint32 // wheel tick of the last frame received
	// due is what the connection must do by when: before login, the wheel
	// tick of its login deadline; once logged in, the Unix second its
	// session ends (the token's exp plus auth.Leeway), 0 for never. Set
	// at accept, then guarded by the wheel's lock.
	due    uint32
	kind   atomic.Uint32 // the link: which transport, and its phase (transport.go)
	wslot  int32         // the timing wheel slot, -1 when not in the wheel (guarded by the wheel's lock)
	device string        // the token's sub, set at login
	app    string        // the token's app claim

	partial *bytebufferpool.ByteBuffer // bytes of a frame split across reads; nil when none (reader-owned)
	ext     *ext                       // transport state beyond the link; nil for TCP (and for WebSocket until a fragment arrives)
	out     downstream.Outbox          // pending output (owned by the downstream worker)
	rec     atomic.Pointer[recovery.Entry]

	groups []string // groups joined here, to leave them at close (guarded by the registry shard of device)

	tokens float32 // REQUEST rate bucket: requests available (reader-owned)
	frames float32 // frame rate bucket: frames available, negative when over (reader-owned)
	refill uint32  // both buckets: millisecond tick of the last refill (reader-owned)
	idle   uint32  // once logged in, the wheel ticks of silence before KICK(IDLE_TIMEOUT), from the granted heartbeat (guarded by the wheel's lock)

	wnext, wprev *Conn // timing wheel slot list (guarded by the wheel's lock)
}

// ext is the state only some transports need, kept out of Conn so a TCP
// connection does not pay for it.
type ext struct {
	frag *bytebufferpool.ByteBuffer // WebSocket: a fragmented message being reassembled (reader-owned)
	tls  *tlsConn                   // TLS: the session and its buffers
}

var errClosed = errors.New("conn: closed")

// A Conn is its own context for netpoll (what Prepare returns and Data
// receives): one allocation less per connection than a context holding
// it. It never ends and carries no values.
var _ context.Context = (*Conn)(nil)

func (*Conn) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*Conn) Done() <-chan struct{}       { return nil }
func (*Conn) Err() error                  { return nil }
func (*Conn) Value(any) any               { return nil }

// ID is the connection's node-unique id.
func (c *Conn) ID() uint64 { return c.id }

// Device is the logged-in device id ("" before login).
func (c *Conn) Device() string { return c.device }

// State is the connection's current state.
func (c *Conn) State() State { return State(c.state.Load() & stateMask) }

// The state word holds the State in its low byte, the session's flags in
// the next byte, once the server decided to close the KICK status in the
// third, and once closed the CloseReason in the top byte (closing.go), so
// the reason reaches the disconnect event without another field.
const (
	stateMask = 0xFF
	// The login's bits (beginLogin): a login is between naming the device
	// and finishing; a release came meanwhile and left the device to the
	// login; the connection reached logged-in (so Connected was emitted).
	loginBusy   = 1 << 9
	releaseDue  = 1 << 10
	wasLoggedIn = 1 << 11
	// Per-source admission (Options.Admit): the connection is counted for
	// its source, and still counted as not logged in.
	admitConn   = 1 << 12
	admitUnauth = 1 << 13
)

// takeUnauth clears admitUnauth and reports whether it was set, so that
// exactly one of the login and the release uncounts the login phase.
func (c *Conn) takeUnauth() bool {
	for {
		w := c.state.Load()
		if w&admitUnauth == 0 {
			return false
		}
		if c.state.CompareAndSwap(w, w&^admitUnauth) {
			return true
		}
	}
}

// setState moves c to `to` if that is legal from its current state and
// reports whether it did; status, when not OK, is recorded as the close
// reason. Concurrent callers race; exactly one wins each move.
func (c *Conn) setState(to State, status codec.Status) bool {
	for {
		word := c.state.Load()
		from := State(word & stateMask)
		if legal[from]&(1<<to) == 0 {
			return false
		}
		next := word&^stateMask | uint32(to)
		if status != codec.StatusOK {
			next = next&^0xFF0000 | uint32(status)<<16
		}
		if c.state.CompareAndSwap(word, next) {
			c.hub.transition(c, from, to)
			return true
		}
	}
}

// beginLogin starts the part of a login that names the device and binds
// it, unless c is closing already. Until endLogin, a release of c leaves
// the device to the login (claimRelease), so that the login's binds,
// registrations and Connected event cannot come after the release undid
// them. netpoll never runs the close hook while the handler runs, but a
// TLS login runs on the handshake goroutine, outside that promise.
func (c *Conn) beginLogin() bool {
	for {
		w := c.state.Load()
		if State(w&stateMask) != StateAccepted {
			return false
		}
		if c.state.CompareAndSwap(w, w|loginBusy) {
			return true
		}
	}
}

// endLogin ends what beginLogin started and reports whether a release
// came meanwhile: the caller must then release the device.
func (c *Conn) endLogin() (releaseNow bool) {
	for {
		w := c.state.Load()
		if c.state.CompareAndSwap(w, w&^(loginBusy|releaseDue)) {
			return w&releaseDue != 0
		}
	}
}

// claimRelease reports whether the release may undo the device's login
// now; false means a login is under way and will do it when it ends.
func (c *Conn) claimRelease() bool { return c.unlessBusy(loginBusy, releaseDue) }

// unlessBusy reports true when the state bit busy is clear, and otherwise
// sets the bit due, for whoever holds busy to act on, and reports false.
func (c *Conn) unlessBusy(busy, due uint32) bool {
	for {
		w := c.state.Load()
		if w&busy == 0 {
			return true
		}
		if c.state.CompareAndSwap(w, w|due) {
			return false
		}
	}
}

// Outbox implements downstream.Conn.
func (c *Conn) Outbox() *downstream.Outbox { return &c.out }

// Write implements downstream.Conn: a non-blocking write to the socket,
// through the transport.
func (c *Conn) Write(b []byte) (int, error) { return c.t().write(c, b) }

// Terminate implements downstream.Conn: the transport ends the
// connection; the close hook does the rest. A status the worker decided on
// its own (SLOW_CONSUMER) is recorded and counted here as a kick; a kick
// decided earlier already moved c to closing. A failed write is recorded
// for the close reason.
func (c *Conn) Terminate(status codec.Status, writeErr error) {
	if writeErr != nil {
		c.state.Or(writeFailed)
	}
	if status != codec.StatusOK && c.setState(StateClosing, status) {
		c.hub.countKick(status)
	}
	c.t().terminate(c, status)
}

// AppendFrame implements downstream.Conn.
func (c *Conn) AppendFrame(dst, frame []byte) ([]byte, int) { return c.t().appendFrame(dst, frame) }

// StampPush implements downstream.Conn: the push gets the device's next
// seq, and is kept for resume.
func (c *Conn) StampPush(frame []byte, p *downstream.Push) {
	e := c.rec.Load()
	if e == nil {
		e = c.hub.rec.Acquire(c.device)
		if !c.rec.CompareAndSwap(nil, e) {
			c.hub.rec.Detach(e, time.Now())
			e = c.rec.Load()
		}
	}
	seq := e.Record(p.Frame, c.hub.opts.RecoverSize)
	codec.SetSeq(frame, seq)
	if p.Durable != nil {
		c.hub.rec.Journal(c.device, seq, p.Frame, p.Mark, p.Durable.Done)
	}
}

// WatchWritable implements downstream.Conn, through the transport.
func (c *Conn) WatchWritable(ep int, key uint64) error { return c.t().watchWritable(c, ep, key) }

// Undelivered implements downstream.Conn: a push that found c gone was
// already counted as delivered, so it is kept for the device's resume
// whatever recovery state the device had.
func (c *Conn) Undelivered(p *downstream.Push) {
	if c.device != "" {
		c.hub.rec.Lost(c.device, p.Frame, time.Now())
	}
	if p.Durable != nil {
		p.Durable.Done()
	}
}

// kick sends KICK(status) and closes c; only the first close wins.
func (c *Conn) kick(status codec.Status, reason string) {
	if !c.setState(StateClosing, status) {
		return
	}
	c.hub.countKick(status)
	c.hub.down.Kick(c, status, reason)
}

// closed is the close hook: it runs once, on whichever goroutine saw the
// socket close, before netpoll closes the descriptor.
func (c *Conn) closed() {
	reason := c.closeReason()
	c.state.Or(uint32(reason) << reasonShift)
	c.hub.closes[reason].Add(1)
	c.mu.Lock()
	c.fd = -1
	c.mu.Unlock()
	c.setState(StateClosed, codec.StatusOK)
	c.hub.release(c)
}

// App is the logged-in device's application id.
func (c *Conn) App() string { return c.app }

// Backlog implements downstream.Conn: bytes the transport still holds
// for the socket (a TLS session's ciphertext).
func (c *Conn) Backlog() int { return c.t().backlog(c) }

// FrameLen implements downstream.Conn.
func (c *Conn) FrameLen(b []byte) int { return c.t().frameLen(b) }

// Cut implements downstream.Conn: the group cut c off (a slow consumer).
func (c *Conn) Cut(status codec.Status) {
	if c.setState(StateClosing, status) {
		c.hub.countKick(status)
		c.unlist()
	}
}

// unlist takes a cut-off connection out of the device and group indexes
// at once, not at its close: it may stay open for closeLinger while its
// KICK waits for the socket, and meanwhile pushes must find the device
// offline (and keep them for its resume) rather than count it delivered.
func (c *Conn) unlist() {
	if c.device != "" {
		c.hub.reg.remove(c)
	}
}

// send queues an answer for c; a client that leaves MaxPending bytes of
// answers unread is cut off as a slow consumer.
func (c *Conn) send(frame []byte) {
	if !c.hub.down.Send(c, frame) {
		c.cutOff()
	}
}

// sendRaw is send for transport bytes (WebSocket control frames).
func (c *Conn) sendRaw(b []byte) {
	if !c.hub.down.SendRaw(c, b) {
		c.cutOff()
	}
}

// cutOff closes c as a slow consumer: what is queued for it is dropped,
// the KICK follows once the socket takes it.
func (c *Conn) cutOff() {
	if !c.setState(StateClosing, codec.StatusSlowConsumer) {
		return
	}
	c.hub.countKick(codec.StatusSlowConsumer)
	c.unlist()
	c.hub.down.Cut(c, codec.StatusSlowConsumer, "outbound queue overflowed")
}

// setInputLimit bounds the input the reactor buffers for c (netpoll's
// input limit, patched in; see third_party/netpoll/PATCH.md).
func (c *Conn) setInputLimit(n int) {
	if l, ok := c.nc.(netpoll.InputLimiter); ok {
		l.SetInputLimit(n)
	}
}

// maxFrame is the largest frame c may send now: at most MaxLoginFrame
// until it has logged in.
func (c *Conn) maxFrame() int {
	if c.State() == StateAccepted {
		return min(codec.MaxLoginFrame, c.hub.opts.MaxFrame)
	}
	return c.hub.opts.MaxFrame
}

// AppendKick implements downstream.Conn: the KICK frame for status and
// reason (Hub.KickFrame).
func (c *Conn) AppendKick(dst []byte, status codec.Status, reason string) []byte {
	return c.hub.KickFrame(dst, status, reason)
}
