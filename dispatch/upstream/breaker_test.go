package upstream

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// flaky is a backend that fails with 500 while failing is set, and can
// hold one request (the probe) until released.
type flaky struct {
	calls   atomic.Int32
	failing atomic.Bool
	hold    atomic.Bool   // hold the next request until release
	held    chan struct{} // a request is being held
	release chan bool     // answer the held request: true = fail
}

func newFlaky(t *testing.T) (*flaky, string) {
	f := &flaky{held: make(chan struct{}, 1), release: make(chan bool, 1)}
	f.failing.Store(true)
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		fail := f.failing.Load()
		if f.hold.CompareAndSwap(true, false) {
			f.held <- struct{}{}
			select {
			case fail = <-f.release:
			case <-r.Context().Done():
				return
			}
		}
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	})
	return f, srv.URL
}

// tripCircuit sends threshold failing requests, one at a time.
func tripCircuit(t *testing.T, d *Dispatcher, c *collector, threshold int) {
	t.Helper()
	for i := 1; i <= threshold; i++ {
		mustSubmit(t, d, 1, uint32(i), nil, nil)
		if a := c.wait(t, 1, 2*time.Second); a.status != codec.StatusBizError {
			t.Fatalf("failure %d: %v, want BIZ_ERROR", i, a.status)
		}
	}
}

func TestCircuitOpensHalfOpensAndCloses(t *testing.T) {
	const threshold, openFor = 3, 200 * time.Millisecond
	f, url := newFlaky(t)
	d, c := start(t, []Business{{ID: 1, URL: url, Workers: 2}}, Options{FailureThreshold: threshold, OpenTimeout: openFor})

	if s := statsOf(t, d, 1); s.Breaker != "closed" {
		t.Fatalf("breaker %s at start", s.Breaker)
	}
	tripCircuit(t, d, c, threshold)
	opened := time.Now()

	// Open: answered at once by Submit, never queued, never sent.
	for i := range 20 {
		t0 := time.Now()
		if s := submit(d, 1, uint32(100+i), nil, nil); s != codec.StatusBizUnavailable {
			t.Fatalf("Submit with the circuit open = %v, want BIZ_UNAVAILABLE", s)
		}
		if el := time.Since(t0); el > 10*time.Millisecond {
			t.Fatalf("rejection took %v", el)
		}
	}
	c.none(t, 1, 20*time.Millisecond)
	if n := f.calls.Load(); n != threshold {
		t.Fatalf("backend calls = %d with the circuit open, want %d", n, threshold)
	}
	s := statsOf(t, d, 1)
	if s.Breaker != "open" || s.Results["BIZ_UNAVAILABLE"] != 20 || s.Results["BIZ_ERROR"] != threshold {
		t.Fatalf("stats %+v", s)
	}

	// After OpenTimeout one probe goes through; its success closes the circuit.
	f.failing.Store(false)
	var seq uint32 = 200
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		seq++
		if s := submit(d, 1, seq, nil, nil); s != codec.StatusOK {
			return fmt.Errorf("Submit = %v, circuit still open", s)
		}
		return nil
	})
	if el := time.Since(opened); el < openFor-20*time.Millisecond {
		t.Fatalf("circuit let a request through after %v, before OpenTimeout %v", el, openFor)
	}
	if a := c.wait(t, 1, 2*time.Second); a.status != codec.StatusOK {
		t.Fatalf("probe answer %v, want OK", a.status)
	}
	if s := statsOf(t, d, 1); s.Breaker != "closed" {
		t.Fatalf("breaker %s after a successful probe, want closed", s.Breaker)
	}
	mustSubmit(t, d, 1, 300, nil, nil)
	if a := c.wait(t, 1, 2*time.Second); a.status != codec.StatusOK {
		t.Fatalf("after closing: %v", a.status)
	}
}

func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	const threshold, openFor = 2, 150 * time.Millisecond
	f, url := newFlaky(t)
	d, c := start(t, []Business{{ID: 1, URL: url, Workers: 4}}, Options{FailureThreshold: threshold, OpenTimeout: openFor})
	tripCircuit(t, d, c, threshold)
	// OpenTimeout passing is the input: the next request is the probe. Too
	// short a wait would get BIZ_UNAVAILABLE from mustSubmit, not a pass.
	time.Sleep(openFor + 20*time.Millisecond)

	f.hold.Store(true)
	mustSubmit(t, d, 1, 10, nil, nil) // the probe, held by the backend
	<-f.held
	if s := statsOf(t, d, 1); s.Breaker != "half-open" {
		t.Fatalf("breaker %s during the probe, want half-open", s.Breaker)
	}
	// Others are queued (Submit cannot tell) but refused by the breaker.
	for seq := uint32(11); seq <= 13; seq++ {
		mustSubmit(t, d, 1, seq, nil, nil)
		if a := c.wait(t, 1, time.Second); a.status != codec.StatusBizUnavailable || a.seq != seq {
			t.Fatalf("seq %d during the probe: %v (seq %d), want BIZ_UNAVAILABLE", seq, a.status, a.seq)
		}
	}
	if n := f.calls.Load(); n != threshold+1 {
		t.Fatalf("backend calls = %d during the probe, want %d", n, threshold+1)
	}

	// The probe fails: the circuit opens again at once.
	f.release <- true
	if a := c.wait(t, 1, time.Second); a.seq != 10 || a.status != codec.StatusBizError {
		t.Fatalf("probe answer seq %d %v, want 10 BIZ_ERROR", a.seq, a.status)
	}
	if s := submit(d, 1, 20, nil, nil); s != codec.StatusBizUnavailable {
		t.Fatalf("Submit after a failed probe = %v, want BIZ_UNAVAILABLE", s)
	}
	if s := statsOf(t, d, 1); s.Breaker != "open" {
		t.Fatalf("breaker %s after a failed probe, want open", s.Breaker)
	}
}

func TestTimeoutsAndRefusalsOpenCircuit(t *testing.T) {
	b, srv := newBlocker(t)
	d, c := start(t, []Business{
		{ID: 1, URL: srv.URL, Timeout: 100 * time.Millisecond},
		{ID: 2, URL: "http://" + closedAddr(t)},
	}, Options{FailureThreshold: 2, OpenTimeout: time.Minute})
	for _, tc := range []struct {
		biz  uint16
		want codec.Status
	}{{1, codec.StatusTimeout}, {2, codec.StatusBizUnavailable}} {
		for seq := uint32(1); seq <= 2; seq++ {
			mustSubmit(t, d, tc.biz, seq, nil, nil)
			if a := c.wait(t, tc.biz, 2*time.Second); a.status != tc.want {
				t.Fatalf("biz %d seq %d: %v, want %v", tc.biz, seq, a.status, tc.want)
			}
		}
		if s := submit(d, tc.biz, 3, nil, nil); s != codec.StatusBizUnavailable {
			t.Fatalf("biz %d after 2 failures: Submit = %v, want BIZ_UNAVAILABLE", tc.biz, s)
		}
	}
	b.waitEntered(t)
	b.waitEntered(t)
}
