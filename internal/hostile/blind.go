package hostile

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Blind writes frames on a connection and never reads: the attacker that
// does not care about answers. It writes with non-blocking system calls,
// so it sees when the kernel refuses bytes (the gateway stopped reading
// and the socket buffers are full) and for how long. Every copy of the
// frame is the same, seq included.
type Blind struct {
	Frame []byte        // one whole frame
	Rate  float64       // frames per second; 0 writes as fast as the socket takes them
	Batch int           // frames per write; 0 means 1024
	For   time.Duration // how long to write at most
	Stop  <-chan struct{}
	// Bytes, when set, is kept up to date with the bytes the kernel took,
	// for a caller that watches the progress.
	Bytes *atomic.Int64
}

// BlindOutcome is what a blind writer saw.
type BlindOutcome struct {
	Frames     int   // whole frames the kernel took
	Bytes      int64 // bytes the kernel took
	WouldBlock int   // times a write found the socket full (EAGAIN)
	// Blocked is the total time the socket was full, LongestBlock the
	// longest single stretch.
	Blocked, LongestBlock time.Duration
	Behind                int           // with Rate: frames skipped because they fell due while the socket was full
	Err                   error         // the write error that ended it: the gateway closed the connection
	Elapsed               time.Duration // how long it wrote
}

func (o BlindOutcome) String() string {
	s := fmt.Sprintf("%d frames (%d KiB) in %v, the socket was full %d times for %v in all (longest %v)",
		o.Frames, o.Bytes>>10, o.Elapsed.Round(time.Millisecond), o.WouldBlock, o.Blocked.Round(time.Millisecond), o.LongestBlock.Round(time.Millisecond))
	if o.Behind > 0 {
		s += fmt.Sprintf(", %d frames behind the rate", o.Behind)
	}
	if o.Err != nil {
		s += fmt.Sprintf(", ended by %v", o.Err)
	}
	return s
}

// Run writes on nc until For has passed, Stop closes or a write fails, and
// completes the frame it was in the middle of (5s at most) so the
// connection can still be used.
func (b Blind) Run(nc net.Conn) BlindOutcome {
	if b.Batch <= 0 {
		b.Batch = 1024
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return BlindOutcome{Err: errors.New("hostile: not a socket")}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return BlindOutcome{Err: err}
	}
	size := len(b.Frame)
	var (
		out          BlindOutcome
		written      int64
		built        int // frames due so far (written, being written or skipped)
		batch        = bytes.Repeat(b.Frame, b.Batch)
		pending      []byte
		blockedSince time.Time
		start        = time.Now()
	)
	account := func(n int) {
		written += int64(n)
		if b.Bytes != nil {
			b.Bytes.Store(written)
		}
	}
	unblocked := func(now time.Time) {
		if !blockedSince.IsZero() {
			d := now.Sub(blockedSince)
			out.Blocked += d
			out.LongestBlock = max(out.LongestBlock, d)
			blockedSince = time.Time{}
		}
	}
	// write writes pending until it is gone or the socket is full; with
	// all set it waits for the socket to take everything (or the deadline).
	write := func(deadline time.Time, all bool) error {
		_ = nc.SetWriteDeadline(deadline)
		var werr error
		err := rc.Write(func(fd uintptr) bool {
			for len(pending) > 0 {
				n, err := syscall.Write(int(fd), pending)
				switch {
				case err == syscall.EINTR:
					continue
				case err == syscall.EAGAIN:
					if blockedSince.IsZero() {
						blockedSince = time.Now()
						out.WouldBlock++
					}
					return false // wait until the socket is writable (or the deadline)
				case err != nil:
					werr = err
					return true
				}
				unblocked(time.Now())
				account(n)
				pending = pending[n:]
				if !all && b.Rate > 0 {
					return true // back to the pacing
				}
			}
			return true
		})
		if werr != nil {
			return werr
		}
		return err
	}
	deadline := start.Add(b.For)
	for {
		select {
		case <-b.Stop:
			goto finish
		default:
		}
		now := time.Now()
		if now.After(deadline) {
			break
		}
		if len(pending) == 0 {
			k := b.Batch
			if b.Rate > 0 {
				due := int(b.Rate*now.Sub(start).Seconds()) + 1 - built
				if due <= 0 {
					time.Sleep(time.Duration(float64(time.Second) / b.Rate))
					continue
				}
				// Frames that fell due while the socket was full are
				// skipped, not sent in a burst: the rate holds over any
				// tenth of a second.
				if most := max(1, int(b.Rate/10)); due > most {
					out.Behind += due - most
					built += due - most
					due = most
				}
				k = min(k, due)
			}
			built += k
			pending = batch[:k*size]
		}
		wd := now.Add(100 * time.Millisecond)
		if wd.After(deadline) {
			wd = deadline
		}
		if err := write(wd, false); err != nil && !IsTimeout(err) {
			out.Err = err
			break
		}
	}
finish:
	out.Elapsed = time.Since(start)
	unblocked(time.Now())
	if rest := int(written % int64(size)); rest != 0 && out.Err == nil {
		pending = pending[:size-rest]
		if err := write(time.Now().Add(5*time.Second), true); err != nil {
			out.Err = fmt.Errorf("completing the last frame: %w", err)
		}
		unblocked(time.Now())
	}
	out.Bytes = written
	out.Frames = int(written / int64(size))
	return out
}
