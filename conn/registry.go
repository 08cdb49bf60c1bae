package conn

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/longlink/longlink/dispatch/downstream"
)

const regShards = 64

// registry is the node's index of its own logged-in connections: device →
// connection and group → connections. The route layer knows where
// devices are across nodes; this knows which *Conn to hand a push to.
//
// Devices and groups are sharded separately, 64 ways each by FNV-1a.
// Lock order: a device shard, then a group shard; never two of a kind.
type registry struct {
	devices [regShards]deviceShard
	groups  [regShards]groupShard
}

type deviceShard struct {
	mu sync.RWMutex
	m  map[string]*Conn
}

type groupShard struct {
	mu sync.RWMutex
	m  map[string]*members
}

// members is one group's connections here: a dense list of fan-out
// targets, so that a group push takes it instead of walking a map (a
// cache miss per member), and each member's index in it, so that leaving
// is O(1) (the last member takes its place).
//
// A push takes the list itself, not a copy (a copy per push is garbage
// the size of the group, and the GC it paces slows fan-out): the list is
// copy-on-write. Once handed out it is shared, and a leave, the
// only change that writes inside it, first copies it. A join appends
// past the end every holder sees, so it needs no copy.
type members struct {
	list   []downstream.Target
	at     map[*Conn]int
	shared atomic.Bool // list has been handed out (set under the shard's read lock)
}

func (m *members) add(c *Conn) {
	if _, ok := m.at[c]; ok {
		return
	}
	m.at[c] = len(m.list)
	m.list = append(m.list, downstream.Target{Conn: c, ID: c.id})
}

func (m *members) remove(c *Conn) {
	i, ok := m.at[c]
	if !ok {
		return
	}
	if m.shared.Swap(false) {
		m.list = slices.Clone(m.list)
	}
	last := len(m.list) - 1
	m.list[i] = m.list[last]
	m.at[m.list[i].Conn.(*Conn)] = i
	m.list[last] = downstream.Target{}
	m.list = m.list[:last]
	delete(m.at, c)
}

func (r *registry) init() {
	for i := range r.devices {
		r.devices[i].m = make(map[string]*Conn)
		r.groups[i].m = make(map[string]*members)
	}
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

func (r *registry) device(d string) *deviceShard { return &r.devices[fnv32(d)%regShards] }
func (r *registry) group(g string) *groupShard   { return &r.groups[fnv32(g)%regShards] }

// put makes c the device's connection and returns the one it replaces;
// ok is false, and nothing changes, when c has closed already.
func (r *registry) put(c *Conn) (prev *Conn, ok bool) {
	s := r.device(c.device)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.State() == StateClosed {
		return nil, false // released already; it must not enter the index
	}
	prev = s.m[c.device]
	s.m[c.device] = c
	return prev, true
}

// lookup returns the device's connection here, or nil.
func (r *registry) lookup(device string) *Conn {
	s := r.device(device)
	s.mu.RLock()
	c := s.m[device]
	s.mu.RUnlock()
	return c
}

// remove drops c from the device index (if it is still the device's
// connection) and from every group it joined.
func (r *registry) remove(c *Conn) {
	s := r.device(c.device)
	s.mu.Lock()
	if s.m[c.device] == c {
		delete(s.m, c.device)
	}
	groups := c.groups
	c.groups = nil
	for _, g := range groups {
		r.leaveLocked(g, c)
	}
	s.mu.Unlock()
}

// join adds c to group; it is a no-op when c is already a member.
func (r *registry) join(group string, c *Conn) {
	s := r.device(c.device)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.State() >= StateClosing {
		return // kicked or released: it must not re-enter an index
	}
	for _, g := range c.groups {
		if g == group {
			return
		}
	}
	c.groups = append(c.groups, group)
	gs := r.group(group)
	gs.mu.Lock()
	m := gs.m[group]
	if m == nil {
		m = &members{at: make(map[*Conn]int)}
		gs.m[group] = m
	}
	m.add(c)
	gs.mu.Unlock()
}

// leave removes c from group.
func (r *registry) leave(group string, c *Conn) {
	s := r.device(c.device)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, g := range c.groups {
		if g == group {
			c.groups = append(c.groups[:i], c.groups[i+1:]...)
			r.leaveLocked(group, c)
			return
		}
	}
}

// leaveLocked removes c from group's index; the device shard is held.
func (r *registry) leaveLocked(group string, c *Conn) {
	gs := r.group(group)
	gs.mu.Lock()
	if m := gs.m[group]; m != nil {
		m.remove(c)
		if len(m.list) == 0 {
			delete(gs.m, group)
		}
	}
	gs.mu.Unlock()
}

// members returns group's connections here. The list is shared with the
// registry and must not be changed; it is capped, so an append copies.
func (r *registry) members(group string) []downstream.Target {
	gs := r.group(group)
	gs.mu.RLock()
	defer gs.mu.RUnlock()
	m := gs.m[group]
	if m == nil {
		return nil
	}
	m.shared.Store(true)
	return slices.Clip(m.list)
}

// all appends every logged-in connection here to dst.
func (r *registry) all(dst []downstream.Target) []downstream.Target {
	for i := range r.devices {
		s := &r.devices[i]
		s.mu.RLock()
		for _, c := range s.m {
			dst = append(dst, downstream.Target{Conn: c, ID: c.id})
		}
		s.mu.RUnlock()
	}
	return dst
}
