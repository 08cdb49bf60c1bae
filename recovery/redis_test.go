package recovery_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/cluster/redistest"
	"github.com/longlink/longlink/recovery"
	"github.com/redis/go-redis/v9"
)

// fakeShared is an in-memory Shared whose calls can be made to fail or
// to wait.
type fakeShared struct {
	mu     sync.Mutex
	states map[string]recovery.State
	fail   error
	saves  int
	// hold, when set, blocks Save until it is closed; saving is closed when
	// a Save starts waiting on it.
	hold, saving chan struct{}
}

func newFake() *fakeShared { return &fakeShared{states: map[string]recovery.State{}} }

func (f *fakeShared) Save(_ context.Context, device string, st recovery.State) error {
	f.mu.Lock()
	hold, saving := f.hold, f.saving
	f.mu.Unlock()
	if hold != nil {
		close(saving)
		<-hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.saves++
	f.states[device] = st
	return nil
}

func (f *fakeShared) Take(_ context.Context, device string) (recovery.State, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return recovery.State{}, false, f.fail
	}
	st, ok := f.states[device]
	delete(f.states, device)
	return st, ok, nil
}

func (f *fakeShared) Append(_ context.Context, pushes []recovery.Push) ([]recovery.Kept, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	kept := make([]recovery.Kept, len(pushes))
	for i, p := range pushes {
		st, ok := f.states[p.Device]
		if !ok {
			continue
		}
		st.Seq++
		st.Items = append(st.Items, recovery.Item{Seq: st.Seq, Frame: p.Frame})
		f.states[p.Device] = st
		kept[i] = recovery.Stored
	}
	return kept, nil
}

func (f *fakeShared) Delete(_ context.Context, device string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.states, device)
	return nil
}

func (f *fakeShared) state(device string) (recovery.State, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.states[device]
	return st, ok
}

func sharedStore(t *testing.T, sh recovery.Shared, size int) *recovery.Store {
	s := recovery.New(size, ttl)
	s.Share(sh, recovery.ShareOptions{Timeout: time.Second})
	t.Cleanup(s.Close)
	return s
}

func TestSharedDetachSavesAndAttachTakes(t *testing.T) {
	f := newFake()
	a, b := sharedStore(t, f, 8), sharedStore(t, f, 8) // two nodes
	e := a.Acquire("dev")
	record(t, e, "p", 3, 8)
	e.Ack(1)
	a.Detach(e, t0)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := a.Settle(ctx, "dev"); err != nil {
		t.Fatalf("Settle after the save: %v", err)
	}
	st, ok := f.state("dev")
	if !ok || st.Seq != 3 || len(st.Items) != 2 || st.Items[0].Seq != 2 {
		t.Fatalf("saved %+v, %v; want seq 3 with pushes 2 and 3", st, ok)
	}
	// Forgotten on a: a push there now goes to the shared store.
	if back, err := a.Keep(t.Context(), []string{"dev", "nobody"}, frame("p", 4), t0); err != nil || back != nil {
		t.Fatalf("Keep = back %v, %v", back, err)
	}
	e2 := b.Attach("dev", t0)
	if e2 == nil || e2.Seq() != 4 {
		t.Fatalf("Attach on b = %v; want the state with seq 4", e2)
	}
	if items, complete := since(e2, 1); !complete || !reflect.DeepEqual(items, want("p", 2, 4)) {
		t.Fatalf("resume on b: %v, %v", items, complete)
	}
	if _, ok := f.state("dev"); ok {
		t.Fatal("the shared state was not taken over")
	}
	if _, ok := f.state("nobody"); ok {
		t.Fatal("a push for a device without state made one")
	}
	// A device with no state anywhere has none.
	if b.Attach("other", t0) != nil {
		t.Fatal("Attach made up a state")
	}
}

func TestSharedOfflineAppendsInTheBackground(t *testing.T) {
	f := newFake()
	s := sharedStore(t, f, 8)
	e := s.Acquire("dev")
	record(t, e, "p", 1, 8)
	s.Detach(e, t0)
	if s.Offline("dev", frame("p", 2), t0) {
		t.Fatal("Offline reported a background append as kept")
	}
	s.Close() // flushes the queue
	if st, _ := f.state("dev"); st.Seq != 2 {
		t.Fatalf("after Close the shared seq is %d, want 2", st.Seq)
	}
	if s.Dropped() != 0 {
		t.Fatalf("%d dropped", s.Dropped())
	}
}

func TestSharedSaveFailureKeepsLocal(t *testing.T) {
	f := newFake()
	s := sharedStore(t, f, 8)
	e := s.Acquire("dev")
	record(t, e, "p", 2, 8)
	f.fail = errors.New("down")
	s.Detach(e, t0)
	// As on a single node: kept here, pushes recorded here.
	if !s.Offline("dev", frame("p", 3), t0) {
		t.Fatal("Offline did not record in the kept entry")
	}
	if e2 := s.Attach("dev", t0); e2 != e || e2.Seq() != 3 {
		t.Fatalf("Attach after a failed save = %v, want the local entry", e2)
	}
	s.Detach(e, t0)
	// Redis is back, and a newer state was saved elsewhere: the higher
	// seq wins.
	f.fail = nil
	f.states["dev"] = recovery.State{Seq: 9, Items: []recovery.Item{{Seq: 9, Frame: frame("q", 9)}}}
	if e3 := s.Attach("dev", t0); e3 != e || e3.Seq() != 9 {
		t.Fatalf("Attach = %v seq %d, want the shared seq 9", e3, e3.Seq())
	}
}

func TestSharedReattachDuringSave(t *testing.T) {
	f := newFake()
	s := sharedStore(t, f, 8)
	e := s.Acquire("dev")
	record(t, e, "p", 2, 8)
	f.hold, f.saving = make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() { s.Detach(e, t0); close(done) }()
	<-f.saving
	// While the save is under way, the device logs in here again, and a
	// push for it arrives.
	if e2 := s.Attach("dev", t0); e2 != e {
		t.Fatal("Attach during the save did not share the entry")
	}
	if !s.Offline("dev", frame("p", 3), t0) {
		t.Fatal("Offline during the save did not record")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.Settle(ctx, "dev"); err == nil {
		t.Fatal("Settle returned while a connection holds the state")
	}
	f.mu.Lock()
	hold := f.hold
	f.hold = nil
	f.mu.Unlock()
	close(hold)
	<-done
	if _, ok := f.state("dev"); ok {
		t.Fatal("the stale shared copy was not deleted")
	}
	if e.Seq() != 3 {
		t.Fatalf("seq %d, want 3", e.Seq())
	}
}

// sharedRedis returns a Redis shared store on a fresh server.
func sharedRedis(t *testing.T, size int, ttl time.Duration) (*recovery.Redis, *redis.Client) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	return recovery.NewRedis(recovery.RedisConfig{Client: rdb, Size: size, TTL: ttl}), rdb
}

func TestRedisSharedStore(t *testing.T) {
	r, rdb := sharedRedis(t, 3, time.Minute)
	ctx := t.Context()
	if _, ok, err := r.Take(ctx, "dev"); ok || err != nil {
		t.Fatalf("Take of nothing = %v, %v", ok, err)
	}
	kept, err := r.Append(ctx, []recovery.Push{{Device: "dev", Frame: []byte("x")}})
	if err != nil || kept[0] != recovery.NoState {
		t.Fatalf("Append without a state = %v, %v; want not kept", kept, err)
	}
	binary := []byte{0, 1, 2, 0xff, 0}
	st := recovery.State{Seq: 5, Items: []recovery.Item{{Seq: 4, Frame: []byte("four")}, {Seq: 5, Frame: binary}}}
	if err := r.Save(ctx, "dev", st); err != nil {
		t.Fatal(err)
	}
	var pushes []recovery.Push
	for i := 6; i <= 7; i++ {
		pushes = append(pushes, recovery.Push{Device: "dev", Frame: []byte(fmt.Sprintf("p%d", i))})
	}
	pushes = append(pushes, recovery.Push{Device: "other", Frame: []byte("o")})
	kept, err = r.Append(ctx, pushes)
	if err != nil || !reflect.DeepEqual(kept, []recovery.Kept{recovery.Stored, recovery.Stored, recovery.NoState}) {
		t.Fatalf("Append = %v, %v", kept, err)
	}
	// The appends keep the expiry Save set, on both keys.
	for _, k := range []string{"longlink:rs:{dev}", "longlink:rb:{dev}"} {
		if d, _ := rdb.PTTL(ctx, k).Result(); d <= 0 || d > time.Minute {
			t.Errorf("%s expires in %v, want within 1m", k, d)
		}
	}
	got, ok, err := r.Take(ctx, "dev")
	if err != nil || !ok {
		t.Fatalf("Take = %v, %v", ok, err)
	}
	wantSt := recovery.State{Seq: 7, Items: []recovery.Item{{Seq: 5, Frame: binary}, {Seq: 6, Frame: []byte("p6")}, {Seq: 7, Frame: []byte("p7")}}}
	if !reflect.DeepEqual(got, wantSt) {
		t.Fatalf("Take = %+v, want %+v (the last 3)", got, wantSt)
	}
	if _, ok, _ := r.Take(ctx, "dev"); ok {
		t.Fatal("Take did not delete the state")
	}
	// A state without pushes still counts appends.
	r.Save(ctx, "dev", recovery.State{Seq: 2})
	r.Append(ctx, []recovery.Push{{Device: "dev", Frame: []byte("p3")}})
	if d, _ := rdb.PTTL(ctx, "longlink:rb:{dev}").Result(); d <= 0 {
		t.Errorf("the list made by Append has no expiry (%v)", d)
	}
	if got, _, _ := r.Take(ctx, "dev"); got.Seq != 3 || len(got.Items) != 1 {
		t.Fatalf("Take = %+v", got)
	}
	r.Save(ctx, "dev", st)
	if err := r.Delete(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, "longlink:rs:{dev}", "longlink:rb:{dev}").Result(); n != 0 {
		t.Fatal("Delete left keys")
	}
}

// TestRedisSharedExpiry: a saved state carries the store's TTL in Redis,
// and once Redis has expired it, Take finds nothing.
func TestRedisSharedExpiry(t *testing.T) {
	const ttl = 200 * time.Millisecond
	r, rdb := sharedRedis(t, 4, ttl)
	ctx := t.Context()
	if err := r.Save(ctx, "dev", recovery.State{Seq: 1}); err != nil {
		t.Fatalf("Save: %v", err)
	}
	left, err := rdb.PTTL(ctx, "longlink:rs:{dev}").Result()
	if err != nil || left <= 0 || left > ttl {
		t.Fatalf("saved state's TTL %v (err %v), want within (0, %v]", left, err, ttl)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := rdb.Exists(ctx, "longlink:rs:{dev}").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("state outlived its TTL by seconds")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok, err := r.Take(ctx, "dev"); ok || err != nil {
		t.Fatalf("Take after the TTL = %v, %v; want nothing, no error", ok, err)
	}
}

// TestRedisResumeAcrossStores is the cross-node story on two stores and
// one Redis: pushes on node a, a disconnect, pushes while offline through
// node b, a resume on node b.
func TestRedisResumeAcrossStores(t *testing.T) {
	r, _ := sharedRedis(t, 8, time.Minute)
	a, b := sharedStore(t, r, 8), sharedStore(t, r, 8)
	e := a.Acquire("dev")
	record(t, e, "p", 2, 8)
	a.Detach(e, t0)
	if back, err := b.Keep(t.Context(), []string{"dev"}, frame("p", 3), t0); err != nil || back != nil {
		t.Fatalf("Keep = back %v, %v", back, err)
	}
	b.Offline("dev", frame("p", 4), t0)
	b.Close() // flush the background append
	e2 := a.Attach("dev", t0)
	if e2 == nil {
		t.Fatal("no state to resume")
	}
	if items, complete := since(e2, 1); !complete || !reflect.DeepEqual(items, want("p", 2, 4)) {
		t.Fatalf("resume: %v, %v", items, complete)
	}
	if seq := e2.Record(frame("p", 5), 8); seq != 5 {
		t.Fatalf("next seq %d, want 5", seq)
	}
}

func TestRedisSharedUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1})
	defer rdb.Close()
	r := recovery.NewRedis(recovery.RedisConfig{Client: rdb, Size: 4, TTL: time.Minute})
	srv.Kill()
	ctx := t.Context()
	for name, err := range map[string]error{
		"Save":   r.Save(ctx, "d", recovery.State{Seq: 1}),
		"Take":   func() error { _, _, err := r.Take(ctx, "d"); return err }(),
		"Append": func() error { _, err := r.Append(ctx, []recovery.Push{{Device: "d"}}); return err }(),
		"Delete": r.Delete(ctx, "d"),
	} {
		if !errors.Is(err, recovery.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v, want ErrUnavailable", name, err)
		}
	}
}
