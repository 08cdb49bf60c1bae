package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/cluster"
	"github.com/longlink/longlink/cluster/redistest"
	"github.com/redis/go-redis/v9"
)

func client(t *testing.T, srv *redistest.Server) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// node is a registry with a settable connection count.
type node struct {
	info  cluster.NodeInfo
	conns atomic.Int64
	reg   *cluster.Registry
	lost  atomic.Int32
}

func newNode(t *testing.T, rdb *redis.Client, id string, ttl time.Duration) *node {
	n := &node{info: cluster.NodeInfo{Node: id, Instance: id + "-1", MaxConns: 100,
		Endpoints: []cluster.Endpoint{{Proto: "tcp", Addr: id + ":7000"}}}}
	n.reg = cluster.NewRegistry(cluster.RegistryConfig{
		Client: rdb, TTL: ttl,
		Lost: func() { n.lost.Add(1) },
	}, func() cluster.NodeInfo {
		i := n.info
		i.Conns = n.conns.Load()
		return i
	})
	return n
}

// checkFor polls f until it returns nil, failing the test with its last
// error after timeout.
func checkFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegistry(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv)
	ctx := t.Context()
	a, b, c := newNode(t, rdb, "a", time.Second), newNode(t, rdb, "b", time.Second), newNode(t, rdb, "c", 10*time.Second)
	a.conns.Store(50)
	b.conns.Store(10)
	c.conns.Store(30)
	for _, n := range []*node{a, b, c} {
		if err := n.reg.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !c.reg.Live("a", "a-1") || !c.reg.Live("b", "b-1") {
		t.Fatal("registered nodes are not live")
	}
	if c.reg.Live("a", "a-0") || c.reg.Live("z", "z-1") {
		t.Fatal("an old instance or an unknown node is live")
	}
	// A node that registers after the cache was read is live at once:
	// Live re-reads for an instance it does not know.
	late := newNode(t, rdb, "late", 10*time.Second)
	late.reg.Register(ctx)
	if !c.reg.Live("late", "late-1") {
		t.Fatal("a node registered after the last read is not live")
	}
	late.reg.Deregister(ctx)
	c.reg.Refresh(ctx)
	var order []string
	for _, n := range c.reg.Nodes() {
		order = append(order, n.Node)
	}
	if !slices.Equal(order, []string{"b", "c", "a"}) {
		t.Fatalf("Nodes order %v, want least loaded first: b c a", order)
	}
	// A draining node is alive but hands out no endpoints.
	if err := b.reg.SetDraining(ctx); err != nil {
		t.Fatal(err)
	}
	c.reg.Refresh(ctx)
	if !c.reg.Live("b", "b-1") {
		t.Fatal("a draining node is not live")
	}
	for _, n := range c.reg.Nodes() {
		if n.Node == "b" {
			t.Fatal("a draining node is listed")
		}
	}
	// Deregistered: dead at the next read.
	b.reg.Deregister(ctx)
	c.reg.Refresh(ctx)
	if c.reg.Live("b", "b-1") {
		t.Fatal("a deregistered node is live")
	}
	// Not renewed: dead after its TTL. The TTL passing is the input: a
	// registered over 1.2 s ago with a 1 s TTL, and Redis expires the key.
	time.Sleep(1200 * time.Millisecond)
	c.reg.Refresh(ctx)
	if c.reg.Live("a", "a-1") {
		t.Fatal("a node is live after its TTL")
	}
	if n, _ := rdb.ZCard(ctx, cluster.DefaultPrefix+"{nodes}").Result(); n != 1 {
		t.Errorf("the index holds %d ids, want 1 (c): expired ids are removed when read", n)
	}
}

func TestRegistryLost(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv)
	ctx := t.Context()
	a := newNode(t, rdb, "a", 10*time.Second)
	a.reg.Register(ctx)
	a.reg.Register(ctx)
	if a.lost.Load() != 0 {
		t.Fatal("Lost called on a plain renewal")
	}
	srv.Restart() // an empty Redis
	deadline := time.Now().Add(5 * time.Second)
	for a.reg.Register(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("cannot register after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for a.lost.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Lost not called after Redis lost the registration")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRegistryRun(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv)
	a, b := newNode(t, rdb, "a", 600*time.Millisecond), newNode(t, rdb, "b", 600*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { a.reg.Run(ctx) })
	wg.Go(func() { b.reg.Run(ctx) })
	// Both renew faster than the TTL: alive long after it. The time
	// passing is the input: 1.5 s is two and a half TTLs, and the keys
	// themselves are checked, not only the caches.
	time.Sleep(1500 * time.Millisecond)
	if !a.reg.Live("b", "b-1") || !b.reg.Live("a", "a-1") {
		t.Fatal("running nodes are not live to each other")
	}
	if n, err := rdb.Exists(ctx, cluster.DefaultPrefix+"{nodes}:node:a", cluster.DefaultPrefix+"{nodes}:node:b").Result(); n != 2 {
		t.Fatalf("%d of the 2 registrations in Redis (err %v): not renewed", n, err)
	}
	// a's next renewal carries 7; b's next read of the live set sees it.
	a.conns.Store(7)
	checkFor(t, 5*time.Second, func() error {
		nodes := b.reg.Nodes()
		i := slices.IndexFunc(nodes, func(n cluster.NodeInfo) bool { return n.Node == "a" })
		if i < 0 {
			t.Fatalf("b's node list %+v lacks a", nodes)
		}
		if nodes[i].Conns != 7 {
			return fmt.Errorf("b sees a with %d connections, want 7", nodes[i].Conns)
		}
		return nil
	})
	cancel()
	wg.Wait()
}

// handler records what a bus asked of its node.
type handler struct {
	local   map[string]bool // devices connected here
	groups  map[string]int  // group → members here
	mu      sync.Mutex
	got     []string // "push d", "group g", "all", "members g d join", "kick d"
	kickDur time.Duration
}

func (h *handler) note(s string) {
	h.mu.Lock()
	h.got = append(h.got, s)
	h.mu.Unlock()
}

func (h *handler) log() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

func (h *handler) Deliver(devices []string, frame []byte, cached bool, mark string, answer func(missing, moved []string)) {
	var missing []string
	for _, d := range devices {
		if h.local[d] {
			if cached {
				h.note("cached push " + d + " " + string(frame))
				continue
			}
			h.note("push " + d + " " + string(frame))
		} else {
			missing = append(missing, d)
		}
	}
	answer(missing, nil)
}

func (h *handler) DeliverGroup(group string, frame []byte) int {
	h.note("group " + group)
	return h.groups[group]
}

func (h *handler) DeliverAll(frame []byte) int {
	h.note("all")
	return len(h.local)
}

func (h *handler) Members(group string, devices []string, join bool) {
	h.note(fmt.Sprintf("members %s %v %v", group, devices, join))
}

func (h *handler) Kick(ctx context.Context, device string, conn uint64, status uint16, reason string, settle bool) bool {
	time.Sleep(h.kickDur) // a slow node, for ReplyTimeout
	h.note(fmt.Sprintf("kick %s %d %d %s %v", device, conn, status, reason, settle))
	return h.local[device]
}

func newBus(t *testing.T, rdb *redis.Client, id string, h *handler, resub func()) *cluster.Bus {
	b := cluster.NewBus(cluster.BusConfig{Client: rdb, Node: id, Instance: id + "-1", ReplyTimeout: 300 * time.Millisecond, Resubscribed: resub}, h)
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// waitSubscribers waits until n subscribers listen on the all channel.
func waitSubscribers(t *testing.T, rdb *redis.Client, n int64) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := rdb.PubSubNumSub(t.Context(), cluster.DefaultPrefix+"c:{all}").Result()
		if err == nil && m[cluster.DefaultPrefix+"c:{all}"] == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers, want %d", m[cluster.DefaultPrefix+"c:{all}"], n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBus(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv)
	ctx := t.Context()
	ha := &handler{local: map[string]bool{"a1": true}, groups: map[string]int{"room": 1}}
	hb := &handler{local: map[string]bool{"b1": true, "b2": true}, groups: map[string]int{"room": 2}}
	hc := &handler{local: map[string]bool{}, groups: map[string]int{}, kickDur: time.Second}
	a := newBus(t, rdb, "a", ha, nil)
	newBus(t, rdb, "b", hb, nil)
	newBus(t, rdb, "c", hc, nil)
	waitSubscribers(t, rdb, 3)

	// Unicast to b: delivered to its devices, the others reported.
	r, err := a.Send(ctx, "b", cluster.Msg{Kind: cluster.KindPush, Devices: []string{"b1", "gone"}, Frame: []byte("hi")})
	if err != nil || r.Node != "b" || !slices.Equal(r.Missing, []string{"gone"}) {
		t.Fatalf("Send = %+v, %v; want b missing [gone]", r, err)
	}
	if got := hb.log(); !slices.Equal(got, []string{"push b1 hi"}) {
		t.Fatalf("b did %q", got)
	}
	// A node nobody listens for: answered at once, not after the reply
	// timeout (a login's takeover from a dead node waits on this).
	timeouts := a.Stats().Timeouts.Load()
	if _, err := a.Send(ctx, "nobody", cluster.Msg{Kind: cluster.KindPush, Devices: []string{"x"}}); !errors.Is(err, cluster.ErrNoReceiver) {
		t.Fatalf("Send to a dead node: %v, want ErrNoReceiver", err)
	}
	if got := a.Stats().Timeouts.Load(); got != timeouts {
		t.Fatalf("Send to a dead node waited for the reply timeout (timeouts %d → %d)", timeouts, got)
	}
	// A node that does not answer in time.
	if _, err := a.Send(ctx, "c", cluster.Msg{Kind: cluster.KindKick, Device: "c1"}); !errors.Is(err, cluster.ErrNoReply) {
		t.Fatalf("Send to a slow node: %v, want ErrNoReply", err)
	}
	// Kick: answered once done.
	r, err = a.Send(ctx, "b", cluster.Msg{Kind: cluster.KindKick, Device: "b2", Conn: 5, Status: 9, Reason: "dup", Settle: true})
	if err != nil || r.Count != 1 {
		t.Fatalf("kick = %+v, %v", r, err)
	}

	// Group push: every node answers, a's own part included (empty).
	start := time.Now()
	replies, receivers, err := a.Fanout(ctx, cluster.Msg{Kind: cluster.KindGroup, Group: "room", Frame: []byte("g")})
	if err != nil || receivers != 3 || len(replies) != 3 {
		t.Fatalf("Fanout = %+v, %d receivers, %v", replies, receivers, err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("Fanout took %v although every node answered", d)
	}
	total := 0
	for _, r := range replies {
		total += r.Count
	}
	if total != 2 { // b's two; a does its own part itself
		t.Fatalf("group total %d, want 2", total)
	}
	if slices.Contains(ha.log(), "group room") {
		t.Fatal("a handled its own group message")
	}
	// Membership changes reach the others, in order with later pushes.
	if err := a.Publish(ctx, cluster.Msg{Kind: cluster.KindMembers, Group: "room", Devices: []string{"b9"}, Join: true}); err != nil {
		t.Fatal(err)
	}
	a.Fanout(ctx, cluster.Msg{Kind: cluster.KindAll, Frame: []byte("x")})
	got := hb.log()
	if i := slices.Index(got, "members room [b9] true"); i < 0 || got[len(got)-1] != "all" || i > len(got)-2 {
		t.Fatalf("b did %q: want the membership change before the broadcast", got)
	}
	if st := a.Stats(); st.Published.Load() == 0 || st.Timeouts.Load() == 0 {
		t.Errorf("stats: published %d, timeouts %d", st.Published.Load(), st.Timeouts.Load())
	}
}

func TestBusResubscribes(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv)
	ha := &handler{local: map[string]bool{}}
	hb := &handler{local: map[string]bool{"b1": true}}
	var resubs atomic.Int32
	a := newBus(t, rdb, "a", ha, nil)
	newBus(t, rdb, "b", hb, func() { resubs.Add(1) })
	waitSubscribers(t, rdb, 2)
	srv.Restart()
	// Both subscriptions come back by themselves.
	waitSubscribers(t, rdb, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := a.Send(t.Context(), "b", cluster.Msg{Kind: cluster.KindPush, Devices: []string{"b1"}})
		if err == nil && len(r.Missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %+v, %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resubs.Load() == 0 {
		t.Error("Resubscribed not called")
	}
}

// TestRegistryBeat: a node that stops beating (it died: nothing renews
// its keys) leaves Nodes, the endpoints handed to clients, within
// BeatTTL, while it stays live for routing until its registration
// expires.
func TestRegistryBeat(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv)
	ctx := t.Context()
	dead, seer := newNode(t, rdb, "dead", 30*time.Second), newNode(t, rdb, "seer", 30*time.Second)
	for _, n := range []*node{dead, seer} {
		if err := n.reg.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	listed := func() bool {
		for _, n := range seer.reg.Nodes() {
			if n.Node == "dead" {
				return true
			}
		}
		return false
	}
	seer.reg.Refresh(ctx)
	if !listed() {
		t.Fatal("a node that just registered is not handed out")
	}
	died := time.Now()
	checkFor(t, 5*time.Second, func() error {
		seer.reg.Refresh(ctx)
		if listed() {
			return fmt.Errorf("the dead node is still handed out %v after its last beat", time.Since(died))
		}
		return nil
	})
	if gone := time.Since(died); gone > cluster.BeatTTL+2*time.Second {
		t.Fatalf("the dead node left the endpoints after %v, want within BeatTTL (%v)", gone, cluster.BeatTTL)
	}
	if !seer.reg.Live("dead", "dead-1") {
		t.Fatal("the node is no longer live for routing while its registration holds")
	}
}

// TestRegistryEpoch restarts Redis empty: the nodes a registry knew stay
// live for one TTL unless they re-register, so links and routes to them
// are not dropped while they have not renewed yet; a node that does not
// come back is dead after that TTL.
func TestRegistryEpoch(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv)
	ctx := t.Context()
	const ttl = 1500 * time.Millisecond
	a, b, c := newNode(t, rdb, "a", ttl), newNode(t, rdb, "b", ttl), newNode(t, rdb, "c", ttl)
	for _, n := range []*node{a, b, c} {
		if err := n.reg.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Restart() // an empty Redis: no registrations, no epoch
	checkFor(t, 5*time.Second, func() error { return a.reg.Refresh(ctx) })
	lost := time.Now()
	if !a.reg.Live("b", "b-1") || !a.reg.Live("c", "c-1") {
		t.Fatal("the nodes known before Redis lost its data are not live at once")
	}
	if _, ok := a.reg.Info("b"); !ok {
		t.Fatal("no address for a node known before the loss")
	}
	// b comes back as a new instance: its new entry is the current one.
	b.info.Instance = "b-2"
	if err := b.reg.Register(ctx); err != nil {
		t.Fatal(err)
	}
	a.reg.Refresh(ctx)
	if !a.reg.Live("b", "b-2") || a.reg.Live("b", "b-1") {
		t.Fatal("a re-registered node's new instance does not replace the carried one")
	}
	// c never comes back: dead once a TTL from the loss has passed.
	checkFor(t, 2*ttl, func() error {
		b.reg.Register(ctx) // b renews, as a live node does
		a.reg.Refresh(ctx)
		if a.reg.Live("c", "c-1") {
			return errors.New("a node that never re-registered is still live")
		}
		return nil
	})
	if since := time.Since(lost); since < ttl-200*time.Millisecond {
		t.Fatalf("c declared dead %v after the loss, before its TTL %v", since, ttl)
	}
	if !a.reg.Live("b", "b-2") {
		t.Fatal("the re-registered node is gone with the carry-over")
	}
	// A second read of the same epoch carries nothing again.
	b.reg.Deregister(ctx)
	a.reg.Refresh(ctx)
	if a.reg.Live("b", "b-2") {
		t.Fatal("a deregistered node is live after the carry-over ended")
	}
}

// TestRegistryRefreshSince: a read that started after since is enough; an
// older one is not.
func TestRegistryRefreshSince(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv)
	ctx := t.Context()
	a, b := newNode(t, rdb, "a", 10*time.Second), newNode(t, rdb, "b", 10*time.Second)
	a.reg.Register(ctx)
	before := time.Now()
	if err := a.reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	b.reg.Register(ctx)
	if err := a.reg.RefreshSince(ctx, before); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.reg.Info("b"); ok {
		t.Fatal("RefreshSince read again though the cache was read after since")
	}
	if err := a.reg.RefreshSince(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.reg.Info("b"); !ok {
		t.Fatal("RefreshSince did not read a cache older than since")
	}
}
