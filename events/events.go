// Package events tells a business backend when devices connect and
// disconnect, so it learns a device went away without polling: the
// gateway's -events-url.
//
// Events are batched and POSTed as JSON:
//
//	POST <url>
//	Content-Type: application/json
//	X-Longlink-Node: <node>
//
//	{"events":[{"type":"connect","device":"d1","app":"a","conn":"17","node":"n1","ts":1700000000000},
//	           {"type":"disconnect","device":"d1","conn":"17","node":"n1","reason":"IDLE_TIMEOUT","ts":...}]}
//
// A batch is sent when it reaches MaxBatch events or FlushEvery after its
// first event. A batch the endpoint does not take (no answer, or not 2xx)
// is retried with exponential backoff, in order, before the next one. The
// queue is bounded: while the endpoint is down, events beyond QueueSize
// are dropped and counted (Stats), so a dead endpoint costs a bounded
// amount of memory and never slows a connection.
//
// Concurrency: Connected and Disconnected are safe from any goroutine and
// never block; one goroutine sends.
package events

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/conn"
)

// Event is one connect or disconnect.
type Event struct {
	Type   string `json:"type"` // "connect" or "disconnect"
	Device string `json:"device"`
	App    string `json:"app,omitempty"`
	Conn   string `json:"conn"`
	Node   string `json:"node"`
	// Reason is the KICK status that closed the connection, or "CLOSED"
	// when no KICK did (disconnect only).
	Reason string `json:"reason,omitempty"`
	// Close is why the connection closed (disconnect only): client_closed,
	// read_error, write_error, idle, kicked, slow_consumer or shutdown
	// (conn.CloseReason).
	Close string `json:"close,omitempty"`
	TS    int64  `json:"ts"` // unix milliseconds
}

type batch struct {
	Events []Event `json:"events"`
}

// Options tune a Sink; zero values take the defaults.
type Options struct {
	QueueSize  int           // events waiting; zero means 65536
	MaxBatch   int           // events per POST; zero means 500
	FlushEvery time.Duration // zero means 200ms
	Timeout    time.Duration // per POST; zero means 5s
	MaxBackoff time.Duration // zero means 10s
	Client     *http.Client  // nil: a client with Timeout
	Logger     *slog.Logger
}

// Sink sends events to one URL.
type Sink struct {
	url   string
	node  string
	opts  Options
	queue chan Event
	stop  chan struct{}
	done  chan struct{}

	sent, dropped, failures atomic.Uint64
}

var _ conn.Events = (*Sink)(nil)

// New starts a sink posting to url.
func New(url, node string, opts Options) *Sink {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 65536
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 500
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = 200 * time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: opts.Timeout}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Sink{url: url, node: node, opts: opts, queue: make(chan Event, opts.QueueSize),
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// Connected implements conn.Events.
func (s *Sink) Connected(node string, c *conn.Conn) {
	s.add(Event{Type: "connect", Device: c.Device(), App: c.App(), Conn: strconv.FormatUint(c.ID(), 10), Node: node, TS: time.Now().UnixMilli()})
}

// Disconnected implements conn.Events.
func (s *Sink) Disconnected(node string, c *conn.Conn) {
	why, status := c.CloseReason()
	reason := "CLOSED"
	if status != codec.StatusOK {
		reason = status.String()
	}
	s.add(Event{Type: "disconnect", Device: c.Device(), Conn: strconv.FormatUint(c.ID(), 10), Node: node, Reason: reason, Close: why.String(), TS: time.Now().UnixMilli()})
}

func (s *Sink) add(e Event) {
	select {
	case s.queue <- e:
	default:
		s.dropped.Add(1)
	}
}

// Stats returns events sent, dropped (queue full) and failed POSTs, and
// how many wait now.
func (s *Sink) Stats() (sent, dropped, failures uint64, queued int) {
	return s.sent.Load(), s.dropped.Load(), s.failures.Load(), len(s.queue)
}

// Cap is the queue's capacity.
func (s *Sink) Cap() int { return cap(s.queue) }

// Close sends what is queued, trying until ctx ends, then stops.
func (s *Sink) Close(ctx context.Context) {
	close(s.stop)
	select {
	case <-s.done:
	case <-ctx.Done():
	}
}

func (s *Sink) run() {
	defer close(s.done)
	var pending []Event
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	for {
		select {
		case e := <-s.queue:
			if len(pending) == 0 {
				flush.Reset(s.opts.FlushEvery)
			}
			pending = append(pending, e)
			if len(pending) < s.opts.MaxBatch {
				continue
			}
		case <-flush.C:
		case <-s.stop:
			s.final(pending)
			return
		}
		flush.Stop()
		if !s.deliver(pending) {
			s.final(pending)
			return
		}
		pending = pending[:0]
	}
}

// final sends what is pending and queued at stop, one try per batch.
func (s *Sink) final(pending []Event) {
	for {
		for len(pending) < s.opts.MaxBatch && len(s.queue) > 0 {
			pending = append(pending, <-s.queue)
		}
		if len(pending) == 0 || s.post(pending) != nil {
			return
		}
		pending = pending[:0]
	}
}

// deliver POSTs one batch until it is taken, backing off between tries.
// It returns false when the sink is stopped while the endpoint is down.
func (s *Sink) deliver(evs []Event) bool {
	backoff := 100 * time.Millisecond
	for {
		err := s.post(evs)
		if err == nil {
			return true
		}
		s.opts.Logger.Warn("events: post failed", "url", s.url, "events", len(evs), "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-s.stop:
			return false
		}
		backoff = min(2*backoff, s.opts.MaxBackoff)
	}
}

// post sends one batch once.
func (s *Sink) post(evs []Event) error {
	body, err := sonic.Marshal(batch{Events: evs})
	if err != nil {
		return fmt.Errorf("events: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("events: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Longlink-Node", s.node)
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		s.failures.Add(1)
		return fmt.Errorf("events: post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.failures.Add(1)
		return fmt.Errorf("events: post: status %d", resp.StatusCode)
	}
	s.sent.Add(uint64(len(evs)))
	return nil
}
