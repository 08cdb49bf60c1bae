package client

import (
	"sync"
	"time"
)

// ackBatcher coalesces PUSH_ACKs. Acks are cumulative, so a batch is just
// the highest seq received: it is due AckBatch pushes after the last ack,
// or AckDelay after the first push it covers, whichever comes first.
// The reader adds, the writer polls; both under mu.
type ackBatcher struct {
	mu    sync.Mutex
	batch int
	delay time.Duration
	seq   uint32    // highest seq to acknowledge
	n     int       // pushes waiting for an ack
	first time.Time // when the first of them arrived
}

func newAckBatcher(batch int, delay time.Duration) *ackBatcher {
	return &ackBatcher{batch: batch, delay: delay}
}

// add records a push that requires an ack. wake is true when the writer
// must look: the first push of a batch (to arm its timer) or a full batch.
func (a *ackBatcher) add(seq uint32, now time.Time) (wake bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seq > a.seq {
		a.seq = seq
	}
	a.n++
	if a.n == 1 {
		a.first = now
		return true
	}
	return a.n >= a.batch
}

// poll returns the seq to acknowledge now (send true), or, if an ack is
// pending but not yet due, when it will be (at non-zero).
func (a *ackBatcher) poll(now time.Time) (seq uint32, send bool, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == 0 {
		return 0, false, time.Time{}
	}
	due := a.first.Add(a.delay)
	if a.n >= a.batch || !now.Before(due) {
		a.n = 0
		return a.seq, true, time.Time{}
	}
	return 0, false, due
}
