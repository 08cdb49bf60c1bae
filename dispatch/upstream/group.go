package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/metrics"
	"github.com/sony/gobreaker/v2"
)

// errNotCounted marks an outcome the circuit breaker must ignore: a call
// cut short by shutdown, or a panic in the gateway's own code. Neither
// says anything about the business, and a half-open probe that ends this
// way must still free the probe slot.
var errNotCounted = errors.New("upstream: outcome not counted")

// group is one business's forwarding group.
type group struct {
	d       *Dispatcher
	id      uint16
	target  string // "echo" or the URL, for logs and stats
	echo    bool
	url     *url.URL // parsed once; shared read-only by every request
	bizVal  []string // X-Longlink-Biz value
	timeout time.Duration
	workers int
	queue   chan *Request // nil for echo

	// cb is nil for echo. Its OnStateChange keeps openUntil current.
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
	// openUntil mirrors an open circuit for Submit without taking the
	// breaker's lock: nanoseconds since d.epoch until which the circuit is
	// open, 0 when it is not. Once it has passed, Submit queues again and
	// the breaker itself (in the worker) moves to half-open and decides.
	openUntil atomic.Int64
	// lastFailure is the latest failure, logged when the circuit opens.
	lastFailure atomic.Pointer[failure]

	requests     atomic.Uint64
	results      [codec.NumStatus]atomic.Uint64
	inFlight     atomic.Int64
	latencyNanos atomic.Uint64 // Submit to Reply, summed
	latencyCount atomic.Uint64
	metaSkipped  atomic.Uint64
}

// failure boxes an error for an atomic.Pointer.
type failure struct{ err error }

func newGroup(d *Dispatcher, b Business, opts *Options) (*group, error) {
	switch {
	case b.ID == 0:
		return nil, errors.New("biz 0 is reserved for the gateway itself")
	case b.Workers < 0 || b.Queue < 0 || b.Timeout < 0:
		return nil, errors.New("negative Workers, Queue or Timeout")
	case b.Echo && b.URL != "":
		return nil, errors.New("both Echo and a URL")
	case b.Echo && (b.Workers != 0 || b.Queue != 0 || b.Timeout != 0):
		return nil, errors.New("echo answers inside Submit: it has no workers, queue or timeout")
	}
	g := &group{d: d, id: b.ID, target: "echo", echo: b.Echo}
	if b.Echo {
		return g, nil
	}
	g.target = b.URL
	g.bizVal = []string{strconv.Itoa(int(b.ID))}
	g.timeout = cmp.Or(b.Timeout, DefaultTimeout)
	g.workers = cmp.Or(b.Workers, DefaultWorkers)
	g.queue = make(chan *Request, cmp.Or(b.Queue, DefaultQueue))
	u, err := url.Parse(b.URL)
	if err != nil {
		return nil, fmt.Errorf("bad URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("URL %q is not an absolute http or https URL", b.URL)
	}
	g.url = u
	threshold := uint32(opts.FailureThreshold)
	g.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        strconv.Itoa(int(b.ID)),
		MaxRequests: 1, // one probe when half-open
		Timeout:     opts.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		IsExcluded:  func(err error) bool { return errors.Is(err, errNotCounted) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			g.stateChanged(from, to, opts.OpenTimeout)
		},
	})
	return g, nil
}

// stateChanged runs under the breaker's lock on every transition.
func (g *group) stateChanged(from, to gobreaker.State, openFor time.Duration) {
	if to != gobreaker.StateOpen {
		g.openUntil.Store(0)
		g.d.log.Info("circuit "+to.String(), "biz", g.id, "target", g.target, "from", from.String())
		return
	}
	g.openUntil.Store(int64(time.Since(g.d.epoch) + openFor))
	var last error
	if f := g.lastFailure.Load(); f != nil {
		last = f.err
	}
	g.d.log.Warn("circuit open", "biz", g.id, "target", g.target, "from", from.String(),
		"open_for", openFor, "last_error", last)
}

// start launches the group's workers (echo has none).
func (g *group) start() {
	for range g.workers {
		// A per-worker parent keeps each request's context registration
		// off a lock shared by all workers.
		w := &worker{g: g}
		w.ctx, w.cancel = context.WithCancel(g.d.abortCtx)
		g.d.workers.Add(1)
		go w.run()
	}
}

// echoNow answers req with itself, on the submitting goroutine. Echo
// cannot be slow, so the isolation a forwarding group buys would only add
// two goroutine handoffs to every request (the reader wakes a worker,
// which wakes the connection's writer): answering here halves the
// latency of a round trip and leaves no queue to overflow. A panicking
// Replier is recovered by answer like any other.
func (g *group) echoNow(req *Request) {
	g.inFlight.Add(1)
	g.answer(req, Result{Status: codec.StatusOK, Meta: req.Meta, Body: req.Body}, true)
}

// reject counts a request Submit answered without queueing it.
func (g *group) reject(s codec.Status) codec.Status {
	g.results[s].Add(1)
	return s
}

// answer ends the request's time in flight, counts res and hands it to
// the request's Replier, then recycles req unless recycle is false
// (something may still read it) or Reply panicked (the Replier may still
// hold it); the garbage collector takes it then.
func (g *group) answer(req *Request, res Result, recycle bool) {
	g.inFlight.Add(-1) // before Reply: a client holding its answer sees it done
	g.results[res.Status].Add(1)
	g.latencyNanos.Add(uint64(time.Since(req.Enqueued)))
	g.latencyCount.Add(1)
	if g.respond(req, res) && recycle {
		put(req)
	}
}

// respond calls the request's Replier, reporting false if it panicked. The
// panic is logged and not repeated: Reply has been called, and calling it
// again to say INTERNAL would break "exactly once".
func (g *group) respond(req *Request, res Result) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			g.d.log.Error("Replier panicked", "biz", g.id, "seq", req.Seq,
				"panic", p, "stack", string(debug.Stack()))
		}
	}()
	req.Reply.Reply(req, res)
	return true
}

func (g *group) stats() metrics.BizStats {
	s := metrics.BizStats{
		ID:             g.id,
		Target:         g.target,
		Requests:       g.requests.Load(),
		Results:        make(map[string]uint64),
		Queued:         int64(len(g.queue)),
		Workers:        g.workers,
		QueueCap:       cap(g.queue),
		InFlight:       g.inFlight.Load(),
		Breaker:        gobreaker.StateClosed.String(),
		LatencySeconds: time.Duration(g.latencyNanos.Load()).Seconds(),
		LatencyCount:   g.latencyCount.Load(),
	}
	for i := range g.results {
		if n := g.results[i].Load(); n != 0 {
			s.Results[codec.Status(i).String()] = n
		}
	}
	if g.cb != nil {
		s.Breaker = g.cb.State().String()
	}
	return s
}

// worker is one goroutine of a forwarding group, with the scratch state it
// reuses from one request to the next.
type worker struct {
	g      *group
	ctx    context.Context // parent of each request's deadline
	cancel context.CancelFunc
	fwd    forwarder
}

func (w *worker) run() {
	defer w.g.d.workers.Done()
	defer w.cancel()
	for req := range w.g.queue {
		w.serve(req)
	}
}

// serve answers one request, through exactly one call of answer. A panic
// in the gateway's own code is recovered here, logged and answered
// INTERNAL (unless the answer had gone out already), and the worker goes
// on.
func (w *worker) serve(req *Request) {
	g := w.g
	g.inFlight.Add(1)
	answered := false
	defer func() {
		if p := recover(); p != nil {
			g.d.log.Error("panic while serving a request", "biz", g.id, "seq", req.Seq,
				"panic", p, "stack", string(debug.Stack()))
			if !answered {
				g.answer(req, Result{Status: codec.StatusInternal}, false)
			}
		}
	}()
	switch {
	case g.d.aborted.Load():
		answered = true
		g.answer(req, Result{Status: codec.StatusShuttingDown}, true)
	default:
		w.forward(req, &answered)
	}
}
