package conn

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
)

const wheelSlots = 512

// wheel is the one timer of the node: a hashed timing wheel holding every
// connection, so that login and idle timeouts cost no timer and no
// goroutine per connection.
//
// Activity never touches the wheel: reading a frame stores the current
// tick in Conn.seen (one atomic store). When a connection's slot comes
// round, the wheel computes its real deadline from seen (or from born,
// before login); a connection that was active is simply moved to the slot
// of its new deadline, one that was not is kicked. Each connection is
// therefore looked at about once per timeout, whatever its traffic.
type wheel struct {
	hub  *Hub
	tick time.Duration
	cur  atomic.Uint32 // ticks since start

	mu    sync.Mutex
	slots [wheelSlots]*Conn // doubly linked lists through Conn.wnext/wprev
	size  int

	stop chan struct{}
	done chan struct{}
}

// newWheel starts a wheel whose tick is a fraction of the shortest
// timeout, between 10ms and 1s.
func newWheel(h *Hub, shortest time.Duration) *wheel {
	tick := min(max(shortest/8, 10*time.Millisecond), time.Second)
	w := &wheel{hub: h, tick: tick, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *wheel) now() uint32 { return w.cur.Load() }

// ticks converts a duration to whole ticks, at least one.
func (w *wheel) ticks(d time.Duration) uint32 {
	return uint32(max(1, (d+w.tick-1)/w.tick))
}

// deadline is the tick at which c expires, given what it has done, at
// tick now and Unix second unix. seen is the tick in progress at the
// time, which may be nearly over, so one more tick keeps a timeout from
// firing early: the kick comes between the timeout and the timeout plus
// one tick. A session's end is a wall-clock time (a token's exp), turned
// into ticks only when it comes before the idle deadline.
func (w *wheel) deadline(c *Conn, now uint32, unix int64) uint32 {
	if c.idle == 0 {
		return c.due // not logged in, or logged in and not settled yet
	}
	d := c.seen.Load() + c.idle + 1
	if c.due != 0 {
		left := time.Duration(int64(c.due)-unix) * time.Second
		if left <= 0 {
			return now
		}
		if d > now && left < time.Duration(d-now)*w.tick {
			d = min(d, now+w.ticks(left)+1)
		}
	}
	return d
}

// sessionOver reports whether c's session has ended at Unix second unix.
func sessionOver(c *Conn, unix int64) bool {
	return c.idle != 0 && c.due != 0 && int64(c.due) <= unix
}

func (w *wheel) add(c *Conn) {
	w.mu.Lock()
	w.insert(c, w.deadline(c, w.now(), time.Now().Unix()))
	w.size++
	w.mu.Unlock()
}

// settle gives c its idle timeout in ticks (at least 1) and its session's
// end (Unix seconds, 0 for never) and moves c to the slot of its new
// deadline. Until it does, a logged-in connection keeps its login
// deadline: c.idle = 0 tells the wheel that c.due is still a tick.
// Login calls it, since a logged-in connection's deadline may come before
// the login deadline it was filed under, and so does REFRESH.
func (w *wheel) settle(c *Conn, idle, due uint32) {
	w.mu.Lock()
	c.idle, c.due = idle, due
	if c.wslot >= 0 {
		w.unlink(c)
		w.insert(c, w.deadline(c, w.now(), time.Now().Unix()))
	}
	w.mu.Unlock()
}

// extend moves c's session end to due (Unix seconds), keeping its idle
// timeout.
func (w *wheel) extend(c *Conn, due uint32) {
	w.mu.Lock()
	idle := c.idle
	w.mu.Unlock()
	w.settle(c, idle, due)
}

func (w *wheel) remove(c *Conn) {
	w.mu.Lock()
	if c.wslot >= 0 {
		w.unlink(c)
		w.size--
	}
	w.mu.Unlock()
}

// insert puts c in the slot of tick at; the lock is held. A deadline
// further than the wheel's span lands in an earlier turn and is simply
// re-inserted when that slot comes round.
func (w *wheel) insert(c *Conn, at uint32) {
	if now := w.cur.Load(); at <= now {
		at = now + 1
	}
	slot := int32(at % wheelSlots)
	c.wslot = slot
	c.wprev = nil
	c.wnext = w.slots[slot]
	if c.wnext != nil {
		c.wnext.wprev = c
	}
	w.slots[slot] = c
}

func (w *wheel) unlink(c *Conn) {
	if c.wprev != nil {
		c.wprev.wnext = c.wnext
	} else {
		w.slots[c.wslot] = c.wnext
	}
	if c.wnext != nil {
		c.wnext.wprev = c.wprev
	}
	c.wnext, c.wprev, c.wslot = nil, nil, -1
}

func (w *wheel) run() {
	defer close(w.done)
	t := time.NewTicker(w.tick)
	defer t.Stop()
	var expired []overdue
	sweepEvery := w.ticks(time.Second)
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		now := w.cur.Add(1)
		expired = w.turn(now, expired[:0], sweepEvery)
	}
}

// turn does one tick's work: it kicks the connections past their
// deadline and, every second, sweeps expired recovery state. A panic is
// logged and survived: the wheel is the node's only timer.
func (w *wheel) turn(now uint32, expired []overdue, sweepEvery uint32) []overdue {
	defer func() {
		if r := recover(); r != nil {
			w.hub.log.Error("timing wheel recovered from a panic", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	expired = w.advance(now, time.Now().Unix(), expired)
	for i, x := range expired {
		switch x.status {
		case codec.StatusNotLoggedIn:
			x.c.kick(codec.StatusNotLoggedIn, "login timeout")
		case codec.StatusUnauthorized:
			x.c.kick(codec.StatusUnauthorized, "token expired")
		default:
			x.c.kick(codec.StatusIdleTimeout, "no frame within the idle timeout")
		}
		expired[i] = overdue{}
	}
	if now%sweepEvery == 0 {
		w.hub.rec.Sweep(time.Now())
	}
	return expired
}

// overdue is a connection past its deadline, and the status it is kicked with.
type overdue struct {
	c      *Conn
	status codec.Status
}

// advance walks the slot of tick now (Unix second unix): connections past
// their deadline are returned (and leave the wheel), the others move to
// their new slot.
func (w *wheel) advance(now uint32, unix int64, out []overdue) []overdue {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.slots[now%wheelSlots]
	for c != nil {
		next := c.wnext
		w.unlink(c)
		if d := w.deadline(c, now, unix); d <= now {
			status := codec.StatusIdleTimeout
			switch {
			case c.State() == StateAccepted:
				status = codec.StatusNotLoggedIn
			case sessionOver(c, unix):
				status = codec.StatusUnauthorized
			}
			out = append(out, overdue{c, status})
			w.size--
		} else {
			w.insert(c, d)
		}
		c = next
	}
	return out
}

func (w *wheel) close() {
	close(w.stop)
	<-w.done
}

// each calls fn for every connection in the wheel, that is every open
// connection, under the wheel's lock: fn must not block.
func (w *wheel) each(fn func(*Conn)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.slots {
		for ; c != nil; c = c.wnext {
			fn(c)
		}
	}
}
