package downstream

import (
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/valyala/bytebufferpool"
)

// Conn is a connection as the task group sees it. Its methods are called
// only from the worker that owns it, except AppendKick.
type Conn interface {
	// ID picks the connection's worker.
	ID() uint64
	// Outbox is the connection's pending output, owned by its worker.
	Outbox() *Outbox
	// AppendFrame appends the transport's encoding of one protocol frame
	// to dst and returns where the frame's own bytes start (for TCP that
	// is the frame itself; WebSocket puts a message header before it).
	AppendFrame(dst, frame []byte) (out []byte, at int)
	// AppendKick appends the KICK frame for status and reason to dst (the
	// frame itself: AppendFrame encodes it for the transport later), or
	// nothing for a connection that sends no KICK. Kick and Cut call it
	// from their caller's goroutine, so it must be safe for concurrent use.
	AppendKick(dst []byte, status codec.Status, reason string) []byte
	// Write writes b to the socket without blocking and returns how much
	// it took; an error means the connection is gone. A transport that
	// transforms bytes (TLS) may take b whole and keep some of its output
	// for later: it reports those bytes in Backlog, and Write(nil) retries
	// them.
	Write(b []byte) (int, error)
	// Backlog is how many bytes the transport itself still holds for the
	// socket (0 for TCP and WebSocket).
	Backlog() int
	// StampPush gives the push just copied into frame (an encoded PUSH)
	// the device's next seq and records it for recovery.
	StampPush(frame []byte, p *Push)
	// Undelivered receives a push that reached the worker after the
	// connection was gone, so it can be kept for the device's resume.
	Undelivered(p *Push)
	// FrameLen is the length of the unit at the start of b as this
	// transport wrote it into an outbox: one frame as AppendFrame encoded
	// it, or bytes queued with SendRaw; 0 when b does not start with a
	// whole one. The worker uses it to find where a frame that the socket
	// took only part of ends, so a cut-off connection still gets its KICK
	// after that frame.
	FrameLen(b []byte) int
	// Cut tells the connection the group has decided to close it with
	// status (a slow consumer): its KICK is queued, nothing else will be
	// written, and pushes that come now are handed to Undelivered.
	Cut(status codec.Status)
	// Terminate closes the socket. status is why (metrics, logs); any
	// KICK has already been written or attempted. writeErr is the error of
	// the write that failed and ended the connection, nil when none did.
	Terminate(status codec.Status, writeErr error)
	// WatchWritable asks for one report when the socket can take bytes
	// again: it calls ArmWritable(ep, fd, key) with the socket's
	// descriptor, holding off a concurrent close so that the number
	// cannot be reused meanwhile. It fails once the socket is closed.
	WatchWritable(ep int, key uint64) error
}

// Push is one downstream message, encoded once and shared read-only by
// every worker and every recovery buffer that holds it.
type Push struct {
	// Frame is a whole PUSH frame whose seq is 0; each delivery copies it
	// and stamps its own seq.
	Frame []byte
	// Durable, when set, counts the deliveries of a durable push: each
	// Push of it to a connection is one Add by the caller, and one Done by
	// the connection once the push is journaled (StampPush) or handed back
	// (Undelivered). The group itself never touches it.
	Durable *sync.WaitGroup
	// Mark, of a durable push another node sent here, is journaled with
	// each delivery (recovery.JournalOp.Mark): if this node dies before
	// it answers, the sender can tell whether it got this far.
	Mark string
}

// Target is a connection a fan-out goes to, with its ID carried beside it:
// each worker picks its own connections out of a shared list by ID without
// touching the others, which in a large group would each be a cache miss.
type Target struct {
	Conn Conn
	ID   uint64 // Conn.ID()
}

// Outbox is a connection's output state. The zero value is ready; it
// holds a buffer only while bytes are pending.
type Outbox struct {
	buf    *bytebufferpool.ByteBuffer // bytes not yet written; nil when none
	seen   uint64                     // the number of the last fan-out run push copied in (run.go)
	staged atomic.Int32               // bytes queued by Send and SendRaw that the worker has not taken yet (producers add, the worker subtracts)
	cut    int32                      // leading bytes of buf that end a frame the socket took part of; -1 when unknown
	since  uint32                     // when the socket first refused bytes (Group.millis); 0 when not blocked
	status codec.Status               // why the connection closes once outboxClosing is set
	flags  uint8                      // outbox* bits
}

const (
	outboxDirty   = 1 << iota // in the worker's flush list
	outboxBlocked             // the socket refused bytes (counted in Stats.Pending)
	outboxDone                // terminated: drop everything
	outboxClosing             // terminate once the pending bytes are written
	outboxListed              // on the worker's blocked list
	outboxArmed               // a writable report is asked for and has not come
)

// Options sizes the group. Zero values take the defaults.
type Options struct {
	Workers int // writer goroutines; zero means 1
	// MaxPending bounds, per connection, the bytes written to its outbox
	// and not yet taken by the socket, and separately the bytes Send and
	// SendRaw queued that the worker has not taken yet: past either the
	// connection is a slow consumer. Zero means 1 MiB.
	MaxPending int
	// Retry is how often blocked sockets are tried again even though the
	// kernel has not reported them writable; it is also when the write
	// timeout is checked. Zero means 1s.
	Retry time.Duration
	// WriteTimeout is how long a socket may refuse all bytes before the
	// connection is kicked as a slow consumer, and how long a connection
	// that was cut off is given to take its KICK; zero means 10s.
	WriteTimeout time.Duration
	// MaxQueue bounds the deliveries one worker holds unwritten: its
	// queued tasks (a PushMany counts its share of the list, the others
	// one each) and the pushes its fan-out run holds until they have
	// reached every member. Push and PushMany wait while it is exceeded,
	// so a push API caller that outruns the sockets is slowed down
	// instead of growing memory. Zero means DefaultMaxQueue.
	MaxQueue int
}

// DefaultMaxQueue is MaxQueue's default: enough pushes to a large group in
// flight per writer for each write to carry many frames, and still a
// fraction of a second of a writer's work (docs/configuration.md,
// -down-queue).
const DefaultMaxQueue = 1 << 20

// DefaultWriteTimeout is Options.WriteTimeout's default.
const DefaultWriteTimeout = 10 * time.Second

// Group is the downstream task group.
type Group struct {
	start   time.Time // for millis
	opts    Options
	workers []*worker
	wg      sync.WaitGroup
	wr      *writable
}

type taskKind uint8

const (
	taskBytes  taskKind = iota // one frame at staging[off:off+n]
	taskRaw                    // transport bytes at staging[off:off+n], sent as they are
	taskPush                   // push
	taskFanout                 // push to the worker's connections of lists[off]
	taskKick                   // write a KICK, then terminate
	taskClose                  // terminate once pending bytes are written
	taskCut                    // drop what is pending, write a KICK, then terminate
)

type task struct {
	c      Conn
	push   *Push
	off, n int32
	kind   taskKind
	status codec.Status
}

type worker struct {
	g       *Group
	idx     uint64 // this worker's index: its connections have ID()%workers == idx
	mu      sync.Mutex
	roomy   *sync.Cond // signalled when the worker takes its queue or the run's pushes leave
	tasks   []task     // guarded by mu
	queued  int        // guarded by mu: deliveries the tasks and the fan-out run hold (a fan-out counts its share)
	staging []byte     // guarded by mu: encoded frames of taskBytes
	lists   [][]Target // guarded by mu: the connection lists of taskFanout
	ready   []uint64   // guarded by mu: IDs of blocked connections the kernel reported writable
	wake    chan struct{}
	stop    chan struct{}
	// queuedFan is the part of queued that is fan-out tasks, and
	// heldCounted the part that is the run's held pushes (both guarded by
	// mu; only the worker changes heldCounted). A take counts its fan-outs
	// as held until it has applied them (syncHeld), so producers never see
	// the queue emptier than it is.
	queuedFan, heldCounted int

	// Worker-owned.
	stopping     bool // guarded by mu: Close began; nobody waits for room
	spare        []task
	spareStaging []byte
	spareLists   [][]Target
	spareReady   []uint64
	dirty        []Conn
	blocked      map[uint64]Conn // connections whose socket refused bytes, by ID
	// spareBufs are emptied outbox buffers kept for reuse, up to
	// maxSpareBytes of capacity (spareBytes). bytebufferpool is a
	// sync.Pool, which every GC empties: in a fan-out, which runs several
	// GCs, each connection's buffer would be allocated and grown again, and
	// that garbage would pace the GC.
	spareBufs  []*bytebufferpool.ByteBuffer
	spareBytes int
	round      counts // this take's counts, published when it ends
	fan        fanRun // group pushes held for a connection-major walk (run.go)

	stats Stats
}

// Stats are a worker's counters; Group.Stats sums them.
type Stats struct {
	FramesOut     atomic.Uint64
	BytesOut      atomic.Uint64
	Writes        atomic.Uint64 // write system calls
	Deliveries    atomic.Uint64 // pushes copied into an outbox
	Undelivered   atomic.Uint64 // pushes that found their connection gone
	SlowConsumers atomic.Uint64
	Panics        atomic.Uint64 // panics recovered by the worker
	Pending       atomic.Int64  // connections with unwritten bytes now
	_             [64]byte      // keep workers' counters on separate cache lines
}

// New starts the group's workers and the watch on blocked sockets.
func New(opts Options) (*Group, error) {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 1 << 20
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = DefaultMaxQueue
	}
	wr, err := newWritable()
	if err != nil {
		return nil, err
	}
	g := &Group{start: time.Now(), opts: opts, workers: make([]*worker, opts.Workers), wr: wr}
	for i := range g.workers {
		w := &worker{g: g, idx: uint64(i), wake: make(chan struct{}, 1), stop: make(chan struct{}), blocked: map[uint64]Conn{}}
		w.roomy = sync.NewCond(&w.mu)
		g.workers[i] = w
		g.wg.Add(1)
		go w.run()
	}
	go wr.run(g)
	return g, nil
}

// millis is the time in milliseconds since the group started, never 0
// (an outbox's since uses 0 for "not blocked"). It wraps after 49 days;
// the differences taken of it span seconds.
func (g *Group) millis() uint32 {
	if ms := uint32(time.Since(g.start) / time.Millisecond); ms != 0 {
		return ms
	}
	return 1
}

func (g *Group) worker(c Conn) *worker { return g.workers[c.ID()%uint64(len(g.workers))] }

// owns reports whether the connection with this ID is w's to write.
func (w *worker) owns(id uint64) bool { return id%uint64(len(w.g.workers)) == w.idx }

// QueueCap is how many deliveries the workers hold in all before push
// producers wait (MaxQueue per worker).
func (g *Group) QueueCap() int { return g.opts.MaxQueue * len(g.workers) }

// Workers is the number of writer goroutines.
func (g *Group) Workers() int { return len(g.workers) }

// Send queues an encoded frame for c. frame is copied; the caller may
// reuse it when Send returns. It reports false, and queues nothing, when
// c already has MaxPending bytes queued that its worker has not taken:
// the caller then cuts c off (Cut) as a slow consumer. A client that
// makes the node answer faster than it, or its worker, drains the
// answers is held to that bound instead of growing the staging buffer.
func (g *Group) Send(c Conn, frame []byte) bool { return g.enqueue(c, taskBytes, frame) }

// SendRaw queues bytes of the transport itself (a WebSocket handshake
// answer or control frame) for c, written as they are. It reports false
// as Send does.
func (g *Group) SendRaw(c Conn, b []byte) bool { return g.enqueue(c, taskRaw, b) }

// enqueue copies b into c's worker's staging buffer as a task of kind,
// unless c is over its staged bound.
func (g *Group) enqueue(c Conn, kind taskKind, b []byte) bool {
	ob := c.Outbox()
	if int(ob.staged.Add(int32(len(b)))) > g.opts.MaxPending {
		ob.staged.Add(-int32(len(b)))
		return false
	}
	w := g.worker(c)
	w.mu.Lock()
	w.stage(c, kind, b)
	w.mu.Unlock()
	w.signal()
	return true
}

// stage copies b into the staging buffer as a task of kind for c; w.mu
// is held.
func (w *worker) stage(c Conn, kind taskKind, b []byte) {
	off := len(w.staging)
	w.staging = append(w.staging, b...)
	w.tasks = append(w.tasks, task{c: c, kind: kind, off: int32(off), n: int32(len(b))})
	w.queued++
}

// SendFirst queues frames for c, in order, and runs publish while c's
// worker is locked. Whoever finds c through what publish makes it
// reachable by (the registry, at login) queues for c after frames, and
// the worker writes none of frames before publish has returned: a client
// that has read the first of them is reachable already. publish must not
// queue anything on this group.
func (g *Group) SendFirst(c Conn, publish func(), frames ...[]byte) {
	w := g.worker(c)
	w.mu.Lock()
	for _, f := range frames {
		w.stage(c, taskBytes, f)
	}
	publish()
	w.mu.Unlock()
	w.signal()
}

// Push queues p for c, waiting while c's worker is over MaxQueue.
func (g *Group) Push(c Conn, p *Push) {
	w := g.worker(c)
	w.mu.Lock()
	w.tasks = append(w.tasks, task{c: c, kind: taskPush, push: p})
	w.queued++
	w.waitRoom()
	w.mu.Unlock()
	w.signal()
}

// waitRoom waits, with w.mu held, until the worker's queue is back under
// MaxQueue or the group is closing.
func (w *worker) waitRoom() {
	for w.queued > w.g.opts.MaxQueue && !w.stopping {
		w.signal()
		w.roomy.Wait()
	}
}

// PushMany queues p for every connection of ts. Each worker is handed ts
// whole, as one task, and picks out its own connections by ID when it
// applies it: neither the caller (a push API call) nor a worker touches a
// connection that is not its to write: sorting a large group by worker in
// the caller would touch every member, a cache miss each, per push. The
// workers keep ts until they have applied it: the caller must not change
// it afterwards.
func (g *Group) PushMany(ts []Target, p *Push) {
	share := g.share(len(ts))
	for _, w := range g.workers {
		w.mu.Lock()
		w.tasks = append(w.tasks, task{kind: taskFanout, push: p, off: int32(len(w.lists))})
		w.lists = append(w.lists, ts)
		w.queued += share
		w.queuedFan += share
		w.waitRoom()
		w.mu.Unlock()
		w.signal()
	}
}

// share is the deliveries a fan-out to n connections counts for in each
// worker's MaxQueue.
func (g *Group) share(n int) int { return (n + len(g.workers) - 1) / len(g.workers) }

// Kick writes a KICK with status and reason after everything already
// queued for c, then closes the connection.
func (g *Group) Kick(c Conn, status codec.Status, reason string) {
	w := g.worker(c)
	w.mu.Lock()
	off := len(w.staging)
	w.staging = c.AppendKick(w.staging, status, reason)
	w.tasks = append(w.tasks, task{c: c, kind: taskKick, status: status, off: int32(off), n: int32(len(w.staging) - off)})
	w.queued++
	w.mu.Unlock()
	w.signal()
}

// Cut cuts c off: what is queued for it and not yet on the wire is
// dropped (except the rest of a frame the socket took part of), a KICK
// with status and reason is written as soon as the socket takes it, and
// then c is closed, or after WriteTimeout if the socket never takes it.
// The caller has already moved c to closing.
func (g *Group) Cut(c Conn, status codec.Status, reason string) {
	w := g.worker(c)
	w.mu.Lock()
	off := len(w.staging)
	w.staging = c.AppendKick(w.staging, status, reason)
	w.tasks = append(w.tasks, task{c: c, kind: taskCut, status: status, off: int32(off), n: int32(len(w.staging) - off)})
	w.queued++
	w.mu.Unlock()
	w.signal()
}

// CloseAfterFlush closes c once everything queued for it is written,
// without a KICK (LOGIN_ACK with an error already says why).
func (g *Group) CloseAfterFlush(c Conn, status codec.Status) {
	w := g.worker(c)
	w.mu.Lock()
	w.tasks = append(w.tasks, task{c: c, kind: taskClose, status: status})
	w.queued++
	w.mu.Unlock()
	w.signal()
}

// Stats sums the workers' counters.
func (g *Group) Stats() (s Snapshot) {
	for _, w := range g.workers {
		s.FramesOut += w.stats.FramesOut.Load()
		s.BytesOut += w.stats.BytesOut.Load()
		s.Writes += w.stats.Writes.Load()
		s.Deliveries += w.stats.Deliveries.Load()
		s.Undelivered += w.stats.Undelivered.Load()
		s.SlowConsumers += w.stats.SlowConsumers.Load()
		s.Panics += w.stats.Panics.Load()
		w.mu.Lock()
		s.Queued += int64(w.queued) // held unwritten, as MaxQueue counts them
		w.mu.Unlock()
		s.Pending += w.stats.Pending.Load()
	}
	return s
}

// counts are the frames and deliveries of one take, kept in plain fields
// so that a delivery costs no atomic operation; take publishes them
// before it returns, so the stats never lag what a client has received.
type counts struct{ frames, deliveries uint64 }

// publish adds the counts of a take to the worker's stats.
func (w *worker) publish() {
	r := &w.round
	w.stats.FramesOut.Add(r.frames)
	w.stats.Deliveries.Add(r.deliveries)
	*r = counts{}
}

// Snapshot is Stats summed over the workers, as plain numbers.
type Snapshot struct {
	FramesOut, BytesOut, Writes, Deliveries, Undelivered, SlowConsumers, Panics uint64
	Queued, Pending                                                             int64
}

// Close stops the workers after they have written what was queued.
func (g *Group) Close() {
	for _, w := range g.workers {
		w.mu.Lock()
		w.stopping = true
		w.roomy.Broadcast()
		w.mu.Unlock()
		close(w.stop)
	}
	g.wg.Wait()
	g.wr.close()
}

func (w *worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) run() {
	defer w.g.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	armed := false
	for {
		sweep := false
		select {
		case <-w.wake:
		case <-retry.C:
			armed, sweep = false, true
		case <-w.stop:
			w.safeDrain(false)
			return
		}
		w.safeDrain(sweep)
		if len(w.blocked) > 0 && !armed {
			retry.Reset(w.g.opts.Retry)
			armed = true
		}
	}
}

// safeDrain is drain that survives a panic (a bug in a connection's
// transport, say): it is logged with its stack and counted, the round's
// remaining work is dropped, and the worker goes on serving its other
// connections instead of taking the node down.
func (w *worker) safeDrain(sweep bool) {
	defer func() {
		if r := recover(); r != nil {
			w.stats.Panics.Add(1)
			slog.Error("downstream worker recovered from a panic", "panic", r, "stack", string(debug.Stack()))
			clear(w.dirty)
			w.dirty = w.dirty[:0]
			w.fan.reset()
			w.syncHeld()
		}
	}()
	w.drain(sweep)
}

// drain processes every queued task, writes every touched connection,
// walks the fan-out run until it holds no push, and tries again the
// blocked connections the kernel reported writable or, with sweep, every
// blocked connection.
func (w *worker) drain(sweep bool) {
	for {
		took := w.take()
		w.flushDirty()
		w.walk(flushSlice)
		w.retryWritable()
		if !took && !w.fan.pending() {
			break
		}
	}
	if sweep {
		for _, c := range w.blocked {
			w.retry(c)
		}
	}
}

// flushDirty writes the touched connections in order. Every flushSlice
// connections, tasks queued meanwhile are taken too: the connections not
// written yet then carry them in the same write. Under load this is what
// puts several frames in one write system call, with no delay added: the
// busier the worker, the more each write carries.
func (w *worker) flushDirty() {
	for i := 0; i < len(w.dirty); i++ {
		c := w.dirty[i]
		ob := c.Outbox()
		w.flush(c)
		w.settle(c, ob)
		if i%flushSlice == flushSlice-1 {
			w.take()
		}
	}
	clear(w.dirty)
	w.dirty = w.dirty[:0]
}

// flushSlice is how many connections a worker writes between two looks
// at its queue.
const flushSlice = 256

// take applies every queued task to its connection's outbox, adding the
// connections it touches to the dirty list, and reports whether there
// were any.
func (w *worker) take() bool {
	w.mu.Lock()
	tasks, staging, lists := w.tasks, w.staging, w.lists
	w.tasks, w.staging, w.lists = w.spare[:0], w.spareStaging[:0], w.spareLists[:0]
	w.heldCounted += w.queuedFan // until syncHeld: the fan-outs may join the run
	w.queued, w.queuedFan = w.heldCounted, 0
	w.roomy.Broadcast()
	w.mu.Unlock()
	if len(tasks) == 0 {
		w.spare, w.spareStaging, w.spareLists = tasks, staging, lists
		return false
	}
	for i := range tasks {
		t := &tasks[i]
		if t.kind == taskFanout {
			w.fanout(t.push, lists[t.off])
		} else {
			w.apply(t, staging)
		}
		tasks[i] = task{}
	}
	clear(lists)
	w.spare, w.spareStaging, w.spareLists = tasks[:0], staging[:0], lists[:0]
	w.syncHeld()
	w.publish()
	return true
}

// apply applies one task to its connection's outbox, after the pushes of
// the fan-out run the connection has not had, and puts the connection on
// the dirty list.
func (w *worker) apply(t *task, staging []byte) {
	ob := t.c.Outbox()
	if t.kind == taskBytes || t.kind == taskRaw {
		ob.staged.Add(-t.n)
	}
	w.catchUp(t.c, ob)
	if t.kind == taskPush {
		w.appendPush(t.c, ob, t.push)
		w.dirtied(t.c, ob)
		return
	}
	// Nothing follows a KICK (or the answer to a failed login) on the
	// wire: the client stops reading there.
	if ob.flags&(outboxDone|outboxClosing) != 0 {
		return
	}
	if t.kind == taskCut {
		w.cutOff(t.c, ob, staging[t.off:t.off+t.n], t.status)
		return
	}
	if ob.buf == nil {
		ob.buf = w.getBuf()
	}
	switch t.kind {
	case taskBytes:
		ob.buf.B, _ = t.c.AppendFrame(ob.buf.B, staging[t.off:t.off+t.n])
	case taskRaw:
		ob.buf.B = append(ob.buf.B, staging[t.off:t.off+t.n]...)
	case taskKick:
		if t.n > 0 {
			ob.buf.B, _ = t.c.AppendFrame(ob.buf.B, staging[t.off:t.off+t.n])
		}
		ob.flags |= outboxClosing
		ob.status = t.status
	case taskClose:
		ob.flags |= outboxClosing
		ob.status = t.status
	}
	if t.kind != taskClose {
		w.round.frames++
	}
	w.dirtied(t.c, ob)
}

// appendPush copies p into c's outbox and stamps the copy. A push that
// arrives after a KICK (or the answer to a failed login) is handed back
// for the device's resume.
func (w *worker) appendPush(c Conn, ob *Outbox, p *Push) {
	if ob.flags&(outboxDone|outboxClosing) != 0 {
		w.stats.Undelivered.Add(1)
		c.Undelivered(p)
		return
	}
	if ob.buf == nil {
		ob.buf = w.getBuf()
	}
	var at int
	if ob.buf.B, at = c.AppendFrame(ob.buf.B, p.Frame); at >= 0 {
		c.StampPush(ob.buf.B[at:at+len(p.Frame)], p)
	}
	w.round.deliveries++
	w.round.frames++
}

// dirtied puts c on the dirty list, once.
func (w *worker) dirtied(c Conn, ob *Outbox) {
	if ob.flags&outboxDirty == 0 {
		ob.flags |= outboxDirty
		w.dirty = append(w.dirty, c)
	}
}

// release hands ob's buffer back to w.
func (ob *Outbox) release(w *worker) {
	if ob.buf != nil {
		w.putBuf(ob.buf)
		ob.buf = nil
	}
}

// maxSpareBytes bounds the buffer capacity a worker keeps for reuse
// (spareBufs). 16 MiB holds the ~1 KiB buffers of 16,000 connections in
// a fan-out; past it, buffers go back to bytebufferpool.
const maxSpareBytes = 16 << 20

// getBuf returns an empty outbox buffer: the worker's own spare first,
// then bytebufferpool's.
func (w *worker) getBuf() *bytebufferpool.ByteBuffer {
	if n := len(w.spareBufs); n > 0 {
		b := w.spareBufs[n-1]
		w.spareBufs[n-1] = nil
		w.spareBufs = w.spareBufs[:n-1]
		w.spareBytes -= cap(b.B)
		return b
	}
	return bytebufferpool.Get()
}

// putBuf keeps b for the worker's next getBuf while the spare list is
// under maxSpareBytes, and otherwise gives it to bytebufferpool.
func (w *worker) putBuf(b *bytebufferpool.ByteBuffer) {
	b.B = b.B[:0]
	if w.spareBytes+cap(b.B) > maxSpareBytes {
		bytebufferpool.Put(b)
		return
	}
	w.spareBufs = append(w.spareBufs, b)
	w.spareBytes += cap(b.B)
}

// flush writes c's pending bytes once. When the socket takes only part
// of them, c is left with outboxBlocked set; the caller keeps it on the
// blocked list.
func (w *worker) flush(c Conn) {
	ob := c.Outbox()
	ob.flags &^= outboxDirty
	if ob.flags&outboxDone != 0 {
		return
	}
	var pending []byte
	if ob.buf != nil {
		pending = ob.buf.B
	}
	if len(pending) > 0 || c.Backlog() > 0 {
		n, err := c.Write(pending)
		w.stats.Writes.Add(1)
		if err != nil {
			w.terminateErr(c, ob, codec.StatusOK, err)
			return
		}
		w.stats.BytesOut.Add(uint64(n))
		if n < len(pending) || c.Backlog() > 0 {
			if n > 0 {
				// Progress: the write timeout counts from here.
				ob.since = 0
				ob.cut = frameRest(c, pending, ob.cut, n)
			}
			if ob.buf != nil {
				ob.buf.B = ob.buf.B[:copy(ob.buf.B, ob.buf.B[n:])]
			}
			w.refused(c, ob)
			return
		}
		ob.cut = 0
	}
	ob.release(w)
	ob.unblock(w)
	if ob.flags&outboxClosing != 0 {
		w.terminate(c, ob, ob.status)
	}
}

// refused handles a socket that did not take all pending bytes: too many
// bytes, or refused for too long, and the connection is a slow consumer.
func (w *worker) refused(c Conn, ob *Outbox) {
	now := w.g.millis()
	if ob.since == 0 {
		ob.since = now
	}
	stuck := time.Duration(now-ob.since)*time.Millisecond > w.g.opts.WriteTimeout
	pending := c.Backlog()
	if ob.buf != nil {
		pending += len(ob.buf.B)
	}
	switch {
	case ob.flags&outboxClosing != 0:
		// Closing already: nothing more is added, so the socket gets
		// the write timeout to take what is left, and no more.
		if stuck {
			w.terminate(c, ob, ob.status)
			return
		}
	case pending > w.g.opts.MaxPending || stuck:
		w.slowConsumer(c, ob)
		return
	}
	if ob.flags&outboxBlocked == 0 {
		ob.flags |= outboxBlocked
		w.stats.Pending.Add(1)
	}
}

// frameRest returns how many bytes at the start of what remains of
// pending, after the socket took n of them, end a frame it took part of
// (0 at a frame boundary, -1 when the boundary cannot be found). cut is
// the same for pending itself: the frames that follow it are whole.
func frameRest(c Conn, pending []byte, cut int32, n int) int32 {
	if cut < 0 {
		return -1
	}
	pos := int(cut)
	for pos < n {
		l := c.FrameLen(pending[pos:])
		if l <= 0 {
			return -1
		}
		pos += l
	}
	return int32(pos - n)
}

func (ob *Outbox) unblock(w *worker) {
	if ob.flags&outboxBlocked != 0 {
		ob.flags &^= outboxBlocked
		w.stats.Pending.Add(-1)
	}
	ob.since = 0
}

// slowConsumer cuts off a connection whose socket fell too far behind.
func (w *worker) slowConsumer(c Conn, ob *Outbox) {
	kick := c.AppendKick(nil, codec.StatusSlowConsumer, "outbound queue overflowed")
	c.Cut(codec.StatusSlowConsumer)
	w.cutOff(c, ob, kick, codec.StatusSlowConsumer)
}

// cutOff drops what is pending for c, keeping only the rest of a frame
// the socket took part of, queues kick (an encoded KICK frame, or
// nothing) and closes c once the socket has taken it, or after
// WriteTimeout. The pushes dropped were recorded for resume when they
// were stamped. When the frame boundary is unknown, a KICK would corrupt
// the stream: c is closed at once.
func (w *worker) cutOff(c Conn, ob *Outbox, kick []byte, status codec.Status) {
	w.stats.SlowConsumers.Add(1)
	if ob.cut < 0 {
		w.terminate(c, ob, status)
		return
	}
	if ob.buf == nil {
		ob.buf = w.getBuf()
	}
	ob.buf.B = ob.buf.B[:ob.cut]
	if len(kick) > 0 {
		ob.buf.B, _ = c.AppendFrame(ob.buf.B, kick)
		w.round.frames++
	}
	ob.flags |= outboxClosing
	ob.status = status
	ob.since = w.g.millis()
	w.dirtied(c, ob)
}

// terminate drops c's output and closes it with status.
func (w *worker) terminate(c Conn, ob *Outbox, status codec.Status) {
	w.terminateErr(c, ob, status, nil)
}

// terminateErr is terminate after a write that failed with err.
func (w *worker) terminateErr(c Conn, ob *Outbox, status codec.Status, err error) {
	ob.release(w)
	ob.unblock(w)
	if ob.flags&outboxListed != 0 {
		delete(w.blocked, c.ID())
	}
	ob.flags = outboxDone
	c.Terminate(status, err)
}

// writable queues the ID of a blocked connection whose socket the kernel
// reported writable (writable.run).
func (w *worker) writable(id uint64) {
	w.mu.Lock()
	w.ready = append(w.ready, id)
	w.mu.Unlock()
	w.signal()
}

// retryWritable tries again the blocked connections reported writable.
// An ID may be stale (the connection unblocked or closed since): it is
// no longer on the blocked list then.
func (w *worker) retryWritable() {
	w.mu.Lock()
	ids := w.ready
	w.ready = w.spareReady[:0]
	w.mu.Unlock()
	for _, id := range ids {
		if c := w.blocked[id]; c != nil {
			c.Outbox().flags &^= outboxArmed
			w.retry(c)
		}
	}
	w.spareReady = ids[:0]
}

// retry flushes a blocked connection again.
func (w *worker) retry(c Conn) {
	ob := c.Outbox()
	if ob.flags&outboxBlocked != 0 {
		w.flush(c)
	}
	w.settle(c, ob)
}

// settle keeps the blocked list in step with c after a flush: a
// connection whose socket refused bytes is on it, with a writable report
// asked for; one that is done or unblocked is not. If the report cannot
// be asked for (the socket is closing), the retry timer finds the
// connection.
func (w *worker) settle(c Conn, ob *Outbox) {
	if ob.flags&outboxBlocked == 0 {
		if ob.flags&outboxListed != 0 {
			ob.flags &^= outboxListed | outboxArmed
			delete(w.blocked, c.ID())
		}
		return
	}
	if ob.flags&outboxListed == 0 {
		ob.flags |= outboxListed
		w.blocked[c.ID()] = c
	}
	if ob.flags&outboxArmed == 0 && c.WatchWritable(w.g.wr.ep, c.ID()) == nil {
		ob.flags |= outboxArmed
	}
}
