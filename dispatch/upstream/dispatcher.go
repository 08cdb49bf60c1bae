package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/metrics"
	"github.com/valyala/bytebufferpool"
)

// Options configures a Dispatcher. Zero fields take the defaults below.
type Options struct {
	// Node is this node's id, sent to businesses as X-Longlink-Node.
	Node string
	// Client sends the HTTP requests. Nil means a client owned by the
	// dispatcher: keep-alive, MaxIdleConnsPerHost sized for the workers
	// that share a host, no proxy, redirects not followed (a 3xx is
	// BIZ_ERROR), idle connections closed by Close.
	Client *http.Client
	// MaxBody is the largest answer accepted from a business, in bytes:
	// its body plus the encoded meta. Zero means DefaultMaxBody, so that
	// the RESPONSE fits a frame of codec.DefaultMaxFrame. A bigger answer
	// is BIZ_ERROR "response too large"; it is read with this limit, never
	// unbounded.
	MaxBody int
	// FailureThreshold is the number of consecutive failures that opens a
	// business's circuit. Zero means DefaultFailureThreshold.
	FailureThreshold int
	// OpenTimeout is how long an open circuit answers BIZ_UNAVAILABLE
	// before it lets one probe through. Zero means DefaultOpenTimeout.
	OpenTimeout time.Duration
}

// Defaults of Options.
const (
	DefaultMaxBody          = codec.DefaultMaxFrame - codec.HeaderSize
	DefaultFailureThreshold = 5
	DefaultOpenTimeout      = 5 * time.Second
)

// Settings of the client New makes when Options.Client is nil.
const (
	clientIdleTimeout    = 30 * time.Second // below common server keep-alive timeouts, so a pooled connection is rarely stale
	clientMaxHeaderBytes = 64 << 10         // bounds an answer's headers as MaxBody bounds its body
	clientKeepAlive      = 30 * time.Second // TCP keep-alive probes on backend connections
)

var errClosed = errors.New("upstream: dispatcher already closed")

// Dispatcher is the set of forwarding groups, one per business. Its
// methods are safe for concurrent use; see the package documentation for
// who calls what.
type Dispatcher struct {
	log       *slog.Logger
	groups    map[uint16]*group // read-only after New
	ordered   []*group          // the same groups, by ID
	client    *http.Client
	ownClient bool     // client was made by New: Close closes its idle connections
	node      []string // X-Longlink-Node value, shared by every request
	maxBody   int

	// epoch is the origin of group.openUntil, so the circuit check reads
	// the monotonic clock without converting wall time.
	epoch time.Time

	closing    atomic.Bool  // Close began: Submit answers SHUTTING_DOWN
	submitting atomic.Int64 // Submit calls past the closing check, not yet returned
	aborted    atomic.Bool  // Close's ctx ended: workers answer SHUTTING_DOWN
	// abortCtx is the root of every forwarded request's context; cancel
	// aborts them all when Close runs out of time.
	abortCtx context.Context
	cancel   context.CancelFunc
	workers  sync.WaitGroup

	bodies bytebufferpool.Pool // answer bodies
	metas  bytebufferpool.Pool // answer meta sections
}

// New builds the forwarding groups of bizs and starts their workers. Each
// answer goes to its request's Reply. It fails on an invalid or duplicate
// business.
func New(bizs []Business, opts Options) (*Dispatcher, error) {
	if opts.MaxBody < 0 || opts.FailureThreshold < 0 || opts.OpenTimeout < 0 {
		return nil, errors.New("upstream: negative MaxBody, FailureThreshold or OpenTimeout")
	}
	if opts.MaxBody == 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.FailureThreshold == 0 {
		opts.FailureThreshold = DefaultFailureThreshold
	}
	if opts.OpenTimeout == 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	d := &Dispatcher{
		log:     slog.Default().With("component", "upstream"),
		groups:  make(map[uint16]*group, len(bizs)),
		client:  opts.Client,
		node:    []string{opts.Node},
		maxBody: opts.MaxBody,
		epoch:   time.Now(),
	}
	for _, b := range bizs {
		if _, dup := d.groups[b.ID]; dup {
			return nil, fmt.Errorf("upstream: business %d configured twice", b.ID)
		}
		g, err := newGroup(d, b, &opts)
		if err != nil {
			return nil, fmt.Errorf("upstream: business %d: %w", b.ID, err)
		}
		d.groups[b.ID] = g
		d.ordered = append(d.ordered, g)
	}
	slices.SortFunc(d.ordered, func(a, b *group) int { return int(a.id) - int(b.id) })
	if d.client == nil {
		d.client = newClient(d.ordered)
		d.ownClient = true
	}
	d.abortCtx, d.cancel = context.WithCancel(context.Background())
	for _, g := range d.ordered {
		g.start()
	}
	return d, nil
}

// newClient makes the dispatcher's own HTTP client, its idle pool sized so
// every worker can keep a connection to its backend.
func newClient(groups []*group) *http.Client {
	perHost := make(map[string]int)
	total, maxPerHost := 0, 0
	var dialTimeout time.Duration
	for _, g := range groups {
		if g.echo {
			continue
		}
		total += g.workers
		perHost[g.url.Host] += g.workers
		maxPerHost = max(maxPerHost, perHost[g.url.Host])
		dialTimeout = max(dialTimeout, g.timeout)
	}
	return &http.Client{
		Transport: &http.Transport{
			// No Proxy: backends are internal, and a proxy meant for the
			// host's outbound traffic must not capture them.
			DialContext:            (&net.Dialer{Timeout: dialTimeout, KeepAlive: clientKeepAlive}).DialContext,
			MaxIdleConns:           total,
			MaxIdleConnsPerHost:    maxPerHost,
			IdleConnTimeout:        clientIdleTimeout,
			MaxResponseHeaderBytes: clientMaxHeaderBytes,
		},
		// A business answers at its URL; a redirect is an answer (BIZ_ERROR),
		// not an invitation to send the request's body elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Submit hands req to its business's forwarding group. It never blocks.
// It returns codec.StatusOK when the request was queued: req.Reply will be
// called exactly once later (for the echo business, before Submit
// returns, on the caller's goroutine), and the dispatcher recycles req
// afterwards.
// Otherwise the request was not forwarded; the caller answers with the
// returned status (INTERNAL when req has no Reply; UNKNOWN_BIZ; OVERLOADED
// when the queue is full; BIZ_UNAVAILABLE when the circuit is open;
// SHUTTING_DOWN after Close began) and hands req back with Release.
func (d *Dispatcher) Submit(req *Request) codec.Status {
	if req.Reply == nil {
		return codec.StatusInternal // nobody to answer
	}
	g := d.groups[req.Biz]
	if g == nil {
		return codec.StatusUnknownBiz
	}
	g.requests.Add(1)
	// Close waits for submitting to reach zero after setting closing, so a
	// Submit that saw closing unset finishes its send before the queue is
	// closed (both are sequentially consistent atomics).
	d.submitting.Add(1)
	defer d.submitting.Add(-1)
	if d.closing.Load() {
		return g.reject(codec.StatusShuttingDown)
	}
	now := time.Now()
	if until := g.openUntil.Load(); until != 0 && int64(now.Sub(d.epoch)) < until {
		return g.reject(codec.StatusBizUnavailable)
	}
	req.Enqueued = now
	if g.echo {
		g.echoNow(req)
		return codec.StatusOK
	}
	select {
	case g.queue <- req:
		// req may already be answered and recycled: do not touch it.
		return codec.StatusOK
	default:
		return g.reject(codec.StatusOverloaded)
	}
}

// Has reports whether biz is a configured business.
func (d *Dispatcher) Has(biz uint16) bool {
	_, ok := d.groups[biz]
	return ok
}

// MetaSkipped is the number of request meta entries, over all businesses,
// left out of the HTTP request because their key is not an HTTP token or
// their value holds control characters, and of answer meta headers left
// out because they do not fit a meta entry.
func (d *Dispatcher) MetaSkipped() uint64 {
	var n uint64
	for _, g := range d.ordered {
		n += g.metaSkipped.Load()
	}
	return n
}

// Stats returns one BizStats per business, in ID order. Results has an
// entry for each status answered at least once, including the rejections
// of Submit (OVERLOADED, BIZ_UNAVAILABLE, SHUTTING_DOWN); Requests counts
// every Submit for the business.
func (d *Dispatcher) Stats() []metrics.BizStats {
	out := make([]metrics.BizStats, len(d.ordered))
	for i, g := range d.ordered {
		out[i] = g.stats()
	}
	return out
}

// Close stops accepting requests (Submit answers SHUTTING_DOWN), lets the
// queued and in-flight ones finish until ctx ends, then cancels those
// still in flight and answers them and whatever is still queued with
// SHUTTING_DOWN; every submitted request gets its Reply either way. It
// returns when every worker has stopped: nil if all was drained, ctx's
// error if the drain was cut short. It may be called once; later calls
// return an error at once.
func (d *Dispatcher) Close(ctx context.Context) error {
	if d.closing.Swap(true) {
		return errClosed
	}
	for d.submitting.Load() != 0 {
		runtime.Gosched() // a Submit in progress needs nanoseconds
	}
	for _, g := range d.ordered {
		if g.queue != nil {
			close(g.queue) // no sender is left: workers drain and exit
		}
	}
	drained := make(chan struct{})
	go func() {
		d.workers.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		select {
		case <-drained: // done just as ctx ended
		default:
			d.aborted.Store(true)
			d.cancel()
			<-drained // cancelled calls return at once; queued requests are answered without forwarding
			err = fmt.Errorf("upstream: close: drain cut short: %w", context.Cause(ctx))
		}
	}
	d.cancel()
	if d.ownClient {
		d.client.CloseIdleConnections()
	}
	return err
}
