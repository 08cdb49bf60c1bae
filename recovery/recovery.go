// Package recovery keeps, per device, the PUSH seq counter and the last
// pushes, so a device that reconnects with LOGIN meta resume=<seq> gets
// what it missed, in order, and is told honestly when something is gone.
//
// An Entry exists only for a device that has received a push (an idle
// device costs nothing here). It lives while a connection of the device
// is attached and for the store's TTL after the last one detaches; past
// that it is swept, and the device's seq restarts at 1 (PROTOCOL.md,
// Recovery). At most Size pushes are kept per device; pushes the client
// acknowledged with PUSH_ACK are dropped early.
//
// The frames kept are the shared, immutable push encodings of package
// dispatch/downstream: a group push retained by ten thousand devices is
// one allocation, each ring slot holding a reference and its seq.
//
// Concurrency: every method is safe for concurrent use. An Entry has its
// own small lock; the store's 64 shards each have one. Lock order: shard
// lock, then entry lock; never two of either at once.
package recovery

import (
	"sync"
	"time"
)

const shards = 64

// Store holds every device's recovery Entry.
type Store struct {
	size   int
	ttl    time.Duration
	shards [shards]shard
}

type shard struct {
	mu sync.Mutex
	m  map[string]*Entry
}

// Entry is one device's recovery state.
type Entry struct {
	mu        sync.Mutex
	seq       uint32 // the last seq assigned
	acked     uint32 // the highest seq the device acknowledged
	ring      []item // circular, len == capacity once allocated
	start, n  int    // oldest slot and how many are used
	attached  int32  // connections of the device using this entry
	offlineAt int64  // unix nanos when attached dropped to 0
}

type item struct {
	seq   uint32
	frame []byte
}

// New returns a store keeping size pushes per device for ttl after the
// device's last connection goes away.
func New(size int, ttl time.Duration) *Store {
	s := &Store{size: size, ttl: ttl}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*Entry)
	}
	return s
}

func (s *Store) shard(device string) *shard {
	// FNV-1a, inline so that hashing a key does not allocate.
	h := uint32(2166136261)
	for i := 0; i < len(device); i++ {
		h = (h ^ uint32(device[i])) * 16777619
	}
	return &s.shards[h%shards]
}

// Attach marks a connection of device as using its entry and returns the
// entry, or nil when the device has none (it gets one with its first
// push, through Acquire). An expired entry is dropped, not returned.
func (s *Store) Attach(device string, now time.Time) *Entry {
	sh := s.shard(device)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[device]
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.expired(now, s.ttl) {
		delete(sh.m, device)
		return nil
	}
	e.attached++
	return e
}

// Acquire returns device's entry, creating it, and attaches a connection
// to it. The downstream worker calls it for the first push to a device.
func (s *Store) Acquire(device string) *Entry {
	sh := s.shard(device)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[device]
	if e == nil {
		e = &Entry{}
		sh.m[device] = e
	}
	e.mu.Lock()
	e.attached++
	e.mu.Unlock()
	return e
}

// Detach undoes Attach or Acquire when the connection closes; the TTL
// starts when the last connection of the device has detached.
func (s *Store) Detach(e *Entry, now time.Time) {
	e.mu.Lock()
	e.attached--
	if e.attached == 0 {
		e.offlineAt = now.UnixNano()
	}
	e.mu.Unlock()
}

// Offline records a push for a device that is not connected here, if the
// device still has recovery state, and reports whether it did (the push
// is then recoverable by resume).
func (s *Store) Offline(device string, frame []byte, now time.Time) bool {
	sh := s.shard(device)
	sh.mu.Lock()
	e := sh.m[device]
	if e == nil {
		sh.mu.Unlock()
		return false
	}
	e.mu.Lock()
	if e.expired(now, s.ttl) {
		e.mu.Unlock()
		delete(sh.m, device)
		sh.mu.Unlock()
		return false
	}
	sh.mu.Unlock()
	e.record(frame, s.size)
	e.mu.Unlock()
	return true
}

// Sweep drops every entry whose device has been offline longer than the
// TTL, and returns how many entries remain.
func (s *Store) Sweep(now time.Time) (remaining int) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for dev, e := range sh.m {
			e.mu.Lock()
			if e.expired(now, s.ttl) {
				delete(sh.m, dev)
			}
			e.mu.Unlock()
		}
		remaining += len(sh.m)
		sh.mu.Unlock()
	}
	return remaining
}

func (e *Entry) expired(now time.Time, ttl time.Duration) bool {
	return e.attached == 0 && now.UnixNano()-e.offlineAt > int64(ttl)
}

// Record assigns the device's next seq to a push and keeps it.
func (e *Entry) Record(frame []byte, size int) uint32 {
	e.mu.Lock()
	seq := e.record(frame, size)
	e.mu.Unlock()
	return seq
}

func (e *Entry) record(frame []byte, size int) uint32 {
	e.seq++
	if size <= 0 {
		return e.seq
	}
	if e.ring == nil {
		e.ring = make([]item, size)
	}
	i := (e.start + e.n) % len(e.ring)
	if e.n == len(e.ring) {
		e.start = (e.start + 1) % len(e.ring)
	} else {
		e.n++
	}
	e.ring[i] = item{seq: e.seq, frame: frame}
	return e.seq
}

// Ack drops the kept pushes with seq up to and including seq: the device
// has them. An ack beyond the last seq is ignored.
func (e *Entry) Ack(seq uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if seq > e.seq || seq <= e.acked {
		return
	}
	e.acked = seq
	for e.n > 0 && e.ring[e.start].seq <= seq {
		e.ring[e.start] = item{}
		e.start = (e.start + 1) % len(e.ring)
		e.n--
	}
}

// Since calls fn, in seq order, for every kept push after resume, and
// reports whether that is everything the device missed. It is false when
// a push after resume is no longer kept, or when resume is ahead of the
// device's counter (the counter restarted, so resume refers to pushes
// that are gone). e may be nil: a device with no recovery state missed
// nothing only if it resumes from 0.
func (e *Entry) Since(resume uint32, fn func(seq uint32, frame []byte)) (complete bool) {
	if e == nil {
		return resume == 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if resume > e.seq {
		return false
	}
	if resume == e.seq {
		return true
	}
	complete = e.n > 0 && e.ring[e.start].seq <= resume+1
	for k := 0; k < e.n; k++ {
		it := e.ring[(e.start+k)%len(e.ring)]
		if it.seq > resume {
			fn(it.seq, it.frame)
		}
	}
	return complete
}

// Seq returns the last seq assigned to the device.
func (e *Entry) Seq() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seq
}
