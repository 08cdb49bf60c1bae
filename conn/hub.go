package conn

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/longlink/longlink/admit"
	"github.com/longlink/longlink/auth"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
	"github.com/longlink/longlink/dispatch/upstream"
	"github.com/longlink/longlink/netquality"
	"github.com/longlink/longlink/reactor"
	"github.com/longlink/longlink/recovery"
	"github.com/longlink/longlink/route"
	"github.com/longlink/longlink/websocket"
	"github.com/valyala/bytebufferpool"
)

// Submitter forwards REQUESTs upstream (dispatch/upstream.Dispatcher).
type Submitter interface {
	Submit(req *upstream.Request) codec.Status
}

// Events learns when devices come and go (the -events-url sink). Its
// methods are called on connection goroutines and must not block.
type Events interface {
	Connected(node string, c *Conn)
	// Disconnected: c.CloseReason says why.
	Disconnected(node string, c *Conn)
}

// Cluster is the part of logins and releases that involves other nodes
// sharing the route (see package gateway); a single node's does nothing.
type Cluster interface {
	// Takeover is called at login, after the device was bound here and
	// before its recovery state is attached, when the device was bound to
	// prev on another node: it makes that connection let go (KICK
	// DUPLICATE_LOGIN there) and returns once its recovery state is where
	// Attach finds it, or ctx ends.
	Takeover(ctx context.Context, device string, prev route.Location)
	// Released is called when a logged-in connection has been released:
	// its recovery state is detached and its binding removed.
	Released(device string, conn uint64)
}

// noCluster is the Cluster of a hub given none: no other node.
type noCluster struct{}

func (noCluster) Takeover(context.Context, string, route.Location) {}
func (noCluster) Released(string, uint64)                          {}

// Options configure a Hub. Every field is required unless it says what
// its zero value means.
type Options struct {
	Node      string
	MaxFrame  int
	Heartbeat time.Duration // granted to a LOGIN without meta "hb" (LOGIN_ACK "hb")
	// HeartbeatMin and HeartbeatMax bound the interval a LOGIN's meta
	// "hb" asks for (LOGIN_ACK "hb_min", "hb_max"); zero means Heartbeat.
	HeartbeatMin, HeartbeatMax time.Duration
	// IdleTimeout is the silence that ends a connection with
	// KICK(IDLE_TIMEOUT) when that is longer than IdleHeartbeats times
	// its granted interval; zero means the latter alone.
	IdleTimeout time.Duration
	// SessionExpiry ends a session at its token's exp plus auth.Leeway
	// with KICK(UNAUTHORIZED, "token expired") unless a REFRESH renewed it.
	SessionExpiry bool
	LoginTimeout  time.Duration // not logged in after this long: KICK(NOT_LOGGED_IN)
	Rate          float64       // REQUESTs per second per connection; zero means unlimited
	Burst         int           // rate bucket size; zero means max(1, Rate)
	MaxConns      int           // connections beyond this are refused; zero means unlimited
	RecoverSize   int           // pushes kept per device for resume
	RouteTimeout  time.Duration // per route call; zero means 2s

	// FrameRate is the frames per second a connection may send, every op
	// and WebSocket control frames included, with FrameBurst at once (zero
	// means max(1, FrameRate)). Past it frames are answered OVERLOADED where
	// an answer exists, and a connection a further burst over is kicked
	// with OVERLOADED. Zero means unlimited.
	FrameRate  float64
	FrameBurst int
	// MaxInput is how many bytes of a logged-in connection's input may wait
	// unprocessed before the reactor stops reading it, so that TCP flow
	// control slows the sender; zero means DefaultMaxInput. Before login
	// the bound is MaxLoginInput.
	MaxInput int
	// HandshakeTimeout bounds a TLS handshake from its first byte; zero
	// means LoginTimeout.
	HandshakeTimeout time.Duration
	// Admit holds the per-source limits on new connections; nil means none.
	Admit *admit.Limiter

	Verifier *auth.Verifier
	Route    route.Route
	Recovery *recovery.Store
	Down     *downstream.Group
	Upstream Submitter
	Events   Events       // nil: none
	Cluster  Cluster      // nil: a single node
	TLS      *tls.Config  // for TLS listeners; nil when there are none
	Logger   *slog.Logger // nil: slog.Default()

	// Origins are the Origin header values a WebSocket handshake may
	// carry; others get 403. The zero value allows any.
	Origins websocket.Origins

	// SharedRoute says the route is remote (Redis): a release's route calls run off the closing goroutine.
	SharedRoute bool

	// OnTransition, when set, sees every state change; tests use it to
	// fail on an illegal one.
	OnTransition func(c *Conn, from, to State)
}

// Hub holds the node's connections and runs their session logic. It is
// the reactor's Handler for every transport.
type Hub struct {
	opts  Options
	log   *slog.Logger
	down  *downstream.Group
	rec   *recovery.Store
	route route.Route
	wheel *wheel
	reg   registry
	start time.Time

	nextID     atomic.Uint64
	handshakes atomic.Int64 // TLS handshakes in progress
	draining   atomic.Bool
	redirect   atomic.Pointer[string] // sent with KICK(SHUTTING_DOWN)
	loginq     *loginPool             // runs logins' route work with a shared route; nil without
	underway   underway               // logins bound in the shared route, not yet registered
	inputLocks [64]sync.Mutex         // a connection's input lock while a login worker may resume it (login.go)
	rtt        netquality.RTT         // the round trips clients report in PING meta
	intervals  netquality.Intervals   // the heartbeat intervals granted at login

	conns, loggedIn                                           atomic.Int64
	accepted, refused, refusedSource, logins, loginFails      atomic.Uint64
	refreshes, refreshFails                                   atomic.Uint64
	tlsFailures, throttled                                    atomic.Uint64
	framesIn, bytesIn, acks, recovered, requests, rateLimited atomic.Uint64
	kicks                                                     [codec.NumStatus]atomic.Uint64
	closes                                                    [NumCloseReasons]atomic.Uint64
}

// DefaultMaxInput is Options.MaxInput's default: room for a frame of the
// default -max-frame, so a busy client that sends whole frames is never
// slowed by it.
const DefaultMaxInput = 64 << 10

// MaxLoginInput bounds a connection's unprocessed input before it has
// logged in: one LOGIN frame (codec.MaxLoginFrame), so an unauthenticated
// connection holds kilobytes whatever -max-frame allows after login.
const MaxLoginInput = codec.MaxLoginFrame

// NewHub returns a hub and starts its timing wheel.
func NewHub(opts Options) *Hub {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Cluster == nil {
		opts.Cluster = noCluster{}
	}
	if opts.RouteTimeout <= 0 {
		opts.RouteTimeout = 2 * time.Second
	}
	if opts.Burst <= 0 {
		opts.Burst = max(1, int(opts.Rate))
	}
	if opts.FrameBurst <= 0 {
		opts.FrameBurst = max(1, int(opts.FrameRate))
	}
	if opts.MaxInput <= 0 {
		opts.MaxInput = DefaultMaxInput
	}
	if opts.HeartbeatMin <= 0 {
		opts.HeartbeatMin = opts.Heartbeat
	}
	if opts.HeartbeatMax <= 0 {
		opts.HeartbeatMax = opts.Heartbeat
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = opts.LoginTimeout
	}
	h := &Hub{
		opts:  opts,
		log:   opts.Logger,
		down:  opts.Down,
		rec:   opts.Recovery,
		route: opts.Route,
		start: time.Now(),
	}
	h.reg.init()
	if opts.SharedRoute {
		h.loginq = newLoginPool()
	}
	h.wheel = newWheel(h, min(opts.LoginTimeout, h.idleTimeout(opts.HeartbeatMin)))
	return h
}

// Close stops the timing wheel.
// Close stops the timing wheel and the login workers.
func (h *Hub) Close() {
	h.wheel.close()
	if h.loginq != nil {
		h.loginq.close()
	}
}

// Handler returns the reactor handler for a listener of transport t.
func (h *Hub) Handler(t Transport) reactor.Handler { return &listener{h: h, kind: t} }

type listener struct {
	h    *Hub
	kind Transport
}

func (l *listener) Prepare(nc netpoll.Connection) context.Context { return l.h.prepare(nc, l.kind) }

func (l *listener) Data(ctx context.Context, nc netpoll.Connection) error { return l.h.data(ctx, nc) }

// prepare admits or refuses a new connection.
func (h *Hub) prepare(nc netpoll.Connection, kind Transport) context.Context {
	fd := -1
	if f, ok := nc.(interface{ Fd() int }); ok {
		fd = f.Fd()
	}
	c := h.accept(nc, fd, firstLink[kind])
	if c == nil {
		return context.Background()
	}
	_ = nc.AddCloseCallback(func(netpoll.Connection) error { c.closed(); return nil })
	return c
}

// accept admits a new connection over s on link, fd being its descriptor,
// or turns it away and returns nil. The caller runs Conn.closed once when
// s closes.
func (h *Hub) accept(s sock, fd int, link uint32) *Conn {
	h.accepted.Add(1)
	status, reason := codec.StatusOK, ""
	switch {
	case fd < 0:
		status = codec.StatusInternal
	case h.draining.Load():
		status, reason = codec.StatusShuttingDown, "node is draining"
	case h.opts.MaxConns > 0 && h.conns.Load() >= int64(h.opts.MaxConns):
		status, reason = codec.StatusOverloaded, "too many connections"
	}
	counted := false
	if status == codec.StatusOK && h.opts.Admit != nil {
		if src, ok := admit.SourceOf(s.RemoteAddr()); ok {
			if v := h.opts.Admit.Admit(src, time.Now()); v != admit.OK {
				h.refusedSource.Add(1)
				status, reason = codec.StatusOverloaded, v.Reason()
			} else {
				counted = true
			}
		}
	}
	if status != codec.StatusOK {
		h.turnAway(s, fd, link, status, reason)
		return nil
	}
	c := &Conn{id: h.nextID.Add(1), hub: h, nc: s, fd: int32(fd), wslot: -1}
	c.kind.Store(link)
	if counted {
		c.state.Store(uint32(admitUnauth | admitConn))
	}
	now := h.wheel.now()
	c.seen.Store(now)
	c.due = now + h.wheel.ticks(h.opts.LoginTimeout) + 1
	c.frames = float32(h.opts.FrameBurst)
	c.refill = h.nowMillis()
	c.setInputLimit(MaxLoginInput)
	h.conns.Add(1)
	h.wheel.add(c)
	return c
}

// turnAway closes a connection that was never admitted, telling its
// client why when its transport can (transport.refusal).
func (h *Hub) turnAway(s sock, fd int, link uint32, status codec.Status, reason string) {
	h.refused.Add(1)
	if fd < 0 || reason == "" {
		s.Close()
		return
	}
	var buf [128]byte
	if b := links[link].refusal(h.KickFrame(buf[:0], status, reason)); b != nil {
		// The socket is new and its buffer empty: one small write
		// either fits whole or the client never reads anyway.
		_, _ = syscall.Write(fd, b)
		h.countKick(status)
	}
	s.Close()
}

// data hands all buffered input to the connection's transport, which
// keeps an incomplete frame's bytes aside.
func (h *Hub) data(ctx context.Context, nc netpoll.Connection) error {
	c, _ := ctx.(*Conn)
	r := nc.Reader()
	n := r.Len()
	if c == nil {
		_ = r.Skip(n)
		return nc.Close()
	}
	in, err := r.Next(n)
	if err != nil {
		return err
	}
	h.bytesIn.Add(uint64(n))
	c.seen.Store(h.wheel.now())
	if c.State() < StateClosing { // a closing connection's input is dropped
		c.input(in)
	}
	return r.Release()
}

// transition counts a state change and calls the test hook.
func (h *Hub) transition(c *Conn, from, to State) {
	switch {
	case to == StateLoggedIn:
		h.loggedIn.Add(1)
	case from == StateLoggedIn:
		h.loggedIn.Add(-1)
	}
	if h.opts.OnTransition != nil {
		h.opts.OnTransition(c, from, to)
	}
}

func (h *Hub) countKick(s codec.Status) {
	if s < codec.NumStatus {
		h.kicks[s].Add(1)
	}
}

// release undoes everything a connection held, once, when it closed.
func (h *Hub) release(c *Conn) {
	h.wheel.remove(c)
	h.conns.Add(-1)
	if w := c.state.Load(); w&admitConn != 0 {
		if src, ok := admit.SourceOf(c.nc.RemoteAddr()); ok {
			h.opts.Admit.Closed(src, !c.takeUnauth())
		}
	}
	if c.takeInput() {
		c.freeInput()
	}
	if c.claimRelease() {
		h.releaseDevice(c)
	}
}

// releaseDevice undoes a login: the registry, and (leave) the route, the
// recovery state, the cluster and the events sink. It runs once, from the
// release or, if that came while the login ran, from the login's end.
func (h *Hub) releaseDevice(c *Conn) {
	if c.device == "" {
		return
	}
	h.reg.remove(c)
	if h.opts.SharedRoute {
		// With a shared route these go to Redis: never on the goroutine
		// that closed the connection, which may be a downstream worker
		// serving thousands of other connections.
		go h.leave(c)
		return
	}
	h.leave(c)
}

// leave tells the route, the recovery store, the cluster and the events
// sink that c's device has left this connection.
func (h *Hub) leave(c *Conn) {
	if e := c.rec.Load(); e != nil {
		h.rec.Detach(e, time.Now())
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.RouteTimeout)
	defer cancel()
	if err := h.route.Unbind(ctx, c.device, route.Location{Node: h.opts.Node, Conn: c.id}); err != nil {
		h.log.Warn("route unbind failed", "device", c.device, "conn", c.id, "err", err)
	}
	h.opts.Cluster.Released(c.device, c.id)
	if h.opts.Events != nil && c.state.Load()&wasLoggedIn != 0 {
		h.opts.Events.Disconnected(h.opts.Node, c)
	}
}

// KickFrame encodes a KICK (for the downstream group too); with SHUTTING_DOWN it carries the redirect
// address when one is known.
func (h *Hub) KickFrame(dst []byte, status codec.Status, reason string) []byte {
	var redirect string
	if status == codec.StatusShuttingDown {
		if r := h.redirect.Load(); r != nil {
			redirect = *r
		}
	}
	return codec.AppendKick(dst, status, reason, redirect)
}

// Reply implements upstream.Replier: the business's answer becomes a
// RESPONSE on c.
func (c *Conn) Reply(req *upstream.Request, res upstream.Result) {
	c.hub.respond(c, req.Biz, req.Seq, res.Status, res.Meta, res.Body)
}

func (h *Hub) respond(c *Conn, biz uint16, seq uint32, status codec.Status, meta, body []byte) {
	buf := bytebufferpool.Get()
	buf.B = codec.AppendResponse(buf.B, biz, seq, status, meta, body)
	c.send(buf.B)
	bytebufferpool.Put(buf)
}

// now is milliseconds since the hub started, for rate buckets.
func (h *Hub) nowMillis() uint32 { return uint32(time.Since(h.start) / time.Millisecond) }
