package route

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// shardCount is the number of device shards and of group shards. With 64
// shards, goroutines working on different devices or groups rarely meet on
// one lock, and the fixed arrays cost a few kilobytes.
const shardCount = 64

// Lock order. Memory has two arrays of shards, each shard with its own
// RWMutex:
//
//   - devices: a device's binding and the groups it is in (device → groups),
//     in the shard of the device;
//   - groups: a group's members (group → devices), in the shard of the group.
//
// A goroutine holds at most one group shard lock and, while holding it, at
// most one device shard lock at a time: always group shard, then device
// shard, never the other way round, and never two shards of the same array
// at once. Join and Leave hold the group's shard lock for the whole call and
// take each device shard in turn under it. This makes every change of one
// (group, device) pair, on both indexes, happen under that group's lock, so
// the two indexes cannot disagree once the calls that change them return.
// Bind, Unbind, Lookup and Groups take only one device shard lock;
// GroupSize takes only one group shard lock.

// Memory is the in-memory Route of a single node. The zero value is not
// usable; call NewMemory.
//
// Memory stores copies of the device and group names it keeps, so a name
// that points into a larger buffer (a request body decoded without copying)
// does not keep that buffer alive. Location.Node is stored as given: it is
// one node id shared by all the devices bound on that node.
//
// A group with no members and a device with neither a binding nor a group
// take no memory.
type Memory struct {
	devices [shardCount]deviceShard
	groups  [shardCount]groupShard
}

var _ Route = (*Memory)(nil)

// deviceShard holds the facts about the devices whose names hash to it.
type deviceShard struct {
	mu sync.RWMutex
	// locs is the location of every bound device.
	locs map[string]Location
	// groups lists, for every device in at least one group, the groups it
	// is in, without repeats and in no order. The strings are the names of
	// the group entries (group.name), so a group's name is stored once. A
	// list rather than a set because a device is in few groups, so the
	// scan that Leave makes of it is short, and a list costs a fraction of
	// a map's memory.
	groups map[string][]string
	// Padding keeps two shards' locks off one cache line, so readers of
	// neighbouring shards do not slow each other down.
	_ [64]byte
}

// groupShard holds the groups whose names hash to it.
type groupShard struct {
	mu sync.RWMutex
	// groups holds every group with at least one member.
	groups map[string]*group
	_      [64]byte // as in deviceShard
}

// group is one group's member set.
type group struct {
	// name is the group's name: the key of its entry in groupShard.groups,
	// and the string the device → groups lists refer to.
	name string
	// members is the set of member devices.
	members map[string]struct{}
}

// NewMemory returns an empty in-memory route.
func NewMemory() *Memory {
	m := new(Memory)
	for i := range m.devices {
		m.devices[i].locs = make(map[string]Location)
		m.devices[i].groups = make(map[string][]string)
	}
	for i := range m.groups {
		m.groups[i].groups = make(map[string]*group)
	}
	return m
}

// shardIndex returns the shard of key: its 32-bit FNV-1a hash modulo
// shardCount. It is written out rather than taken from hash/fnv, whose
// hash.Hash32 would make every Lookup allocate.
func shardIndex(key string) int {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= prime32
	}
	return int(h % shardCount)
}

// Bind records that device is connected at loc. It never fails.
func (m *Memory) Bind(_ context.Context, device string, loc Location) (prev Location, hadPrev bool, err error) {
	s := &m.devices[shardIndex(device)]
	s.mu.Lock()
	prev, hadPrev = s.locs[device]
	// Storing under an existing key replaces the stored key too (the
	// runtime does so for strings), so always store an owned copy.
	s.locs[strings.Clone(device)] = loc
	s.mu.Unlock()
	return prev, hadPrev, nil
}

// Unbind removes device's binding if it is loc. It never fails.
func (m *Memory) Unbind(_ context.Context, device string, loc Location) error {
	s := &m.devices[shardIndex(device)]
	s.mu.Lock()
	if cur, ok := s.locs[device]; ok && cur == loc {
		delete(s.locs, device)
	}
	s.mu.Unlock()
	return nil
}

// Lookup returns where device is connected. It never fails and does not
// allocate.
func (m *Memory) Lookup(_ context.Context, device string) (loc Location, online bool, err error) {
	s := &m.devices[shardIndex(device)]
	s.mu.RLock()
	loc, online = s.locs[device]
	s.mu.RUnlock()
	return loc, online, nil
}

// Join adds devices to group. It never fails. It locks the group's shard
// once and each device shard at most once, whatever the number of devices.
func (m *Memory) Join(_ context.Context, group string, devices []string) error {
	if len(devices) == 0 {
		return nil
	}
	gs := &m.groups[shardIndex(group)]
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g := gs.groups[group]
	if g == nil {
		g = newGroup(group, len(devices))
		gs.groups[g.name] = g
	}
	added := make([]string, 0, len(devices))
	for _, d := range devices {
		if _, ok := g.members[d]; ok {
			continue
		}
		d = strings.Clone(d)
		g.members[d] = struct{}{}
		added = append(added, d)
	}
	m.eachDeviceShard(added, func(ds *deviceShard, d string) {
		// d is an owned copy, fit to replace the stored key.
		ds.groups[d] = append(ds.groups[d], g.name)
	})
	return nil
}

// newGroup returns an empty group named by a copy of name, with room for
// size members.
func newGroup(name string, size int) *group {
	return &group{name: strings.Clone(name), members: make(map[string]struct{}, size)}
}

// Leave removes devices from group. It never fails. It locks the group's
// shard once and each device shard at most once, whatever the number of
// devices.
func (m *Memory) Leave(_ context.Context, group string, devices []string) error {
	gs := &m.groups[shardIndex(group)]
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g := gs.groups[group]
	if g == nil {
		return nil
	}
	removed := make([]string, 0, len(devices))
	for _, d := range devices {
		if _, ok := g.members[d]; !ok {
			continue
		}
		delete(g.members, d)
		removed = append(removed, d)
	}
	if len(g.members) == 0 {
		delete(gs.groups, group)
	}
	m.eachDeviceShard(removed, func(ds *deviceShard, d string) {
		names := ds.groups[d]
		i := slices.Index(names, g.name)
		last := len(names) - 1
		names[i] = names[last]
		names[last] = "" // let the name go if it was the last reference
		names = names[:last]
		if len(names) == 0 {
			delete(ds.groups, d)
			return
		}
		// d is the caller's string: store an owned copy (see Bind).
		ds.groups[strings.Clone(d)] = names
	})
	return nil
}

// eachDeviceShard calls fn for every device of devices with the device's
// shard locked, locking each shard once. The caller holds a group shard
// lock (see the lock order above).
func (m *Memory) eachDeviceShard(devices []string, fn func(ds *deviceShard, device string)) {
	if len(devices) == 0 {
		return
	}
	// Order the devices by shard with a counting sort: start[i] is where
	// shard i's devices begin in sorted, and start[i+1] where they end.
	shard := make([]uint8, len(devices))
	var start [shardCount + 1]int
	for i, d := range devices {
		shard[i] = uint8(shardIndex(d))
		start[shard[i]+1]++
	}
	for i := 1; i <= shardCount; i++ {
		start[i] += start[i-1]
	}
	next := start
	sorted := make([]string, len(devices))
	for i, d := range devices {
		sorted[next[shard[i]]] = d
		next[shard[i]]++
	}
	for i := range m.devices {
		if start[i] == start[i+1] {
			continue
		}
		ds := &m.devices[i]
		ds.mu.Lock()
		for _, d := range sorted[start[i]:start[i+1]] {
			fn(ds, d)
		}
		ds.mu.Unlock()
	}
}

// GroupSize returns the number of members of group. It never fails.
func (m *Memory) GroupSize(_ context.Context, group string) (int, error) {
	gs := &m.groups[shardIndex(group)]
	gs.mu.RLock()
	n := 0
	if g := gs.groups[group]; g != nil {
		n = len(g.members)
	}
	gs.mu.RUnlock()
	return n, nil
}

// Groups returns the groups device is a member of, in no order, in a new
// slice. It never fails.
func (m *Memory) Groups(_ context.Context, device string) ([]string, error) {
	s := &m.devices[shardIndex(device)]
	s.mu.RLock()
	names := slices.Clone(s.groups[device])
	s.mu.RUnlock()
	return names, nil
}

// Close does nothing: Memory holds nothing but memory. It returns nil.
func (m *Memory) Close() error { return nil }
