package events

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// collector is a real HTTP endpoint that records the batches it takes and
// refuses the first `fail` posts with 503.
type collector struct {
	mu      sync.Mutex
	batches [][]Event
	fail    atomic.Int32
	posts   atomic.Int32
	node    atomic.Value
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.posts.Add(1)
	c.node.Store(r.Header.Get("X-Longlink-Node"))
	if c.fail.Add(-1) >= 0 {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var b batch
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.batches = append(c.batches, b.Events)
	c.mu.Unlock()
}

func (c *collector) events() (all []Event, batches int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.batches {
		all = append(all, b...)
	}
	return all, len(c.batches)
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBatchesInOrder(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	s := New(srv.URL, "n1", Options{MaxBatch: 10, FlushEvery: 20 * time.Millisecond})
	for i := 0; i < 25; i++ {
		s.add(Event{Type: "connect", Device: "d", Conn: itoa(i)})
	}
	waitFor(t, 5*time.Second, func() bool { all, _ := col.events(); return len(all) == 25 })
	all, batches := col.events()
	if batches < 3 {
		t.Errorf("25 events with MaxBatch 10 came in %d batches, want at least 3", batches)
	}
	for i, e := range all {
		if e.Conn != itoa(i) {
			t.Fatalf("event %d is conn %s: order lost", i, e.Conn)
		}
	}
	if col.node.Load() != "n1" {
		t.Errorf("X-Longlink-Node = %v", col.node.Load())
	}
	s.Close(t.Context())
	if sent, _, _, _ := s.Stats(); sent != 25 {
		t.Errorf("sent = %d", sent)
	}
}

func TestRetriesUntilTaken(t *testing.T) {
	col := &collector{}
	col.fail.Store(3)
	srv := httptest.NewServer(col)
	defer srv.Close()
	s := New(srv.URL, "n1", Options{FlushEvery: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	defer s.Close(t.Context())
	s.add(Event{Type: "disconnect", Device: "d1", Reason: "IDLE_TIMEOUT"})
	waitFor(t, 5*time.Second, func() bool { all, _ := col.events(); return len(all) == 1 })
	all, _ := col.events()
	if all[0].Device != "d1" || all[0].Reason != "IDLE_TIMEOUT" {
		t.Fatalf("event %+v", all[0])
	}
	if _, _, failures, _ := s.Stats(); failures != 3 {
		t.Errorf("failures = %d, want 3", failures)
	}
}

// TestDeadEndpointIsBounded: with the endpoint down, the queue holds at
// most QueueSize events and the rest are dropped and counted.
func TestDeadEndpointIsBounded(t *testing.T) {
	col := &collector{}
	col.fail.Store(1 << 30)
	srv := httptest.NewServer(col)
	defer srv.Close()
	s := New(srv.URL, "n1", Options{QueueSize: 100, MaxBatch: 10, FlushEvery: time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	for i := 0; i < 10000; i++ {
		s.add(Event{Type: "connect", Device: "d"})
	}
	_, dropped, _, queued := s.Stats()
	if queued > 100 {
		t.Fatalf("queued %d beyond the bound", queued)
	}
	// At most the queue plus one batch in flight can have been kept.
	if dropped < 10000-100-10 {
		t.Fatalf("dropped %d, want at least %d", dropped, 10000-110)
	}
	start := time.Now()
	s.Close(t.Context())
	if time.Since(start) > 2*time.Second {
		t.Errorf("Close with a dead endpoint took %v", time.Since(start))
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
