package upstream

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/metrics"
)

// answer is a copy of one Reply call.
type answer struct {
	biz    uint16
	seq    uint32
	status codec.Status
	meta   map[string]string
	body   []byte
	at     time.Time
}

type reqKey struct {
	biz uint16
	seq uint32
}

// collector is the Replier of the tests: it copies each answer to its
// business's channel and counts Reply calls per request.
type collector struct {
	chans   map[uint16]chan answer // one per business; read-only after newCollector
	panicOn uint32                 // Reply panics, after recording, for this seq when non-zero
	holdOn  uint32                 // Reply sleeps for hold, before recording, for this seq when non-zero
	hold    time.Duration

	mu    sync.Mutex
	calls map[reqKey]int
}

func newCollector(bizs []Business) *collector {
	c := &collector{chans: make(map[uint16]chan answer), calls: make(map[reqKey]int)}
	for _, b := range bizs {
		c.chans[b.ID] = make(chan answer, 4096) // Reply must not block
	}
	return c
}

func (c *collector) Reply(req *Request, res Result) {
	if c.holdOn != 0 && req.Seq == c.holdOn {
		time.Sleep(c.hold) // keeps the worker busy, as a misbehaving Replier would
	}
	a := answer{
		biz: req.Biz, seq: req.Seq, status: res.Status,
		meta: decodeMeta(res.Meta), body: bytes.Clone(res.Body), at: time.Now(),
	}
	c.mu.Lock()
	c.calls[reqKey{req.Biz, req.Seq}]++
	c.mu.Unlock()
	select {
	case c.chans[req.Biz] <- a:
	default: // Reply must not block; a test that waits never has this many
	}
	if c.panicOn != 0 && req.Seq == c.panicOn {
		panic("collector: asked to panic")
	}
}

func (c *collector) callCount(biz uint16, seq uint32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[reqKey{biz, seq}]
}

// wait returns the next answer of biz, failing the test after timeout.
func (c *collector) wait(t *testing.T, biz uint16, timeout time.Duration) answer {
	t.Helper()
	select {
	case a := <-c.chans[biz]:
		return a
	case <-time.After(timeout):
		t.Fatalf("biz %d: no answer within %v", biz, timeout)
		return answer{}
	}
}

// none fails the test if biz gets an answer within d.
func (c *collector) none(t *testing.T, biz uint16, d time.Duration) {
	t.Helper()
	select {
	case a := <-c.chans[biz]:
		t.Fatalf("biz %d: unexpected answer seq %d %v", biz, a.seq, a.status)
	case <-time.After(d):
	}
}

// replyTo holds the Replier of each test's dispatcher: submit makes it the
// Reply of every request it submits there.
var replyTo sync.Map // *Dispatcher → Replier

// newDispatcher is New, with r the Reply of the requests submit makes.
func newDispatcher(bizs []Business, r Replier, opts Options) (*Dispatcher, error) {
	d, err := New(bizs, opts)
	if err == nil {
		replyTo.Store(d, r)
	}
	return d, err
}

// start builds a dispatcher whose Replier is a collector, and closes it
// when the test ends.
func start(t *testing.T, bizs []Business, opts Options) (*Dispatcher, *collector) {
	t.Helper()
	c := newCollector(bizs)
	d, err := newDispatcher(bizs, c, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil && !errors.Is(err, errClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return d, c
}

// submit fills a pooled Request and submits it, releasing it when Submit
// refuses it.
func submit(d *Dispatcher, biz uint16, seq uint32, meta []byte, body []byte) codec.Status {
	req := Get()
	req.Biz, req.Seq, req.Conn = biz, seq, 7000+uint64(seq)
	req.Device, req.App = "dev-1", "app-1"
	req.Meta = append(req.Meta[:0], meta...)
	req.Body = append(req.Body[:0], body...)
	if r, ok := replyTo.Load(d); ok {
		req.Reply = r.(Replier)
	}
	s := d.Submit(req)
	if s != codec.StatusOK {
		Release(req)
	}
	return s
}

// mustSubmit submits and fails the test unless the request was queued.
func mustSubmit(t *testing.T, d *Dispatcher, biz uint16, seq uint32, meta, body []byte) {
	t.Helper()
	if s := submit(d, biz, seq, meta, body); s != codec.StatusOK {
		t.Fatalf("Submit(biz %d, seq %d) = %v, want OK", biz, seq, s)
	}
}

// encodeMeta encodes key/value pairs as a meta section.
func encodeMeta(kv ...string) []byte {
	var m []byte
	for i := 0; i+1 < len(kv); i += 2 {
		m = codec.AppendMetaString(m, kv[i], kv[i+1])
	}
	return m
}

func decodeMeta(m []byte) map[string]string {
	out := make(map[string]string)
	codec.Meta(m).Range(func(k, v []byte) bool {
		out[string(k)] = string(v)
		return true
	})
	return out
}

// backend starts a real HTTP server on 127.0.0.1 serving h.
func backend(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// blocker is a backend handler that holds each request until released or
// until the client goes away, and reports each arrival on entered.
type blocker struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

// newBlocker returns a blocker released when the test ends, before its
// server is closed (cleanups run last-in first-out).
func newBlocker(t *testing.T) (*blocker, *httptest.Server) {
	b := &blocker{entered: make(chan struct{}, 64), release: make(chan struct{})}
	srv := backend(t, b.ServeHTTP)
	t.Cleanup(b.open)
	return b, srv
}

func (b *blocker) open() { b.once.Do(func() { close(b.release) }) }

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
		_, _ = w.Write([]byte("released"))
	case <-r.Context().Done():
	}
}

func (b *blocker) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-b.entered:
	case <-time.After(2 * time.Second):
		t.Fatal("backend never got the request")
	}
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// checkFor polls f until it returns nil, failing the test with its last
// error after total.
func checkFor(t *testing.T, total, poll time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(poll)
	}
}

// statsOf returns the stats of biz.
func statsOf(t *testing.T, d *Dispatcher, biz uint16) metrics.BizStats {
	t.Helper()
	for _, s := range d.Stats() {
		if s.ID == biz {
			return s
		}
	}
	t.Fatalf("no stats for biz %d", biz)
	return metrics.BizStats{}
}
