// Longlink's patch (see PATCH.md): a per-connection bound on buffered input.
//
// Upstream netpoll reads a readable socket whenever the kernel has bytes,
// however much the OnRequest handler has left unprocessed, so a client that
// sends faster than its handler works grows the input buffer without bound.
// With a limit set, the poller stops watching the socket for input once the
// buffer holds that many bytes; the kernel's receive buffer then fills and
// TCP flow control slows the sender. Release resumes reading once the
// handler has taken the buffer below the limit.

package netpoll

import (
	"runtime"
	"sync/atomic"
)

// InputLimiter is implemented by netpoll's connections.
type InputLimiter interface {
	// SetInputLimit bounds the input buffered for the connection: once it
	// holds n bytes or more, the poller stops reading the socket until the
	// handler has consumed and released enough. One read may take the buffer
	// past n by at most n. Zero means no limit.
	SetInputLimit(n int)
}

var _ InputLimiter = (*connection)(nil)

// SetInputLimit implements InputLimiter.
func (c *connection) SetInputLimit(n int) {
	if n < 0 || n > 1<<30 {
		n = 1 << 30
	}
	atomic.StoreInt32(&c.inputLimit, int32(n))
	c.resumeRead() // a raised limit may leave room now
}

// readSize is how many bytes the poller's next read may take: the adaptive
// book size, capped by the limit.
func (c *connection) readSize() int {
	if lim := int(atomic.LoadInt32(&c.inputLimit)); lim > 0 && c.bookSize > lim {
		return lim
	}
	return c.bookSize
}

// pauseRead runs on the poller, inside the operator's do/done section,
// after a read: at the limit it stops watching the socket for input. It
// then checks the buffer again, because the handler may have drained it
// between the two steps without seeing readPaused set: the store of
// readPaused comes before that check, and the handler's load of it after
// its drain, so one of them always sees the other.
func (c *connection) pauseRead() {
	lim := int(atomic.LoadInt32(&c.inputLimit))
	if lim <= 0 || c.inputBuffer.Len() < lim || atomic.LoadInt32(&c.readPaused) != 0 {
		return
	}
	atomic.StoreInt32(&c.readPaused, 1)
	if err := c.operator.Control(PollPauseRead); err != nil {
		atomic.StoreInt32(&c.readPaused, 0)
		return
	}
	if c.inputBuffer.Len() < lim {
		c.unpause()
	}
}

// resumeRead runs on the handler after it released input: below the limit
// it watches the socket for input again. It takes the operator's do/done
// section so that it never interleaves with the poller's pauseRead.
func (c *connection) resumeRead() {
	if atomic.LoadInt32(&c.readPaused) == 0 {
		return
	}
	for !c.operator.do() {
		if atomic.LoadInt32(&c.operator.state) == 0 || atomic.LoadInt32(&c.readPaused) == 0 {
			return // freed (the connection closed), or resumed by another caller
		}
		runtime.Gosched()
	}
	lim := int(atomic.LoadInt32(&c.inputLimit))
	if atomic.LoadInt32(&c.readPaused) != 0 && (lim <= 0 || c.inputBuffer.Len() < lim) {
		c.unpause()
	}
	c.operator.done()
}

// unpause watches the socket for input again; the caller holds the
// operator's do/done section. Reading resumes level-triggered: bytes the
// kernel holds are reported at once.
func (c *connection) unpause() {
	if err := c.operator.Control(PollRW2R); err == nil {
		atomic.StoreInt32(&c.readPaused, 0)
	}
}
