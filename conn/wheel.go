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

// deadline is the tick at which c expires, given what it has done. born
// and seen are the tick in progress at the time, which may be nearly
// over, so one more tick keeps a timeout from firing early: the kick
// comes between the timeout and the timeout plus one tick.
func (w *wheel) deadline(c *Conn) uint32 {
	if c.State() == StateAccepted {
		return c.born + w.ticks(w.hub.opts.LoginTimeout) + 1
	}
	return c.seen.Load() + w.ticks(w.hub.opts.IdleTimeout) + 1
}

func (w *wheel) add(c *Conn) {
	w.mu.Lock()
	w.insert(c, w.deadline(c))
	w.size++
	w.mu.Unlock()
}

// reschedule moves c to the slot of its current deadline; login calls it,
// since a logged-in connection's deadline is its idle timeout, which may
// come before the login deadline it was filed under.
func (w *wheel) reschedule(c *Conn) {
	w.mu.Lock()
	if c.wslot >= 0 {
		w.unlink(c)
		w.insert(c, w.deadline(c))
	}
	w.mu.Unlock()
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
	var expired []*Conn
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
func (w *wheel) turn(now uint32, expired []*Conn, sweepEvery uint32) []*Conn {
	defer func() {
		if r := recover(); r != nil {
			w.hub.log.Error("timing wheel recovered from a panic", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	expired = w.advance(now, expired)
	for i, c := range expired {
		if c.State() == StateAccepted {
			c.kick(codec.StatusNotLoggedIn, "login timeout")
		} else {
			c.kick(codec.StatusIdleTimeout, "no frame within the idle timeout")
		}
		expired[i] = nil
	}
	if now%sweepEvery == 0 {
		w.hub.rec.Sweep(time.Now())
	}
	return expired
}

// advance walks the slot of tick now: connections past their deadline
// are returned (and leave the wheel), the others move to their new slot.
func (w *wheel) advance(now uint32, expired []*Conn) []*Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.slots[now%wheelSlots]
	for c != nil {
		next := c.wnext
		w.unlink(c)
		if d := w.deadline(c); d <= now {
			expired = append(expired, c)
			w.size--
		} else {
			w.insert(c, d)
		}
		c = next
	}
	return expired
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
