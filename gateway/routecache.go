package gateway

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// routeCache remembers on which other node each device was last
// delivered to, so that the next push to it skips the route's lookup (a
// Redis round trip). An entry is a guess, never trusted: the push goes
// out marked cached, the node named answers the devices it does not hold
// (without keeping their push), and those are looked up and routed
// anew; an entry is forgotten whenever its guess fails. So a stale entry
// (the device moved, went offline, or its node died) costs one extra
// round trip, once.
//
// It is bounded: routeShards shards of at most routeShardMax entries,
// and a full shard starts over empty (the pushes that follow fill it
// again, one lookup each). Its zero value is ready to use.
type routeCache struct {
	seed   maphash.Seed
	once   sync.Once
	filled atomic.Bool // an entry was ever put: until then no push reads it
	shards [routeShards]routeShard
}

// The bound: 64 × 4,096 = 262,144 devices, about 100 B each with the map's
// own overhead: some 25 MB at most.
const (
	routeShards   = 64
	routeShardMax = 4096
)

type routeShard struct {
	mu sync.Mutex
	m  map[string]string // device → node, guarded by mu
}

func (rc *routeCache) shard(device string) *routeShard {
	rc.once.Do(func() { rc.seed = maphash.MakeSeed() })
	return &rc.shards[maphash.String(rc.seed, device)%routeShards]
}

// any reports whether the cache may hold an entry.
func (rc *routeCache) any() bool { return rc.filled.Load() }

// get returns the node device was last delivered to.
func (rc *routeCache) get(device string) (string, bool) {
	s := rc.shard(device)
	s.mu.Lock()
	node, ok := s.m[device]
	s.mu.Unlock()
	return node, ok
}

// put records that device was delivered to on node.
func (rc *routeCache) put(device, node string) {
	s := rc.shard(device)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= routeShardMax {
		if _, ok := s.m[device]; !ok {
			s.m = make(map[string]string, 64)
		}
	}
	s.m[device] = node
	s.mu.Unlock()
	rc.filled.Store(true)
}

// forget drops device's entry.
func (rc *routeCache) forget(device string) {
	s := rc.shard(device)
	s.mu.Lock()
	delete(s.m, device)
	s.mu.Unlock()
}
