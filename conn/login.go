package conn

import (
	"sync"
	"time"

	"github.com/longlink/longlink/auth"
	"github.com/longlink/longlink/codec"
	"github.com/valyala/bytebufferpool"
)

// Logins off the reactor.
//
// A login's route work (the device's groups, the token's joins, the bind,
// a takeover from another node, the recovery state's attach) goes to
// Redis on a node whose route is shared, and may wait: a takeover up to a
// second, each call up to RouteTimeout. On netpoll's handler goroutine a
// slow Redis would pin one goroutine per login. With Options.SharedRoute
// the work runs instead on loginWorkers goroutines fed by a queue of
// loginQueue logins; a login that finds the queue full is refused with
// OVERLOADED. The token is verified on the reactor first (CPU only), so
// only valid logins take a place.
//
// Meanwhile the connection's later frames wait: the transport keeps them
// (at most MaxLoginInput bytes; more is KICK OVERLOADED), and the worker
// hands them to the session once the login is done, behind its LOGIN_ACK,
// as if they had come after it. While a worker may do that, the reactor
// and the worker take the connection's input lock (inputLocks, sharded by
// connection id, so a connection pays nothing for it) around the
// transport's input; and a close that comes meanwhile leaves the input
// state for the worker to free.

const (
	loginWorkers = 64
	loginQueue   = 4096
)

// The state word's bits of a login on a worker (conn.go has the others).
const (
	loginQueued = 1 << 27 // the login is on a worker: frames wait (Conn.open)
	inputLocked = 1 << 28 // input goes through the input lock
	inputFree   = 1 << 29 // the connection closed meanwhile: the worker frees its input state
	inputLent   = 1 << 30 // submit took the input lock for the call to input that is running
)

// loginJob is a verified LOGIN whose route work is yet to run.
type loginJob struct {
	c        *Conn
	seq      uint32
	claims   auth.Claims
	resume   uint32
	resuming bool
	hb       time.Duration // the heartbeat interval granted
	at       time.Time
}

// loginPool runs logins' route work off the reactor.
type loginPool struct {
	jobs chan loginJob
	stop chan struct{}
	wg   sync.WaitGroup
}

func newLoginPool() *loginPool {
	p := &loginPool{jobs: make(chan loginJob, loginQueue), stop: make(chan struct{})}
	for range loginWorkers {
		p.wg.Go(p.run)
	}
	return p
}

func (p *loginPool) run() {
	for {
		select {
		case l := <-p.jobs:
			l.enter()
			l.c.resumeInput()
		case <-p.stop:
			return
		}
	}
}

// close stops the workers; logins still queued are dropped (the hub
// closes once its connections are gone).
func (p *loginPool) close() {
	close(p.stop)
	p.wg.Wait()
}

// submit queues l and holds its connection's later frames, or reports
// false when the queue is full. It runs inside Conn.input, which ran
// without the input lock (no login was on a worker yet): it takes the
// lock for the rest of that call, so the worker resumes the input only
// once the call is over.
func (p *loginPool) submit(l loginJob) bool {
	c := l.c
	c.inputLock().Lock()
	c.state.Or(loginQueued | inputLocked | inputLent)
	select {
	case p.jobs <- l:
		return true
	default:
		// No worker involved: undone at once.
		c.state.And(^uint32(loginQueued | inputLocked | inputLent))
		c.inputLock().Unlock()
		return false
	}
}

// inputLock is c's input lock.
func (c *Conn) inputLock() *sync.Mutex { return &c.hub.inputLocks[c.id%uint64(len(c.hub.inputLocks))] }

// input hands bytes read from the socket to the transport, under the
// input lock while a login worker may resume c's input. Every call to a
// transport's input goes through here, so a login's submit always runs
// in a call without the lock.
func (c *Conn) input(in []byte) {
	if c.state.Load()&inputLocked == 0 {
		c.t().input(c, in)
		if c.state.Load()&inputLent != 0 {
			c.state.And(^uint32(inputLent))
			c.inputLock().Unlock()
		}
		return
	}
	mu := c.inputLock()
	mu.Lock()
	defer mu.Unlock()
	if c.state.Load()&inputFree != 0 {
		return // closed meanwhile
	}
	c.t().input(c, in)
}

// resumeInput runs on the login worker once the login's route work is
// done: the frames that waited go to the session, and the input goes
// back to the reactor alone.
func (c *Conn) resumeInput() {
	mu := c.inputLock()
	mu.Lock()
	defer mu.Unlock()
	c.state.And(^uint32(loginQueued))
	if c.State() < StateClosing && c.state.Load()&inputFree == 0 {
		c.t().input(c, nil)
	}
	for {
		w := c.state.Load()
		if c.state.CompareAndSwap(w, w&^(inputLocked|inputFree)) {
			if w&inputFree != 0 {
				c.freeInput()
			}
			return
		}
	}
}

// takeInput reports whether the close hook may free c's input state now;
// false leaves it to the login worker.
func (c *Conn) takeInput() bool { return c.unlessBusy(inputLocked, inputFree) }

// freeInput frees what c's transport kept of its input, once it closed.
func (c *Conn) freeInput() {
	if c.partial != nil {
		bytebufferpool.Put(c.partial)
		c.partial = nil
	}
	c.t().release(c)
}

// checkHeld kicks c when the frames waiting behind its login exceed
// MaxLoginInput: a client may send a few frames right behind its LOGIN,
// not a stream.
func (c *Conn) checkHeld(kept int) {
	if kept > MaxLoginInput && c.state.Load()&loginQueued != 0 {
		c.kick(codec.StatusOverloaded, "too many bytes sent before LOGIN_ACK")
	}
}
