package hostile

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
)

// Flood writes one kind of frame on a logged-in connection, as fast as
// the socket takes them or at a set rate, while it reads and classifies
// the answers.
type Flood struct {
	Op    codec.Op      // OpPing, OpPushAck or OpRequest
	Biz   uint16        // a REQUEST's business
	Body  []byte        // a REQUEST's body
	Rate  float64       // frames per second; 0 writes as fast as the socket takes them
	Batch int           // frames per write; 0 means 256
	For   time.Duration // how long to write at most
	Stop  <-chan struct{}
}

// Kick is the KICK a flooder received.
type Kick struct {
	Status codec.Status
	Reason string
	After  time.Duration // from the flood's first write
	// AnswersBefore is how many answers (PONG, RESPONSE, WebSocket pong)
	// came before it.
	AnswersBefore int
}

func (k *Kick) String() string {
	if k == nil {
		return "not kicked"
	}
	return fmt.Sprintf("KICK %v %q after %v", k.Status, k.Reason, k.After.Round(time.Millisecond))
}

// Outcome is what a flooder saw.
type Outcome struct {
	Sent     int // frames written whole
	Answers  int // PONGs or RESPONSEs read
	ByStatus map[codec.Status]int
	// FirstOverloaded is the 1-based answer that was the first OVERLOADED
	// one, 0 when none was.
	FirstOverloaded int
	Kick            *Kick
	Closed          bool // the gateway closed the connection (EOF or reset)
	AfterKick       int  // frames read after the KICK
	// Drained: not kicked, and after the flood every frame sent was
	// answered (PING, REQUEST) or the closing PING was (PUSH_ACK).
	Drained  bool
	Problems []string      // answers out of order or repeated, unexpected frames, read errors other than a close
	Elapsed  time.Duration // from the first write to the end of the writing (the kick, the close or For)
	// LastAnswer is when the last answer came, from the first write.
	LastAnswer time.Duration
	WriteErr   error // the error that ended the writing early, if any
}

// Window is the time over which the gateway answered: from the first
// write to the end of the writing or the last answer, whichever is later.
// What a rate limit let through is bounded by it.
func (o Outcome) Window() time.Duration { return max(o.Elapsed, o.LastAnswer) }

// OK is the number of answers with status OK.
func (o Outcome) OK() int { return o.ByStatus[codec.StatusOK] }

// Overloaded is the number of answers with status OVERLOADED.
func (o Outcome) Overloaded() int { return o.ByStatus[codec.StatusOverloaded] }

// Summary is a one-line account of the outcome.
func (o Outcome) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d sent in %v, %d answered", o.Sent, o.Elapsed.Round(time.Millisecond), o.Answers)
	var st []string
	for s, n := range o.ByStatus {
		st = append(st, fmt.Sprintf("%v %d", s, n))
	}
	sort.Strings(st)
	if len(st) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(st, ", "))
	}
	fmt.Fprintf(&b, ", %v", o.Kick)
	if o.Closed {
		b.WriteString(", closed")
	}
	if o.Drained {
		b.WriteString(", drained")
	}
	if len(o.Problems) > 0 {
		fmt.Fprintf(&b, ", problems: %s", strings.Join(o.Problems, "; "))
	}
	return b.String()
}

// markerSeq is the seq of the PING that ends a PUSH_ACK flood that was
// not kicked: its PONG says the gateway processed everything before it.
const markerSeq = 0xFFFFFFFF

// problems collects protocol surprises, the first few of them.
type problems struct {
	mu   sync.Mutex
	list []string
}

func (p *problems) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.list) < 8 {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
}

// Run floods nc (logged in, read through r) and returns what it saw. It
// returns once the gateway closed the connection or, after For (or Stop),
// once every frame was answered (10s at most; 2s after Stop).
func (f Flood) Run(nc net.Conn, r *Reader) Outcome {
	if f.Batch <= 0 {
		f.Batch = 256
	}
	one := codec.AppendFrame(nil, codec.Header{Op: f.Op, Biz: f.Biz, Seq: 1}, nil, f.Body)
	size := len(one)
	var (
		out      = Outcome{ByStatus: map[codec.Status]int{}}
		probs    problems
		sent     atomic.Int64
		ended    = make(chan struct{}) // the reader saw a KICK or the close
		wrote    = make(chan struct{}) // the writer is done
		stopped  atomic.Bool           // the writer ended on Stop
		start    = time.Now()
		endWrite time.Time
	)

	go func() {
		defer close(wrote)
		batch := make([]byte, 0, f.Batch*size)
		var pending []byte
		var written int64 // bytes
		deadline := start.Add(f.For)
		built := 0 // frames put in batches so far
		for {
			select {
			case <-ended:
				return
			case <-f.Stop:
				stopped.Store(true)
				goto finish
			default:
			}
			now := time.Now()
			if now.After(deadline) {
				goto finish
			}
			if len(pending) == 0 {
				k := f.Batch
				if f.Rate > 0 {
					due := int(f.Rate*now.Sub(start).Seconds()) + 1 - built
					if due <= 0 {
						time.Sleep(time.Duration(float64(time.Second) / f.Rate))
						continue
					}
					k = min(k, due)
				}
				batch = batch[:0]
				for i := 0; i < k; i++ {
					at := len(batch)
					batch = append(batch, one...)
					codec.SetSeq(batch[at:], uint32(built+i+1))
				}
				built += k
				pending = batch
			}
			_ = nc.SetWriteDeadline(now.Add(100 * time.Millisecond))
			n, err := nc.Write(pending)
			written += int64(n)
			pending = pending[n:]
			sent.Store(written / int64(size))
			if err != nil && !IsTimeout(err) {
				out.WriteErr = err
				endWrite = time.Now()
				return
			}
		}
	finish:
		endWrite = time.Now()
		// Complete the frame cut by a deadline, so what follows parses.
		if rest := int(written % int64(size)); rest != 0 {
			_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			n, err := nc.Write(pending[:size-rest])
			written += int64(n)
			sent.Store(written / int64(size))
			if err != nil {
				out.WriteErr = err
				return
			}
		}
		if f.Op == codec.OpPushAck {
			var b [codec.HeaderSize]byte
			codec.PutHeader(b[:], &codec.Header{Op: codec.OpPing, Seq: markerSeq})
			_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := nc.Write(b[:]); err != nil {
				out.WriteErr = err
			}
		}
	}()

	// The reader.
	next := uint32(1)      // PING: the seq the next answer must carry
	var seen []bool        // REQUEST: the seqs answered
	var drainBy time.Time  // when the writer is done: how long to wait for the answers
	var kickedAt time.Time // when the KICK came: the close must follow soon
	writerDone := false
	for {
		fr, err := r.Next(time.Now().Add(100 * time.Millisecond))
		if err != nil {
			if IsTimeout(err) {
				if !writerDone {
					select {
					case <-wrote:
						writerDone = true
						wait := 10 * time.Second
						if stopped.Load() {
							wait = 2 * time.Second
						}
						drainBy = time.Now().Add(wait)
					default:
					}
				}
				if out.Kick != nil && time.Since(kickedAt) > 3*time.Second {
					probs.add("still open 3s after the KICK")
					break
				}
				if writerDone && out.Kick == nil && f.Op != codec.OpPushAck && out.Answers >= int(sent.Load()) {
					out.Drained = true
					break
				}
				if writerDone && out.Kick == nil && time.Now().After(drainBy) {
					if f.Op == codec.OpPushAck {
						probs.add("the PING after the flood was not answered %v after it", time.Since(endWrite).Round(time.Millisecond))
					} else {
						probs.add("%d of %d frames answered %v after the flood", out.Answers, sent.Load(), time.Since(endWrite).Round(time.Millisecond))
					}
					break
				}
				continue
			}
			if IsClosed(err) {
				out.Closed = true
			} else {
				probs.add("read: %v", err)
			}
			break
		}
		if out.Kick != nil {
			out.AfterKick++
			continue
		}
		switch {
		case fr.Op == codec.OpKick:
			out.Kick = &Kick{Status: fr.Status, Reason: Reason(fr), After: time.Since(start), AnswersBefore: out.Answers}
			kickedAt = time.Now()
		case fr.Op == codec.OpPong && f.Op == codec.OpPushAck && fr.Seq == markerSeq:
			out.Drained = true
		case fr.Op == codec.OpPong && f.Op == codec.OpPing, fr.Op == codec.OpResponse && f.Op == codec.OpRequest:
			out.Answers++
			out.ByStatus[fr.Status]++
			out.LastAnswer = time.Since(start)
			if fr.Status == codec.StatusOverloaded && out.FirstOverloaded == 0 {
				out.FirstOverloaded = out.Answers
			}
			if f.Op == codec.OpPing {
				if fr.Seq != next {
					probs.add("PONG seq %d, want %d (answers out of order or missing)", fr.Seq, next)
					next = fr.Seq
				}
				next++
			} else {
				i := int(fr.Seq)
				if i < 1 || i > int(sent.Load())+f.Batch {
					probs.add("RESPONSE seq %d was never sent", fr.Seq)
					continue
				}
				for len(seen) <= i {
					seen = append(seen, make([]bool, 4096)...)
				}
				if seen[i] {
					probs.add("RESPONSE seq %d twice", fr.Seq)
				}
				seen[i] = true
			}
		default:
			probs.add("unexpected %v seq %d status %v", fr.Op, fr.Seq, fr.Status)
		}
		if out.Drained && f.Op == codec.OpPushAck {
			break
		}
	}
	close(ended)
	<-wrote
	out.Sent = int(sent.Load())
	if endWrite.IsZero() {
		endWrite = time.Now()
	}
	out.Elapsed = endWrite.Sub(start)
	if out.Kick != nil && out.Kick.After < out.Elapsed {
		out.Elapsed = out.Kick.After
	}
	out.Problems = probs.list
	return out
}
