package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
)

// State is the client's connection state, reported to Config.OnState.
//
//	Connecting   -> Connected | Disconnected | Closed
//	Connected    -> Disconnected | Closed
//	Disconnected -> Connecting | Closed
//	Closed       (final)
type State int32

const (
	// StateConnecting: an attempt (token, dial, LOGIN) is under way.
	StateConnecting State = iota
	// StateConnected: logged in; requests go out at once.
	StateConnected
	// StateDisconnected: the attempt failed or the connection was lost;
	// the error says why. The client will try again after a backoff
	// (at once after KICK(SHUTTING_DOWN)).
	StateDisconnected
	// StateClosed: the client stopped for good: Close (ErrClosed),
	// KICK(UNAUTHORIZED) or KICK(DUPLICATE_LOGIN) (*KickError), or
	// LOGIN_ACK(UNAUTHORIZED) (*LoginError).
	StateClosed
)

var stateNames = [...]string{"connecting", "connected", "disconnected", "closed"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Push is a downstream message. Body and Meta belong to the handler.
type Push struct {
	Biz   uint16
	Seq   uint32 // per device, from 1; restarts when the gateway lost the device's state
	ID    string // the business's message id (meta "id"), may be empty
	Group string // the group it was sent to (meta "group"), if any
	Body  []byte
	Meta  map[string]string // every meta entry, including id and group; nil if none
}

// Stats are the client's counters, for the app's telemetry. Counters only
// grow for the life of the Client.
type Stats struct {
	State      State
	Node, Conn string // the gateway node and connection id of the current connection

	Connects          uint64 // successful logins
	Reconnects        uint64 // successful logins after the first
	Resumed           uint64 // logins whose resume was complete (resumed=1)
	Gaps              uint64 // logins that reported a gap (resumed=0); OnGap calls
	Kicks             uint64 // KICKs received
	HeartbeatTimeouts uint64 // connections declared dead for missed PONGs

	PushesReceived    uint64 // pushes handed to the handlers' queue
	DroppedDuplicates uint64 // pushes dropped as duplicates (seq or id)
	Unhandled         uint64 // pushes of a business without a handler
	AcksSent          uint64 // PUSH_ACK frames sent
	LastSeq           uint32 // seq of the last push received (the next resume)

	RTT time.Duration // the last PING→PONG round trip measured (0 before the first), reported with the next PING

	Refreshes       uint64 // REFRESHes the gateway accepted
	RefreshFailures uint64 // refreshes that failed: Config.Token's error, a refusal, no answer

	RequestsSent    uint64 // REQUEST frames handed to a connection (retries included)
	RequestsRetried uint64 // idempotent requests re-queued after a disconnect
	RequestsFailed  uint64 // requests that ended in an error other than a StatusError
	Queued          int    // requests waiting for a connection now
	InFlight        int    // requests sent and not yet answered now
}

type counters struct {
	rtt                                                    atomic.Int64           // the last round trip, nanoseconds
	network                                                atomic.Pointer[string] // Config.Network, or SetNetwork's
	connects, reconnects, resumed, gaps, kicks, hbTimeouts atomic.Uint64
	pushes, dups, unhandled, acks                          atomic.Uint64
	reqSent, reqRetried, reqFailed                         atomic.Uint64
	refreshes, refreshFails                                atomic.Uint64
	lastSeq                                                atomic.Uint32
}

// Client is a connection to the gateway that survives the network: see the
// package documentation. All methods are safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor and the dispatcher
	up     chan struct{}  // closed at the first login
	upOnce sync.Once
	done   chan struct{} // closed by the dispatcher after the last callback

	handlersMu sync.RWMutex
	handlers   map[uint16]func(Push)

	events eventQueue // callbacks, run in order by the dispatcher

	// mu guards the fields below. Lock order: mu before a session's locks.
	mu       sync.Mutex
	state    State
	sess     *session         // the logged-in connection; nil while there is none
	inflight map[uint32]*call // requests sent on sess, by seq
	queue    []*call          // requests waiting for a connection, in order
	err      error            // why the client stopped; nil while it runs
	lastErr  error            // why the last attempt or connection failed

	// pushMu guards dedup. Only the reader of the current session and the
	// supervisor (between sessions) touch it.
	pushMu sync.Mutex
	dedup  *dedup

	everUp bool          // a login succeeded before; later ones send resume. Supervisor only.
	reqSeq atomic.Uint32 // last REQUEST seq used
	stats  counters
}

// Dial starts a client and returns once it is connected and logged in. It
// keeps trying (with backoff) until ctx ends; it fails at once on a terminal
// error such as UNAUTHORIZED. ctx bounds only this first connection: the
// client lives until Close or a terminal KICK, reconnecting as needed.
// When Dial fails, the callbacks may have run already; the last one was
// OnState(StateClosed).
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		up:       make(chan struct{}),
		done:     make(chan struct{}),
		handlers: make(map[uint16]func(Push), len(cfg.Handlers)),
		inflight: make(map[uint32]*call),
		dedup:    newDedup(cfg.DedupWindow),
	}
	for biz, h := range cfg.Handlers {
		if h != nil {
			c.handlers[biz] = h
		}
	}
	c.SetNetwork(cfg.Network)
	c.events.init()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(2)
	go c.run()
	go c.dispatch()

	select {
	case <-c.up:
		return c, nil
	case <-c.done:
		err := c.Err()
		c.Close()
		return nil, err
	case <-ctx.Done():
		select {
		case <-c.up:
			return c, nil
		default:
		}
		c.mu.Lock()
		last := c.lastErr
		c.mu.Unlock()
		c.Close()
		if last != nil {
			return nil, fmt.Errorf("client: dial: %w (last error: %w)", ctx.Err(), last)
		}
		return nil, fmt.Errorf("client: dial: %w", ctx.Err())
	}
}

// Handle sets the handler of pushes for business biz (nil removes it).
// Handlers, OnState and OnGap all run on one goroutine, one at a time, in
// the order of events: a handler must not block for long, and must not call
// Close (call it from another goroutine).
func (c *Client) Handle(biz uint16, h func(Push)) {
	c.handlersMu.Lock()
	defer c.handlersMu.Unlock()
	if h == nil {
		delete(c.handlers, biz)
		return
	}
	c.handlers[biz] = h
}

// Close stops the client: the connection is closed, waiting and in-flight
// requests fail with ErrClosed, pushes already received are handed to their
// handlers, OnState(StateClosed) is the last callback, and every goroutine
// of the client has exited when Close returns. Calling it again is a no-op.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// Done is closed when the client has stopped for good (see StateClosed),
// after the last callback, OnState(StateClosed), has returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped (ErrClosed, *KickError, *LoginError), or
// nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// State is the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// SetNetwork changes the network kind reported with each PING
// (Config.Network), for a device that moved from one network to another.
func (c *Client) SetNetwork(net string) { c.stats.network.Store(&net) }

// qualityMeta is a PING's meta: the last round trip in milliseconds as
// "rtt", and the network kind as "net" when known; nil before the first
// round trip.
func (c *Client) qualityMeta() []byte {
	rtt := c.stats.rtt.Load()
	if rtt <= 0 {
		return nil
	}
	meta := codec.AppendMetaString(nil, "rtt", strconv.FormatInt(max(1, rtt/int64(time.Millisecond)), 10))
	if n := c.stats.network.Load(); n != nil && *n != "" {
		meta = codec.AppendMetaString(meta, "net", *n)
	}
	return meta
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	st := Stats{
		Connects:          c.stats.connects.Load(),
		Reconnects:        c.stats.reconnects.Load(),
		Resumed:           c.stats.resumed.Load(),
		Gaps:              c.stats.gaps.Load(),
		Kicks:             c.stats.kicks.Load(),
		HeartbeatTimeouts: c.stats.hbTimeouts.Load(),
		PushesReceived:    c.stats.pushes.Load(),
		DroppedDuplicates: c.stats.dups.Load(),
		Unhandled:         c.stats.unhandled.Load(),
		AcksSent:          c.stats.acks.Load(),
		LastSeq:           c.stats.lastSeq.Load(),
		RTT:               time.Duration(c.stats.rtt.Load()),
		Refreshes:         c.stats.refreshes.Load(),
		RefreshFailures:   c.stats.refreshFails.Load(),
		RequestsSent:      c.stats.reqSent.Load(),
		RequestsRetried:   c.stats.reqRetried.Load(),
		RequestsFailed:    c.stats.reqFailed.Load(),
	}
	c.mu.Lock()
	st.State = c.state
	if c.sess != nil {
		st.Node, st.Conn = c.sess.node, c.sess.conn
	}
	st.Queued = len(c.queue)
	st.InFlight = len(c.inflight)
	c.mu.Unlock()
	return st
}

// run is the supervisor: it connects, serves the connection until it ends,
// and decides what comes next, until the client stops.
func (c *Client) run() {
	defer c.wg.Done()
	var (
		attempt   int       // consecutive failures, for the backoff
		idx       int       // next endpoint in Config.Endpoints
		redirect  *Endpoint // a KICK's redirect, tried first
		immediate bool      // the last reconnect skipped the backoff
	)
	for {
		if c.ctx.Err() != nil {
			c.finish(ErrClosed)
			return
		}
		ep := c.cfg.Endpoints[idx%len(c.cfg.Endpoints)]
		if redirect != nil {
			ep, redirect = *redirect, nil
		}
		c.setState(StateConnecting, nil)
		var reason error
		s, err := c.connect(ep)
		if err != nil {
			reason = err
			// A failed attempt moves on to the next endpoint; a lost
			// connection tries the same one again first.
			idx++
			c.log.Warn("longlink: connect failed", "endpoint", ep.String(), "err", err)
		} else {
			reason = c.serve(s)
			immediate = false
			if s.healthy.Load() {
				attempt = 0
			}
			c.log.Info("longlink: disconnected", "endpoint", ep.String(), "err", reason)
		}
		if c.ctx.Err() != nil {
			c.finish(ErrClosed)
			return
		}
		if terminal(reason) {
			c.finish(reason)
			return
		}
		c.setState(StateDisconnected, reason)
		if ke, ok := errors.AsType[*KickError](reason); ok {
			if ke.Redirect != "" {
				r := parseRedirect(ke.Redirect, ep)
				redirect = &r
			}
			// The node is draining, not failing: go elsewhere at once,
			// unless the last immediate attempt already failed to log in
			// (then back off, so that draining nodes cannot make the
			// client spin).
			if ke.Status == codec.StatusShuttingDown && !immediate {
				if redirect == nil && err == nil {
					idx++
				}
				immediate = true
				continue
			}
		}
		if !c.sleep(c.cfg.Backoff.Delay(attempt)) {
			c.finish(ErrClosed)
			return
		}
		attempt++
	}
}

// parseRedirect reads a KICK's redirect: "proto://host:port" or
// "host:port" (the current endpoint's proto).
func parseRedirect(r string, cur Endpoint) Endpoint {
	if proto, addr, ok := strings.Cut(r, "://"); ok {
		return Endpoint{Proto: proto, Addr: addr}
	}
	return Endpoint{Proto: cur.Proto, Addr: r}
}

// sleep waits d, or until Close; it reports false on Close.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// connect makes one attempt: token, dial, LOGIN, LOGIN_ACK.
func (c *Client) connect(ep Endpoint) (*session, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	defer cancel()
	token, err := c.cfg.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: token: %w", err)
	}
	nc, err := c.cfg.Dialer(ctx, ep)
	if err != nil {
		return nil, fmt.Errorf("client: dial %v: %w", ep, err)
	}
	// Close and the attempt's timeout interrupt the login by closing nc.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	s := newSession(c, nc, ep)
	c.pushMu.Lock()
	resume, last := c.everUp, c.dedup.last
	c.pushMu.Unlock()
	err = s.login(token, resume, last)
	if !stop() {
		nc.Close()
		return nil, fmt.Errorf("client: login %v: %w", ep, ctx.Err())
	}
	if err != nil {
		nc.Close()
		switch err.(type) {
		case *LoginError, *KickError, *ProtocolError:
			return nil, err
		}
		return nil, fmt.Errorf("client: login %v: %w", ep, err)
	}
	return s, nil
}

// serve publishes a logged-in session, runs it until it ends and cleans up
// after it. It returns why the session ended.
func (c *Client) serve(s *session) error {
	c.stats.connects.Add(1)
	reconnect := c.everUp
	c.everUp = true

	c.mu.Lock()
	// Requests that waited for a connection go out first, in order.
	for _, cl := range c.queue {
		cl.seq = c.nextSeq()
		c.inflight[cl.seq] = cl
		s.initial = append(s.initial, cl.frame(cl.seq))
	}
	c.stats.reqSent.Add(uint64(len(c.queue)))
	clear(c.queue)
	c.queue = c.queue[:0]
	c.sess = s
	c.state = StateConnected
	c.mu.Unlock()
	c.log.Info("longlink: connected", "endpoint", s.ep.String(), "node", s.node, "conn", s.conn, "hb", s.hb, "resumed", s.resumed)
	c.events.push(event{kind: evState, state: StateConnected})

	switch s.resumed {
	case "1":
		c.stats.resumed.Add(1)
	case "0":
		c.stats.gaps.Add(1)
		c.pushMu.Lock()
		c.dedup.gap()
		last := c.dedup.last
		c.pushMu.Unlock()
		c.events.push(event{kind: evGap, seq: last})
	}
	// Counted after resumed and gaps: whoever sees the reconnect in Stats
	// sees how its login went.
	if reconnect {
		c.stats.reconnects.Add(1)
	}
	c.upOnce.Do(func() { close(c.up) })

	s.start()
	select {
	case <-s.done:
	case <-c.ctx.Done():
		s.fail(ErrClosed)
	}
	s.wg.Wait()
	reason := s.reason

	// In-flight requests: idempotent ones wait for the next connection
	// (ahead of newer ones), the others fail. On a terminal end, finish
	// fails them all with the terminal error.
	c.mu.Lock()
	c.sess = nil
	var (
		retry  []*call
		failed []*call
	)
	for _, cl := range c.inflight {
		if cl.idem || terminal(reason) {
			retry = append(retry, cl)
		} else {
			failed = append(failed, cl)
		}
	}
	clear(c.inflight)
	sortCalls(retry)
	c.queue = append(retry, c.queue...)
	c.mu.Unlock()
	if !terminal(reason) {
		c.stats.reqRetried.Add(uint64(len(retry)))
	}
	derr := fmt.Errorf("%w: %w", ErrDisconnected, reason)
	for _, cl := range failed {
		c.stats.reqFailed.Add(1)
		cl.complete(nil, derr)
	}
	return reason
}

// setState records a state and tells OnState. Only the supervisor calls it.
func (c *Client) setState(st State, err error) {
	c.mu.Lock()
	c.state = st
	if err != nil {
		c.lastErr = err
	}
	c.mu.Unlock()
	c.events.push(event{kind: evState, state: st, err: err})
}

// finish stops the client for good with err: every request waiting or in
// flight fails with it, and OnState(StateClosed) is queued as the last
// callback.
func (c *Client) finish(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	err = c.err
	calls := c.queue
	c.queue = nil
	for _, cl := range c.inflight {
		calls = append(calls, cl)
	}
	clear(c.inflight)
	c.sess = nil
	c.state = StateClosed
	c.mu.Unlock()
	for _, cl := range calls {
		c.stats.reqFailed.Add(1)
		cl.complete(nil, err)
	}
	if errors.Is(err, ErrClosed) {
		c.log.Info("longlink: closed")
	} else {
		c.log.Error("longlink: stopped", "err", err)
	}
	c.events.push(event{kind: evState, state: StateClosed, err: err}) // the dispatcher then closes done
}

// onPush takes a PUSH from the reader: acknowledge, deduplicate, queue for
// the handler.
func (c *Client) onPush(s *session, f *codec.Frame) {
	var id []byte
	if v, ok := f.Meta.Get("id"); ok {
		id = v
	}
	c.pushMu.Lock()
	ok := c.dedup.accept(f.Seq, string(id))
	c.stats.lastSeq.Store(c.dedup.last)
	c.pushMu.Unlock()
	if f.Flags&codec.FlagAckRequired != 0 && s.acks.add(f.Seq, time.Now()) {
		select {
		case s.ackWake <- struct{}{}:
		default:
		}
	}
	if !ok {
		c.stats.dups.Add(1)
		c.log.Debug("longlink: duplicate push dropped", "seq", f.Seq, "id", string(id))
		return
	}
	c.stats.pushes.Add(1)
	p := Push{Biz: f.Biz, Seq: f.Seq, ID: string(id), Body: append([]byte(nil), f.Body...)}
	if len(f.Meta) > 0 {
		p.Meta = make(map[string]string, 2)
		f.Meta.Range(func(k, v []byte) bool {
			p.Meta[string(k)] = string(v)
			return true
		})
		p.Group = p.Meta["group"]
	}
	c.events.push(event{kind: evPush, push: p})
}

// dispatch runs the callbacks, one at a time and in order, until the
// client is closed.
func (c *Client) dispatch() {
	defer c.wg.Done()
	var batch []event
	for {
		batch = c.events.wait(batch[:0])
		for i := range batch {
			ev := &batch[i]
			switch ev.kind {
			case evPush:
				c.handlersMu.RLock()
				h := c.handlers[ev.push.Biz]
				c.handlersMu.RUnlock()
				if h == nil {
					c.stats.unhandled.Add(1)
					c.log.Debug("longlink: push without a handler", "biz", ev.push.Biz, "seq", ev.push.Seq)
					continue
				}
				h(ev.push)
			case evGap:
				if c.cfg.OnGap != nil {
					c.cfg.OnGap(ev.seq)
				}
			case evState:
				if c.cfg.OnState != nil {
					c.cfg.OnState(ev.state, ev.err)
				}
				if ev.state == StateClosed {
					close(c.done)
					return
				}
			}
		}
		clear(batch)
	}
}

const (
	evPush = iota
	evGap
	evState
)

type event struct {
	kind  uint8
	state State
	err   error
	seq   uint32 // evGap: the last seq before the gap
	push  Push
}

// eventQueue is an unbounded FIFO between the reader (and supervisor) and
// the dispatcher, so a slow handler never stalls reading the connection
// (and with it PONGs and RESPONSEs).
type eventQueue struct {
	mu   sync.Mutex
	q    []event
	wake chan struct{}
}

func (q *eventQueue) init() { q.wake = make(chan struct{}, 1) }

func (q *eventQueue) push(ev event) {
	q.mu.Lock()
	q.q = append(q.q, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// wait blocks until events are queued and moves them into buf.
func (q *eventQueue) wait(buf []event) []event {
	for {
		q.mu.Lock()
		if len(q.q) > 0 {
			buf = append(buf, q.q...)
			clear(q.q)
			q.q = q.q[:0]
			q.mu.Unlock()
			return buf
		}
		q.mu.Unlock()
		<-q.wake
	}
}
