package downstream

// A worker's fan-out run: group pushes to one target list, held and
// delivered connection by connection.
//
// Copying each push into every outbox as it arrives (push-major) touches
// each member's outbox, buffer and recovery entry once per push, and in a
// large group those are cache misses; each member is touched again when
// it is written (docs/architecture.md, "A group push is written member by
// member"). A run turns that around. Pushes to the list the run walks are
// only queued (join); a cursor walks the list and, at each of the worker's
// members, copies every push the member has not had yet and writes them
// at once (visit). A member is touched once per write, however many
// pushes the write carries, and the write comes while its lines are
// still in cache.
//
// Order per connection is kept by numbers. Every push of a run gets the
// next number of a worker-wide counter, and each outbox remembers the
// number of the last run push it got (Outbox.seen). When a run starts,
// every member of the worker is marked with a fresh number (base), so
// that seen >= base tells a member from a connection that is not in the
// list. Any other task for a member (a unicast push, a pong, a KICK, a
// fan-out to another list) first catches the member up on the run's
// pushes it has not had (catchUp): everything queued before the task is
// in the outbox before the task is.
//
// A push has reached every member once the cursor has gone round the list
// from where the push joined; then it leaves the run. A run whose pushes
// have all left lets go of its list. A fan-out to another list while the
// run holds pushes is applied the push-major way, catching up the
// members it shares with the run as it goes.
//
// A held push counts toward MaxQueue with its share of the list until it
// has reached every member: what bounds the producers is what the worker
// has accepted and not yet written, so a push API caller that outruns the
// sockets waits instead of piling pushes into the run (syncHeld).
type fanRun struct {
	list   []Target  // the target list of the run's pushes; nil when idle
	pushes []runPush // joined and not yet at every member, oldest first, from head
	head   int
	base   uint64 // the number members are marked with when the run starts
	pos    int    // the list position visited next

	// Kept across runs (reset).
	step    uint64 // list positions visited since the worker started
	counter uint64 // numbers the marks and the pushes; never goes back
}

type runPush struct {
	p     *Push
	no    uint64 // consecutive within a run
	start uint64 // step when the push joined: it has reached everyone at start+len(list)
}

// pending reports whether the run holds pushes not yet at every member.
func (r *fanRun) pending() bool { return r.head < len(r.pushes) }

// held is the deliveries the run's pushes count for in MaxQueue, each
// its share of the list as PushMany counted it.
func (w *worker) held() int {
	r := &w.fan
	return (len(r.pushes) - r.head) * w.g.share(len(r.list))
}

// syncHeld brings the worker's queue count up to date with the run's held
// deliveries, waking the producers when they went down. It takes the lock
// only when they changed: once per take that joined pushes, once per walk
// that retired some.
func (w *worker) syncHeld() {
	h := w.held()
	if h == w.heldCounted {
		return
	}
	w.mu.Lock()
	w.queued += h - w.heldCounted
	if h < w.heldCounted {
		w.roomy.Broadcast()
	}
	w.heldCounted = h
	w.mu.Unlock()
}

// sameList reports whether a and b are the same list: a group's member
// snapshot is shared by every push until the membership changes.
func sameList(a, b []Target) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// fanout queues p for the worker's connections of ts: it joins the run
// when the run walks ts; starts a run on ts when the run is idle; and is
// copied into every outbox at once otherwise.
func (w *worker) fanout(p *Push, ts []Target) {
	r := &w.fan
	if r.list != nil && sameList(r.list, ts) {
		w.join(p)
		return
	}
	if r.pending() {
		w.applyFanout(p, ts)
		return
	}
	w.start(ts)
	w.join(p)
}

// start makes ts the run's list and marks the worker's connections of ts
// as its members.
func (w *worker) start(ts []Target) {
	r := &w.fan
	r.counter++
	r.list, r.base, r.pos = ts, r.counter, 0
	r.pushes, r.head = r.pushes[:0], 0
	for i := range ts {
		if w.owns(ts[i].ID) {
			ts[i].Conn.Outbox().seen = r.base
		}
	}
}

// join queues p in the run: the cursor's next lap takes it to every member.
// The pushes that left are dropped from the front of the queue once they
// are half of it, so a run that never goes idle keeps a queue the size of
// one lap's pushes.
func (w *worker) join(p *Push) {
	r := &w.fan
	if r.head > 0 && r.head >= len(r.pushes)/2 {
		n := copy(r.pushes, r.pushes[r.head:])
		clear(r.pushes[n:])
		r.pushes, r.head = r.pushes[:n], 0
	}
	r.counter++
	r.pushes = append(r.pushes, runPush{p: p, no: r.counter, start: r.step})
}

// applyFanout copies p into the outbox of each of the worker's connections
// of ts, push-major.
func (w *worker) applyFanout(p *Push, ts []Target) {
	one := task{kind: taskPush, push: p}
	for i := range ts {
		if w.owns(ts[i].ID) {
			one.c = ts[i].Conn
			w.apply(&one, nil)
		}
	}
}

// catchUp copies into ob the run's pushes that c, a member, has not had,
// and reports whether there were any. It does nothing for a connection
// that is not a member.
func (w *worker) catchUp(c Conn, ob *Outbox) bool {
	r := &w.fan
	if ob.seen < r.base || !r.pending() {
		return false
	}
	last := r.pushes[len(r.pushes)-1].no
	if ob.seen >= last {
		return false
	}
	i := r.head
	if first := r.pushes[i].no; ob.seen >= first {
		i += int(ob.seen + 1 - first)
	}
	for _, rp := range r.pushes[i:] {
		w.appendPush(c, ob, rp.p)
	}
	ob.seen = last
	return true
}

// walk moves the cursor through the list, writing each member it visits
// that has pushes to catch up on, until it has written visits members or
// the run has no pushes left. A visit writes at once: the member's lines
// are in cache now, and the write carries everything queued for it. The
// counts are published before walk returns, as take's are.
func (w *worker) walk(visits int) {
	r := &w.fan
	if !r.pending() {
		return
	}
	for visits > 0 && r.pending() {
		size := uint64(len(r.list))
		for r.pending() && r.step-r.pushes[r.head].start >= size {
			r.pushes[r.head] = runPush{}
			r.head++
		}
		if !r.pending() {
			break
		}
		t := r.list[r.pos]
		r.step++
		if r.pos++; r.pos == len(r.list) {
			r.pos = 0
		}
		if !w.owns(t.ID) {
			continue
		}
		ob := t.Conn.Outbox()
		if w.catchUp(t.Conn, ob) {
			w.flush(t.Conn)
			w.settle(t.Conn, ob)
			visits--
		}
	}
	if !r.pending() {
		r.reset()
	}
	w.syncHeld()
	w.publish()
}

// reset lets go of the list and the pushes: the run is idle. Members keep
// their marks; the next run's base is above every number given so far.
// The queue's array is kept for the next run unless a burst made it large.
func (r *fanRun) reset() {
	keep := r.pushes[:0]
	if cap(keep) > maxKeptRunPushes {
		keep = nil
	}
	clear(r.pushes)
	*r = fanRun{pushes: keep, step: r.step, counter: r.counter}
}

// maxKeptRunPushes bounds the queue an idle run keeps (24 bytes each).
const maxKeptRunPushes = 1024
