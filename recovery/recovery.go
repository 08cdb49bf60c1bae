// Package recovery keeps, per device, the PUSH seq counter and the last
// pushes, so a device that reconnects with LOGIN meta resume=<seq> gets
// what it missed, in order, and is told honestly when something is gone.
//
// An Entry exists only for a device that has received a push (an idle
// device costs nothing here). It lives while a connection of the device
// is attached and for the store's TTL after the last one detaches; past
// that it is swept, and the device's seq restarts at 1 (docs/protocol.md,
// Recovery). At most Size pushes are kept per device; pushes the client
// acknowledged with PUSH_ACK are dropped early.
//
// The frames kept are the shared, immutable push encodings of package
// dispatch/downstream: a group push retained by ten thousand devices is
// one allocation, each ring slot holding a reference and its seq.
//
// # Several nodes
//
// With a Shared store (Share; Redis in production, see NewRedis) the hot
// path stays the same: a connected device's seq and ring live in memory on
// its node, and delivering a push costs no I/O, except a durable push's
// batched journal write (ShareOptions.Durable, journal.go). Otherwise only
// three moments touch the shared store:
//
//   - the device's last connection here detaches: Detach saves the state
//     to the shared store (it expires there after the TTL) and forgets it
//     here;
//   - a push for a device connected nowhere: Keep (or Offline, in the
//     background) appends it to the shared state, if the device has one;
//   - a login: Attach takes the shared state over before the node answers
//     resume, so the device resumes on whichever node it reaches.
//
// If the shared store cannot be reached the entry stays here, as on a
// single node, and the device resumes fully only on this node.
//
// Concurrency: every method is safe for concurrent use. An Entry has its
// own small lock; the store's 64 shards each have one. Lock order: shard
// lock, then entry lock; never two of either at once. No lock is held
// while the shared store is called.
package recovery

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

const shards = 64

// Store holds every device's recovery Entry.
type Store struct {
	size   int
	ttl    time.Duration
	shards [shards]shard

	// With Share: the shared store, its call timeout, the background
	// appends of Offline and their goroutine's lifetime.
	shared  Shared
	timeout time.Duration
	log     *slog.Logger
	appends chan Push
	stop    chan struct{}
	done    chan struct{}
	dropped atomic.Uint64

	// With ShareOptions.Durable: the journal of durable pushes (journal.go).
	durable  Durable
	journal  chan journalOp
	jdone    chan struct{}
	jdropped atomic.Uint64
}

// Shared is where a device's recovery state waits while the device is
// connected to no node. Implementations must be safe for concurrent use;
// every call may block on the network.
type Shared interface {
	// Save stores the state of device, replacing any; it expires after
	// the TTL the implementation was given.
	Save(ctx context.Context, device string, st State) error
	// Take returns the device's stored state and deletes it, in one
	// atomic step: the caller now holds the state.
	Take(ctx context.Context, device string) (st State, ok bool, err error)
	// Append records each push as the next one of its device, if the
	// device has stored state; kept[i] says how pushes[i] went.
	Append(ctx context.Context, pushes []Push) (kept []Kept, err error)
	// Delete drops the device's stored state.
	Delete(ctx context.Context, device string) error
}

// State is a device's seq counter and its kept pushes, oldest first.
type State struct {
	Seq   uint32
	Items []Item
	// Lost says the state was journaled by a node that died: pushes that
	// were not durable may have been given seqs up to and beyond Seq and
	// are gone, so no resume up to Seq can be proven complete.
	Lost bool
}

// Item is one kept push: its seq and its frame (the frame's own seq field
// is not relied on: delivery stamps Seq into a copy).
type Item struct {
	Seq   uint32
	Frame []byte
}

// Push is one push for one device, for Shared.Append.
type Push struct {
	Device string
	Frame  []byte
	// Lost says the device's node died holding it: the push is kept even
	// if the device has no state yet (a durable push, see Durable).
	Lost bool
	// Check: the push is not kept when the device's binding in the route
	// names a live instance, other than Dead: the device logged in again
	// since it was looked up, and its new node may have taken its state
	// already, so the caller routes it anew.
	Check bool
	// Dead, with Check, is the instance of the node that died holding the
	// device ("" for none): a binding it left behind does not count.
	Dead string
	// Unless, when set, is a mark (JournalOp.Mark): the push is not kept
	// if its device's state holds it under that mark already.
	Unless string
}

// Kept is how Append went for one push.
type Kept uint8

const (
	NoState   Kept = iota // not kept: the device has no stored state
	Stored                // kept
	Bound                 // not kept: Check found the device bound to a live instance
	Journaled             // not kept: the state holds it already, under Push.Unless
)

// ShareOptions tune Share. Zero values take the defaults in the comments.
type ShareOptions struct {
	Timeout time.Duration // per call to the shared store; zero means 2s
	Queue   int           // background appends waiting at most; zero means 65536
	Logger  *slog.Logger  // nil: slog.Default()
	// Durable journals the durable pushes of connected devices in the
	// shared store, which must implement Durable (journal.go).
	Durable bool
}

type shard struct {
	mu sync.Mutex
	m  map[string]*Entry
}

// Entry is one device's recovery state.
type Entry struct {
	mu        sync.Mutex
	device    string // the device's id, the entry's key in its shard
	seq       uint32 // the last seq assigned
	acked     uint32 // the highest seq the device acknowledged
	ring      []item // circular, len == capacity once allocated
	start, n  int    // oldest slot and how many are used
	attached  int32  // connections of the device using this entry
	sureFrom  uint32 // after a node died holding the device: only resumes from this seq on are provably complete (0: any)
	offlineAt int64  // unix nanos when attached dropped to 0
	saving    bool   // with Share: Detach is saving the entry to the shared store
}

// item is one kept push: its frame as a pointer and a length, and its
// seq, in 16 bytes instead of the 32 a slice and a seq take. A device's
// ring is allocated whole at its first push, so a group push allocates a
// ring for every member that had none at once: their size is paid in
// the middle of a fan-out, and kept by every device that has received a
// push (docs/architecture.md, "Recovery state per device").
type item struct {
	frame *byte // the frame's first byte; it keeps the whole frame alive
	n     uint32
	seq   uint32
}

func newItem(seq uint32, frame []byte) item {
	return item{frame: unsafe.SliceData(frame), n: uint32(len(frame)), seq: seq}
}

func (it *item) bytes() []byte { return unsafe.Slice(it.frame, it.n) }

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

// Share makes s keep the state of devices connected nowhere in sh, so
// that they can resume on any node (see the package documentation). It
// must be called before s is used; Close stops its background appends.
func (s *Store) Share(sh Shared, opts ShareOptions) {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Queue <= 0 {
		opts.Queue = 1 << 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s.shared, s.timeout, s.log = sh, opts.Timeout, opts.Logger
	s.appends = make(chan Push, opts.Queue)
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.appendLoop()
	if d, ok := sh.(Durable); ok && opts.Durable {
		s.durable = d
		s.journal = make(chan journalOp, opts.Queue)
		s.jdone = make(chan struct{})
		go s.journalLoop()
	}
}

// Close stops the background appends of a shared store, after those
// already queued. It does nothing on a store that is not shared.
func (s *Store) Close() {
	if s.shared == nil {
		return
	}
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	if s.journal != nil {
		<-s.jdone
	}
}

// Dropped counts the background appends dropped because their queue was
// full or the store was closing.
func (s *Store) Dropped() uint64 { return s.dropped.Load() }

// Attach marks a connection of device as using its entry and returns the
// entry, or nil when the device has none (it gets one with its first
// push, through Acquire). An expired entry is dropped, not returned.
//
// With Share, the device's state in the shared store is taken over unless
// a connection here holds it already; this is a network round trip.
func (s *Store) Attach(device string, now time.Time) *Entry { return s.AttachFrom(device, now, 0) }

// AttachFrom is Attach for a client that resumes from resume: with a
// durable store, pushes kept while the device's node was dead are numbered
// after it (Durable).
func (s *Store) AttachFrom(device string, now time.Time, resume uint32) *Entry {
	if s.shared != nil {
		return s.attachShared(device, now, resume)
	}
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
		e = &Entry{device: device}
		sh.m[device] = e
	}
	e.mu.Lock()
	e.attached++
	e.mu.Unlock()
	return e
}

// attachShared is Attach with a shared store.
func (s *Store) attachShared(device string, now time.Time, resume uint32) *Entry {
	sh := s.shard(device)
	// A connection here holds the state, or is saving it: share it.
	sh.mu.Lock()
	if e := sh.m[device]; e != nil {
		e.mu.Lock()
		if e.attached > 0 || e.saving {
			e.attached++
			e.mu.Unlock()
			sh.mu.Unlock()
			return e
		}
		e.mu.Unlock()
	}
	sh.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	var st State
	var ok bool
	var err error
	if s.durable != nil {
		st, ok, err = s.durable.TakeFrom(ctx, device, resume)
	} else {
		st, ok, err = s.shared.Take(ctx, device)
	}
	cancel()
	if err != nil {
		s.log.Warn("recovery: taking the shared state failed; resuming from this node's only", "device", device, "err", err)
	}

	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[device]
	if e != nil {
		e.mu.Lock()
		if e.attached == 0 && !e.saving && e.expired(now, s.ttl) {
			e.mu.Unlock()
			delete(sh.m, device)
			e = nil
		} else {
			// A state kept here (a save that failed) or one attached
			// meanwhile: the higher seq is the more recent.
			if ok && st.Seq > e.seq {
				e.adopt(st, s.size)
			}
			e.attached++
			e.mu.Unlock()
			return e
		}
	}
	if !ok {
		return nil
	}
	e = &Entry{device: device, attached: 1}
	e.adopt(st, s.size)
	sh.m[device] = e
	return e
}

// adopt replaces e's counter and ring with st. e.mu is held (or e is not
// shared yet).
func (e *Entry) adopt(st State, size int) {
	e.seq, e.acked, e.sureFrom = st.Seq, 0, 0
	if st.Lost {
		e.sureFrom = st.Seq + 1
	}
	e.ring, e.start, e.n = nil, 0, 0
	if size <= 0 {
		return
	}
	items := st.Items
	if len(items) > size {
		items = items[len(items)-size:]
	}
	e.ring = make([]item, size)
	for _, it := range items {
		e.ring[e.n] = newItem(it.Seq, it.Frame)
		e.n++
	}
}

// Detach undoes Attach or Acquire when the connection closes; the TTL
// starts when the last connection of the device has detached.
//
// With Share, the last detach saves the entry to the shared store and
// forgets it here; it returns once the state is saved (or the save failed:
// the entry then stays here, as without sharing).
func (s *Store) Detach(e *Entry, now time.Time) {
	e.mu.Lock()
	e.attached--
	if e.attached > 0 {
		e.mu.Unlock()
		return
	}
	e.offlineAt = now.UnixNano()
	if s.shared == nil || e.saving {
		e.mu.Unlock()
		return
	}
	e.saving = true
	e.mu.Unlock()
	s.save(e)
}

// save writes e to the shared store until what is written is what e holds,
// then forgets e here, unless a connection attached meanwhile.
func (s *Store) save(e *Entry) {
	sh := s.shard(e.device)
	for {
		e.mu.Lock()
		if e.attached > 0 {
			// Back before the state left: it stays here, and a copy saved
			// by an earlier round is stale.
			e.saving = false
			e.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			if err := s.shared.Delete(ctx, e.device); err != nil {
				s.log.Warn("recovery: deleting a stale shared state failed", "device", e.device, "err", err)
			}
			cancel()
			return
		}
		st := e.state()
		e.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		err := s.shared.Save(ctx, e.device, st)
		cancel()

		sh.mu.Lock()
		e.mu.Lock()
		switch {
		case err != nil:
			e.saving = false
			e.mu.Unlock()
			sh.mu.Unlock()
			s.log.Warn("recovery: saving to the shared store failed; the device resumes fully only on this node", "device", e.device, "err", err)
			return
		case e.attached == 0 && e.seq == st.Seq:
			e.saving = false
			if sh.m[e.device] == e {
				delete(sh.m, e.device)
			}
			e.mu.Unlock()
			sh.mu.Unlock()
			return
		}
		// A push was recorded or a connection attached during the save:
		// go round again.
		e.mu.Unlock()
		sh.mu.Unlock()
	}
}

// state copies e's counter and the pushes not acknowledged yet. e.mu is
// held.
func (e *Entry) state() State {
	st := State{Seq: e.seq, Items: make([]Item, 0, e.n)}
	for k := 0; k < e.n; k++ {
		it := e.ring[(e.start+k)%len(e.ring)]
		st.Items = append(st.Items, Item{Seq: it.seq, Frame: it.bytes()})
	}
	return st
}

// Settle waits until no connection of device here holds its state and no
// save of it is under way, so that the shared store has its latest state;
// it returns ctx's error if that takes longer than ctx allows. A node
// calls it before telling another node that the device's previous
// connection here is gone.
func (s *Store) Settle(ctx context.Context, device string) error {
	sh := s.shard(device)
	for {
		sh.mu.Lock()
		busy := false
		if e := sh.m[device]; e != nil {
			e.mu.Lock()
			busy = e.attached > 0 || e.saving
			e.mu.Unlock()
		}
		sh.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Offline records a push for a device that is not connected here, if the
// device still has recovery state, and reports whether it did (the push
// is then recoverable by resume). It never blocks: with Share, a push for
// a device whose state is not here is appended to the shared store in the
// background, and Offline reports false.
func (s *Store) Offline(device string, frame []byte, now time.Time) bool {
	if s.local(device, frame, now) {
		return true
	}
	if s.shared != nil {
		select {
		case <-s.stop:
			s.dropped.Add(1)
		case s.appends <- Push{Device: device, Frame: frame}:
		default:
			s.dropped.Add(1)
		}
	}
	return false
}

// Lost keeps a push that was counted as delivered but reached the
// device's connection after it had closed. Without a shared store it keeps
// the push even when the device has no recovery state yet (its first
// push), since the API already answered "delivered": the push must stay
// recoverable by resume. With Share the state of a device that has left
// this node lives in the shared store, so the push is appended there in
// the background like Offline's (creating state here instead could
// overwrite what the shared store holds); a device that had no state
// anywhere then has nothing to keep it in.
func (s *Store) Lost(device string, frame []byte, now time.Time) {
	if s.shared != nil {
		s.Offline(device, frame, now)
		return
	}
	if s.local(device, frame, now) {
		return
	}
	e := s.Acquire(device)
	e.Record(frame, s.size)
	s.Detach(e, now)
}

// Keep records a push for devices that are not connected here, like
// Offline, but waits for the shared store: when it returns nil, every
// device that has recovery state here or in the shared store has the
// push, except those it returns (back). With a shared store a device is
// back when a connection here holds its state (a login under way, or a
// connection closing) or when its binding in the route names a live
// instance (it logged in on a node that may have taken its state
// already): a push appended then would wait in the shared store, unseen,
// so the caller routes it anew.
func (s *Store) Keep(ctx context.Context, devices []string, frame []byte, now time.Time) (back []string, err error) {
	var rest []Push
	for _, d := range devices {
		if s.shared == nil {
			s.local(d, frame, now)
			continue
		}
		if s.held(d) {
			back = append(back, d)
			continue
		}
		if !s.local(d, frame, now) {
			rest = append(rest, Push{Device: d, Frame: frame, Check: true})
		}
	}
	if len(rest) == 0 {
		return back, nil
	}
	kept, err := s.shared.Append(ctx, rest)
	if err != nil {
		return back, err
	}
	for i, ok := range kept {
		if ok == Bound {
			back = append(back, rest[i].Device)
		}
	}
	return back, nil
}

// held reports whether a connection here holds device's state.
func (s *Store) held(device string) bool {
	sh := s.shard(device)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[device]
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.attached > 0
}

// local records frame in device's entry here, if it has a live one.
func (s *Store) local(device string, frame []byte, now time.Time) bool {
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

// appendLoop sends Offline's pushes to the shared store, in the order
// they came, many per round trip.
func (s *Store) appendLoop() {
	defer close(s.done)
	batch := make([]Push, 0, 256)
	for {
		select {
		case p := <-s.appends:
			s.appendBatch(s.fill(append(batch[:0], p)))
		case <-s.stop:
			for b := s.fill(batch[:0]); len(b) > 0; b = s.fill(batch[:0]) {
				s.appendBatch(b)
			}
			return
		}
	}
}

// fill appends queued pushes to batch, without waiting, up to its
// capacity.
func (s *Store) fill(batch []Push) []Push {
	for len(batch) < cap(batch) {
		select {
		case p := <-s.appends:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

func (s *Store) appendBatch(batch []Push) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if _, err := s.shared.Append(ctx, batch); err != nil {
		s.dropped.Add(uint64(len(batch)))
		s.log.Warn("recovery: appending pushes to the shared store failed", "pushes", len(batch), "err", err)
	}
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
	return e.attached == 0 && !e.saving && now.UnixNano()-e.offlineAt > int64(ttl)
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
	// Wrapped by a compare, not %: a division per delivery showed in
	// profiles of a fan-out.
	i := e.start + e.n
	if i >= len(e.ring) {
		i -= len(e.ring)
	}
	if e.n == len(e.ring) {
		if e.start++; e.start == len(e.ring) {
			e.start = 0
		}
	} else {
		e.n++
	}
	e.ring[i] = newItem(e.seq, frame)
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
		return resume >= e.sureFrom
	}
	complete = e.n > 0 && e.ring[e.start].seq <= resume+1 && resume >= e.sureFrom
	for k := 0; k < e.n; k++ {
		it := e.ring[(e.start+k)%len(e.ring)]
		if it.seq > resume {
			fn(it.seq, it.bytes())
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
