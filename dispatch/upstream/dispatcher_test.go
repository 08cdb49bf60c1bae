package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/internal/gatewaytest"
)

func TestNewRejectsBadConfig(t *testing.T) {
	c := newCollector(nil)
	for _, tc := range []struct {
		name string
		bizs []Business
		opts Options
		r    Replier
	}{
		{"biz 0", []Business{{ID: 0, Echo: true}}, Options{}, c},
		{"duplicate", []Business{{ID: 1, Echo: true}, {ID: 1, Echo: true}}, Options{}, c},
		{"no url", []Business{{ID: 1}}, Options{}, c},
		{"echo and url", []Business{{ID: 1, Echo: true, URL: "http://127.0.0.1:1"}}, Options{}, c},
		{"relative url", []Business{{ID: 1, URL: "/rpc"}}, Options{}, c},
		{"bad scheme", []Business{{ID: 1, URL: "ftp://127.0.0.1/rpc"}}, Options{}, c},
		{"unparsable url", []Business{{ID: 1, URL: "http://[::1"}}, Options{}, c},
		{"negative workers", []Business{{ID: 1, URL: "http://127.0.0.1:1", Workers: -1}}, Options{}, c},
		{"echo with workers", []Business{{ID: 1, Echo: true, Workers: 2}}, Options{}, c},
		{"echo with a queue", []Business{{ID: 1, Echo: true, Queue: 2}}, Options{}, c},
		{"echo with a timeout", []Business{{ID: 1, Echo: true, Timeout: time.Second}}, Options{}, c},
		{"negative max body", []Business{{ID: 1, Echo: true}}, Options{MaxBody: -1}, c},
	} {
		if d, err := newDispatcher(tc.bizs, tc.r, tc.opts); err == nil {
			_ = d.Close(context.Background())
			t.Errorf("%s: New succeeded", tc.name)
		} else if !strings.HasPrefix(err.Error(), "upstream: ") {
			t.Errorf("%s: error %q lacks the package prefix", tc.name, err)
		}
	}
}

// A request carries its Replier: one without is refused at Submit, and
// nothing is answered.
func TestSubmitWithoutReply(t *testing.T) {
	d, c := start(t, []Business{{ID: 1, Echo: true}}, Options{})
	req := Get()
	req.Biz, req.Seq = 1, 1
	if s := d.Submit(req); s != codec.StatusInternal {
		t.Fatalf("Submit without Reply = %v, want INTERNAL", s)
	}
	Release(req)
	if n := c.callCount(1, 1); n != 0 {
		t.Fatalf("a request without Reply was answered %d times", n)
	}
}

func TestEchoAndUnknownBiz(t *testing.T) {
	d, c := start(t, []Business{{ID: 1, Echo: true}}, Options{})
	if !d.Has(1) || d.Has(2) {
		t.Fatalf("Has(1)=%v Has(2)=%v", d.Has(1), d.Has(2))
	}
	if s := submit(d, 2, 1, nil, nil); s != codec.StatusUnknownBiz {
		t.Fatalf("unknown biz: %v", s)
	}
	mustSubmit(t, d, 1, 9, encodeMeta("Key", "Value"), []byte("hello"))
	if n := c.callCount(1, 9); n != 1 {
		t.Fatalf("echo answered %d times when Submit returned, want once, inside Submit", n)
	}
	a := c.wait(t, 1, time.Second)
	if a.status != codec.StatusOK || a.seq != 9 || string(a.body) != "hello" || a.meta["Key"] != "Value" {
		t.Fatalf("echo answer %+v", a)
	}
}

// The echo business has no forwarding goroutines and no queue: no burst
// of requests makes it answer OVERLOADED.
func TestEchoHasNoWorkersAndNoQueue(t *testing.T) {
	before := runtime.NumGoroutine()
	bizs := []Business{{ID: 1, Echo: true}}
	d, err := newDispatcher(bizs, newCollector(bizs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	if now := runtime.NumGoroutine(); now != before {
		t.Fatalf("%d goroutines after New, %d before: echo started workers", now, before)
	}
	for seq := range uint32(2 * DefaultQueue) {
		if s := submit(d, 1, seq, nil, nil); s != codec.StatusOK {
			t.Fatalf("request %d: %v", seq, s)
		}
	}
	if s := statsOf(t, d, 1); s.Results["OK"] != 2*DefaultQueue || s.InFlight != 0 || s.Queued != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestQueueFullIsOverloaded(t *testing.T) {
	b, srv := newBlocker(t)
	d, c := start(t, []Business{{ID: 1, URL: srv.URL, Workers: 1, Queue: 2, Timeout: 5 * time.Second}}, Options{})
	mustSubmit(t, d, 1, 1, nil, nil)
	b.waitEntered(t) // the worker is busy
	mustSubmit(t, d, 1, 2, nil, nil)
	mustSubmit(t, d, 1, 3, nil, nil)
	// Submit answers at once: it returned, with the worker still held.
	if s := submit(d, 1, 4, nil, nil); s != codec.StatusOverloaded {
		t.Fatalf("Submit on a full queue = %v, want OVERLOADED", s)
	}
	s := statsOf(t, d, 1)
	if s.Queued != 2 || s.InFlight != 1 || s.Requests != 4 || s.Results["OVERLOADED"] != 1 {
		t.Fatalf("stats %+v", s)
	}
	b.open()
	for range 3 {
		if a := c.wait(t, 1, 2*time.Second); a.status != codec.StatusOK || string(a.body) != "released" {
			t.Fatalf("answer %v %q", a.status, a.body)
		}
	}
	if c.callCount(1, 4) != 0 {
		t.Fatal("a request refused with OVERLOADED was answered")
	}
}

func TestCloseDrainsQueued(t *testing.T) {
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Millisecond) // a slow backend: requests wait in the queue
		_, _ = w.Write([]byte("done"))
	})
	d, c := start(t, []Business{{ID: 1, URL: srv.URL, Workers: 1, Queue: 8}}, Options{})
	for seq := uint32(1); seq <= 4; seq++ {
		mustSubmit(t, d, 1, seq, nil, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range 4 { // Close returned after every answer
		select {
		case a := <-c.chans[1]:
			if a.status != codec.StatusOK {
				t.Fatalf("seq %d: %v, want OK", a.seq, a.status)
			}
		default:
			t.Fatal("Close returned before every queued request was answered")
		}
	}
	if s := submit(d, 1, 5, nil, nil); s != codec.StatusShuttingDown {
		t.Fatalf("Submit after Close = %v, want SHUTTING_DOWN", s)
	}
	if err := d.Close(ctx); !errors.Is(err, errClosed) {
		t.Fatalf("second Close = %v, want errClosed", err)
	}
}

func TestCloseDeadlineAnswersTheRest(t *testing.T) {
	b, srv := newBlocker(t)
	d, c := start(t, []Business{
		{ID: 1, URL: srv.URL, Workers: 1, Queue: 8, Timeout: 10 * time.Second},
		{ID: 2, Echo: true},
	}, Options{})
	for seq := uint32(1); seq <= 3; seq++ {
		mustSubmit(t, d, 1, seq, nil, nil)
	}
	b.waitEntered(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := d.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(t0); el > 400*time.Millisecond {
		t.Fatalf("Close took %v with a 100ms context", el)
	}
	for seq := uint32(1); seq <= 3; seq++ {
		a := c.wait(t, 1, 100*time.Millisecond)
		if a.status != codec.StatusShuttingDown {
			t.Fatalf("seq %d: %v, want SHUTTING_DOWN", a.seq, a.status)
		}
		if n := c.callCount(1, a.seq); n != 1 {
			t.Fatalf("seq %d answered %d times", a.seq, n)
		}
	}
	if s := statsOf(t, d, 1); s.Breaker != "closed" {
		t.Fatalf("breaker %s: shutdown counted as a failure", s.Breaker)
	}
}

func TestSubmitRacingClose(t *testing.T) {
	bizs := []Business{{ID: 1, Echo: true}}
	c := newCollector(bizs)
	d, err := newDispatcher(bizs, c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var accepted [4][]uint32
	var wg, started sync.WaitGroup
	var shut atomic.Int32 // submitters that met the close
	started.Add(len(accepted))
	for g := range accepted {
		wg.Go(func() {
			for i := range 100_000 {
				seq := uint32(g<<24 | i)
				s := submit(d, 1, seq, nil, nil)
				if i == 0 {
					started.Done()
				}
				switch s {
				case codec.StatusOK:
					accepted[g] = append(accepted[g], seq)
				case codec.StatusOverloaded:
				case codec.StatusShuttingDown:
					shut.Add(1)
					return
				default:
					t.Errorf("Submit = %v", s)
					return
				}
			}
		})
	}
	started.Wait() // every submitter is running: Close races them
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	if shut.Load() == 0 {
		t.Fatal("every submitter finished before Close: nothing raced it")
	}
	for g := range accepted {
		for _, seq := range accepted[g] {
			if n := c.callCount(1, seq); n != 1 {
				t.Fatalf("seq %#x accepted, answered %d times", seq, n)
			}
		}
	}
}

func TestRespondExactlyOnce(t *testing.T) {
	var n atomic.Int32
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			http.Error(w, "no", http.StatusBadRequest)
		case 1:
			time.Sleep(5 * time.Millisecond) // a slow answer among fast ones and errors
		}
	})
	bizs := []Business{
		{ID: 1, URL: srv.URL, Workers: 4, Queue: 16},
		{ID: 2, Echo: true},
	}
	d, c := start(t, bizs, Options{})
	const submitters, each = 8, 100
	var accepted [3]sync.Map // biz -> seq set
	var wg sync.WaitGroup
	for g := range submitters {
		wg.Go(func() {
			for i := range each {
				biz := uint16(1 + i%2)
				seq := uint32(g*each + i)
				switch s := submit(d, biz, seq, nil, []byte("x")); s {
				case codec.StatusOK:
					accepted[biz].Store(seq, true)
				case codec.StatusOverloaded:
				default:
					t.Errorf("Submit = %v", s)
				}
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	total := 0
	for biz := uint16(1); biz <= 2; biz++ {
		for seq := range uint32(submitters * each) {
			_, ok := accepted[biz].Load(seq)
			want := 0
			if ok {
				want = 1
				total++
			}
			if got := c.callCount(biz, seq); got != want {
				t.Fatalf("biz %d seq %d: Respond called %d times, want %d", biz, seq, got, want)
			}
		}
	}
	if total == 0 {
		t.Fatal("nothing was accepted")
	}
	t.Logf("%d of %d requests accepted, each answered once", total, submitters*each)
}

func TestNoGoroutineLeakAfterClose(t *testing.T) {
	b, slow := newBlocker(t)
	fast := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	before := runtime.NumGoroutine() // the servers' own goroutines included
	c := newCollector([]Business{{ID: 1}, {ID: 2}, {ID: 3}})
	d, err := newDispatcher([]Business{
		{ID: 1, URL: fast.URL, Workers: 8},
		{ID: 2, URL: slow.URL, Workers: 8, Timeout: 5 * time.Second},
		{ID: 3, Echo: true},
	}, c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint32(1); seq <= 20; seq++ {
		mustSubmit(t, d, 1, seq, nil, []byte("x"))
		mustSubmit(t, d, 3, seq, nil, nil)
	}
	mustSubmit(t, d, 2, 1, nil, nil)
	b.waitEntered(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = d.Close(ctx) // cuts the slow call short
	// Workers, the client's connections and the servers' handlers for them
	// must all be gone, with the servers still running.
	checkFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		if now := runtime.NumGoroutine(); now > before {
			return fmt.Errorf("%d goroutines after Close, %d before New", now, before)
		}
		return nil
	})
}

// logBuffer captures the default logger for the length of a test.
func logBuffer(t *testing.T) *gatewaytest.LogBuffer {
	var buf gatewaytest.LogBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return &buf
}

func TestPanicsAreRecovered(t *testing.T) {
	logs := logBuffer(t)
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	bizs := []Business{{ID: 1, URL: srv.URL, Workers: 1}, {ID: 2, Echo: true}}
	c := newCollector(bizs)
	c.panicOn = 2
	d, err := newDispatcher(bizs, c, Options{FailureThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })

	// Meta that runs past its end makes codec.Meta.Range panic while the
	// headers are built: answered INTERNAL, not counted by the breaker.
	mustSubmit(t, d, 1, 1, []byte{5, 'a'}, nil)
	if a := c.wait(t, 1, time.Second); a.status != codec.StatusInternal {
		t.Fatalf("malformed meta: %v, want INTERNAL", a.status)
	}
	// The Replier panics on seq 2: logged, not answered again.
	mustSubmit(t, d, 2, 2, nil, nil)
	c.wait(t, 2, time.Second)
	// Each single worker carries on.
	mustSubmit(t, d, 1, 3, nil, nil)
	mustSubmit(t, d, 2, 3, nil, nil)
	if a := c.wait(t, 1, time.Second); a.status != codec.StatusOK {
		t.Fatalf("after a panic, biz 1: %v", a.status)
	}
	if a := c.wait(t, 2, time.Second); a.status != codec.StatusOK {
		t.Fatalf("after a panic, biz 2: %v", a.status)
	}
	if n := c.callCount(2, 2); n != 1 {
		t.Fatalf("panicking Respond called %d times, want 1", n)
	}
	if s := statsOf(t, d, 1); s.Breaker != "closed" {
		t.Fatalf("breaker %s after a gateway panic", s.Breaker)
	}
	out := logs.String()
	for _, want := range []string{"panic while serving a request", "Replier panicked"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestStats(t *testing.T) {
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	d, c := start(t, []Business{{ID: 7, URL: srv.URL}, {ID: 2, Echo: true}}, Options{})
	for seq := uint32(1); seq <= 3; seq++ {
		mustSubmit(t, d, 7, seq, nil, nil)
		c.wait(t, 7, time.Second)
	}
	mustSubmit(t, d, 2, 1, nil, nil)
	c.wait(t, 2, time.Second)
	st := d.Stats()
	if len(st) != 2 || st[0].ID != 2 || st[1].ID != 7 {
		t.Fatalf("stats not one per business in ID order: %+v", st)
	}
	if st[0].Target != "echo" || st[1].Target != srv.URL {
		t.Fatalf("targets %q %q", st[0].Target, st[1].Target)
	}
	s := st[1]
	if s.Requests != 3 || s.Results["OK"] != 3 || len(s.Results) != 1 || s.Queued != 0 || s.InFlight != 0 ||
		s.Breaker != "closed" || s.LatencyCount != 3 || s.LatencySeconds <= 0 {
		t.Fatalf("stats %+v", s)
	}
}
