package route_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/cluster/redistest"
	"github.com/longlink/longlink/route"
	"github.com/longlink/longlink/route/routetest"
	"github.com/redis/go-redis/v9"
)

// redisClient starts a redis-server for the test and returns a client of
// it, closed when the test ends.
func redisClient(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	return srv, rdb
}

// TestRedis runs the shared route suite against Redis: one server, a fresh
// key prefix per subtest, so each starts from an empty keyspace.
func TestRedis(t *testing.T) {
	_, rdb := redisClient(t)
	var n atomic.Int64
	routetest.Run(t, func(t *testing.T) route.Route {
		return route.NewRedis(route.RedisConfig{Client: rdb, Prefix: fmt.Sprintf("t%d:", n.Add(1))})
	})
}

// TestRedisOwnClient covers the route that makes (and closes) its own
// client.
func TestRedisOwnClient(t *testing.T) {
	srv := redistest.Start(t)
	routetest.Run(t, func(t *testing.T) route.Route {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
		rdb.FlushDB(t.Context())
		rdb.Close()
		return route.NewRedis(route.RedisConfig{Addr: srv.Addr})
	})
}

// liveSet is a Live function over a settable set of instances.
type liveSet struct {
	m atomic.Pointer[map[string]bool]
}

func (l *liveSet) set(instances ...string) {
	m := map[string]bool{}
	for _, i := range instances {
		m[i] = true
	}
	l.m.Store(&m)
}

func (l *liveSet) live(_, instance string) bool { return (*l.m.Load())[instance] }

func TestRedisLiveness(t *testing.T) {
	_, rdb := redisClient(t)
	ctx := t.Context()
	var live liveSet
	live.set("inst-a", "inst-b")
	a := route.NewRedis(route.RedisConfig{Client: rdb, Instance: "inst-a", Live: live.live})
	b := route.NewRedis(route.RedisConfig{Client: rdb, Instance: "inst-b", Live: live.live})
	locA := route.Location{Node: "node-a", Conn: 7}
	locB := route.Location{Node: "node-b", Conn: 9}

	if _, _, err := a.Bind(ctx, "dev", locA); err != nil {
		t.Fatal(err)
	}
	if loc, online, err := b.Lookup(ctx, "dev"); err != nil || !online || loc != locA {
		t.Fatalf("Lookup from b = %v, %v, %v; want %v online", loc, online, err, locA)
	}
	// Node a's instance dies: its binding is offline everywhere, and is
	// deleted by the lookup that finds it so.
	live.set("inst-b")
	if loc, online, err := b.Lookup(ctx, "dev"); err != nil || online {
		t.Fatalf("Lookup of a dead instance's binding = %v, %v, %v; want offline", loc, online, err)
	}
	if n, _ := rdb.Exists(ctx, route.DefaultRedisPrefix+"d:{dev}").Result(); n != 0 {
		t.Error("a dead instance's binding was not deleted by Lookup")
	}
	// A dead previous binding is no duplicate login.
	a.Bind(ctx, "dev2", locA)
	if prev, had, err := b.Bind(ctx, "dev2", locB); err != nil || had {
		t.Fatalf("Bind over a dead binding = %v, %v, %v; want no previous", prev, had, err)
	}
	// The instance's own bindings are live even when Live says otherwise
	// (it has not registered yet, or its registration lapsed).
	live.set()
	if loc, online, _ := b.Lookup(ctx, "dev2"); !online || loc != locB {
		t.Fatalf("own binding = %v, %v; want %v online", loc, online, locB)
	}
	// LookupMany filters the same way.
	live.set("inst-b")
	a.Bind(ctx, "dev3", locA)
	locs, online, err := b.LookupMany(ctx, []string{"dev2", "dev3", "nobody"})
	if err != nil || !online[0] || locs[0] != locB || online[1] || online[2] {
		t.Fatalf("LookupMany = %v, %v, %v; want [%v online, offline, offline]", locs, online, err, locB)
	}
}

func TestRedisLookupMany(t *testing.T) {
	_, rdb := redisClient(t)
	ctx := t.Context()
	r := route.NewRedis(route.RedisConfig{Client: rdb, Batch: 7})
	var devices []string
	for i := range 50 {
		d := fmt.Sprintf("dev-%d", i)
		devices = append(devices, d)
		if i%3 == 0 {
			r.Bind(ctx, d, route.Location{Node: "n", Conn: uint64(i)})
		}
	}
	locs, online, err := r.LookupMany(ctx, devices)
	if err != nil {
		t.Fatal(err)
	}
	for i := range devices {
		want := i%3 == 0
		if online[i] != want || (want && locs[i].Conn != uint64(i)) {
			t.Errorf("devices[%d]: %v, %v; want online=%v conn %d", i, locs[i], online[i], want, i)
		}
	}
}

func TestRedisBindingExpiry(t *testing.T) {
	_, rdb := redisClient(t)
	ctx := t.Context()
	r := route.NewRedis(route.RedisConfig{Client: rdb, DeviceTTL: 90 * time.Second})
	r.Bind(ctx, "dev", route.Location{Node: "n", Conn: 1})
	ttl, err := rdb.TTL(ctx, route.DefaultRedisPrefix+"d:{dev}").Result()
	if err != nil || ttl <= 80*time.Second || ttl > 90*time.Second {
		t.Fatalf("binding TTL = %v, %v; want about 90s", ttl, err)
	}
}

func TestRedisRefresh(t *testing.T) {
	_, rdb := redisClient(t)
	ctx := t.Context()
	a := route.NewRedis(route.RedisConfig{Client: rdb, Instance: "inst-a", DeviceTTL: time.Minute, Batch: 2})
	b := route.NewRedis(route.RedisConfig{Client: rdb, Instance: "inst-b"})
	loc := func(c uint64) route.Location { return route.Location{Node: "node-a", Conn: c} }
	a.Bind(ctx, "kept", loc(1))
	a.Bind(ctx, "older", loc(2)) // a newer connection (conn 3) replaced it here
	a.Bind(ctx, "moved", loc(4)) // then the device logged in on node b
	b.Bind(ctx, "moved", route.Location{Node: "node-b", Conn: 1})
	rdb.Persist(ctx, route.DefaultRedisPrefix+"d:{kept}") // Refresh must restore the expiry
	// "lost" was bound here, but Redis lost it (a restart).
	n, err := a.Refresh(ctx, []route.Binding{
		{Device: "kept", Loc: loc(1)},
		{Device: "older", Loc: loc(3)},
		{Device: "moved", Loc: loc(4)},
		{Device: "lost", Loc: loc(5)},
	})
	if err != nil || n != 3 {
		t.Fatalf("Refresh = %d, %v; want 3 written", n, err)
	}
	for dev, want := range map[string]route.Location{
		"kept": loc(1), "older": loc(3), "lost": loc(5), "moved": {Node: "node-b", Conn: 1},
	} {
		if got, online, _ := a.Lookup(ctx, dev); !online || got != want {
			t.Errorf("after Refresh, %s at %v (online %v), want %v", dev, got, online, want)
		}
	}
	if ttl, _ := rdb.TTL(ctx, route.DefaultRedisPrefix+"d:{kept}").Result(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("refreshed TTL = %v, want up to 1m", ttl)
	}
}

// TestRedisUnavailable checks that every call fails fast, wrapping
// ErrUnavailable, when nothing listens at the address, and works again
// once Redis is back.
func TestRedisUnavailable(t *testing.T) {
	srv, _ := redisClient(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	defer rdb.Close()
	r := route.NewRedis(route.RedisConfig{Client: rdb})
	srv.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	loc := route.Location{Node: "n", Conn: 1}
	calls := map[string]func() error{
		"Bind":       func() error { _, _, err := r.Bind(ctx, "dev", loc); return err },
		"Unbind":     func() error { return r.Unbind(ctx, "dev", loc) },
		"Lookup":     func() error { _, _, err := r.Lookup(ctx, "dev"); return err },
		"LookupMany": func() error { _, _, err := r.LookupMany(ctx, []string{"dev"}); return err },
		"Join":       func() error { return r.Join(ctx, "g", []string{"dev"}) },
		"Leave":      func() error { return r.Leave(ctx, "g", []string{"dev"}) },
		"GroupSize":  func() error { _, err := r.GroupSize(ctx, "g"); return err },
		"Groups":     func() error { _, err := r.Groups(ctx, "dev"); return err },
		"Refresh":    func() error { _, err := r.Refresh(ctx, []route.Binding{{Device: "dev", Loc: loc}}); return err },
	}
	for name, call := range calls {
		start := time.Now()
		if err := call(); !errors.Is(err, route.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v to fail, want it to fail fast", name, d)
		}
	}
	srv.Restart()
	if _, _, err := r.Bind(ctx, "dev", loc); err != nil {
		t.Fatalf("Bind after Redis is back: %v", err)
	}
}
