package recovery

import (
	"context"
)

// Durable pushes.
//
// With ShareOptions.Durable, a push the business marked ack:true to a
// connected device is written to the shared store too (Journal), with the
// seq the node gave it, and dropped there when the device acknowledges it
// (JournalAck). If the node dies the device's state is in the shared
// store: the device resumes it on any node, in order, each push once. The
// writes are batched: one round trip per batch of the journal's queue,
// whatever the number of devices; acks of one device in one batch are
// one. Pushes that are not durable (group pushes, broadcasts, ack:false)
// never touch the shared store while the device is connected.

// Durable is a Shared store that also journals durable pushes.
type Durable interface {
	Shared
	// Journal applies ops in order: a push recorded with its seq (the
	// state's seq raised to it, the state marked journaled), or an ack
	// (Frame nil) dropping the pushes up to Seq.
	Journal(ctx context.Context, ops []JournalOp) error
	// TakeFrom is Take for a client resuming from resume, which numbers
	// the pushes kept without a seq while the device's node was dead, and
	// leaves the state in the store, journaled by the taker.
	TakeFrom(ctx context.Context, device string, resume uint32) (State, bool, error)
}

// JournalOp is a durable push (Frame set) or an ack (Frame nil).
type JournalOp struct {
	Device string
	Seq    uint32
	Frame  []byte
	// Mark, when set, is written beside the push (for the recovery TTL):
	// the node that sent the push here and got no answer asks for it
	// (Push.Unless) to tell a push this node journaled before it died
	// from one it never did.
	Mark string
}

// journalOp is a JournalOp and what to call once it is written (or
// failed).
type journalOp struct {
	JournalOp
	done func()
}

// Durable reports whether s journals durable pushes.
func (s *Store) Durable() bool { return s.durable != nil }

// Journal queues a durable push the device's connection here was given
// seq for, with its mark (JournalOp.Mark, "" for none); done, when not
// nil, is called once the push is in the shared store or could not be
// put there (then it is counted in JournalDropped).
func (s *Store) Journal(device string, seq uint32, frame []byte, mark string, done func()) {
	s.queueJournal(journalOp{JournalOp{Device: device, Seq: seq, Frame: frame, Mark: mark}, done})
}

// JournalAck queues the drop of device's durable pushes up to seq.
func (s *Store) JournalAck(device string, seq uint32) {
	s.queueJournal(journalOp{JournalOp: JournalOp{Device: device, Seq: seq}})
}

// JournalDropped counts the journal ops that did not reach the shared
// store (queue full, store closing, or the write failed).
func (s *Store) JournalDropped() uint64 { return s.jdropped.Load() }

func (s *Store) queueJournal(op journalOp) {
	if s.journal == nil {
		if op.done != nil {
			op.done()
		}
		return
	}
	select {
	case <-s.stop:
	case s.journal <- op:
		return
	default:
	}
	s.jdropped.Add(1)
	if op.done != nil {
		op.done()
	}
}

// journalLoop writes the queued ops, many per round trip, in order.
func (s *Store) journalLoop() {
	defer close(s.jdone)
	batch := make([]journalOp, 0, 512)
	for {
		select {
		case op := <-s.journal:
			s.writeJournal(s.fillJournal(append(batch[:0], op)))
		case <-s.stop:
			for b := s.fillJournal(batch[:0]); len(b) > 0; b = s.fillJournal(batch[:0]) {
				s.writeJournal(b)
			}
			return
		}
	}
}

func (s *Store) fillJournal(batch []journalOp) []journalOp {
	for len(batch) < cap(batch) {
		select {
		case op := <-s.journal:
			batch = append(batch, op)
		default:
			return batch
		}
	}
	return batch
}

// writeJournal writes one batch; the acks of a device keep only the
// highest, placed where the first one was.
func (s *Store) writeJournal(batch []journalOp) {
	ops := make([]JournalOp, 0, len(batch))
	acks := make(map[string]int)
	for _, op := range batch {
		if op.Frame == nil {
			if i, ok := acks[op.Device]; ok {
				ops[i].Seq = max(ops[i].Seq, op.Seq)
				continue
			}
			acks[op.Device] = len(ops)
		}
		ops = append(ops, op.JournalOp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	err := s.durable.Journal(ctx, ops)
	cancel()
	if err != nil {
		s.jdropped.Add(uint64(len(batch)))
		s.log.Warn("recovery: journaling durable pushes failed; they are kept on this node only", "ops", len(ops), "err", err)
	}
	for _, op := range batch {
		if op.done != nil {
			op.done()
		}
	}
}

// KeepLost keeps a durable push for devices whose node (instance dead)
// died holding them: unlike Keep, a device without state gets one, so the
// push waits for its next login on any node. It returns the devices it
// did not keep because they are back: a live node took their state over
// since they were looked up, and the caller routes them again. With a
// mark (JournalOp.Mark), a device whose node journaled the push under
// that mark before it died is neither kept again nor back: it is in
// journaled.
func (s *Store) KeepLost(ctx context.Context, devices []string, frame []byte, dead, mark string) (back, journaled []string, err error) {
	if s.shared == nil {
		return nil, nil, nil
	}
	pushes := make([]Push, len(devices))
	for i, d := range devices {
		pushes[i] = Push{Device: d, Frame: frame, Lost: true, Check: true, Dead: dead, Unless: mark}
	}
	kept, err := s.shared.Append(ctx, pushes)
	if err != nil {
		return nil, nil, err
	}
	for i, k := range kept {
		switch k {
		case Bound:
			back = append(back, devices[i])
		case Journaled:
			journaled = append(journaled, devices[i])
		}
	}
	return back, journaled, nil
}
