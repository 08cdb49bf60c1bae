package downstream_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
)

// streamOf names the frames a peer received: a push by its meta id, a
// response as r<seq>, a KICK as "KICK". It fails when a connection's push
// seqs are not 1, 2, 3, ...
func streamOf(t *testing.T, name string, fs []frame) []string {
	t.Helper()
	var out []string
	pushes := uint32(0)
	for _, f := range fs {
		switch f.Op {
		case codec.OpPush:
			if pushes++; f.Seq != pushes {
				t.Errorf("%s: push %q has seq %d, want %d", name, f.meta["id"], f.Seq, pushes)
			}
			out = append(out, f.meta["id"])
		case codec.OpResponse:
			out = append(out, fmt.Sprintf("r%d", f.Seq))
		case codec.OpKick:
			out = append(out, "KICK")
		default:
			out = append(out, f.Op.String())
		}
	}
	return out
}

// TestFanoutRunOrder: group pushes to one shared list are held in the
// worker's run and written connection by connection, yet every connection
// gets its frames in the order they were queued, whatever comes between:
// a response, a push to another list that overlaps, a unicast push, a
// KICK. Everything is queued while the worker waits at a gate, so one take
// applies it all: the run holds four pushes when the other tasks arrive.
func TestFanoutRunOrder(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			g, _ := newGroup(t, downstream.Options{Workers: workers})
			srv := newServer(t)
			gate := srv.conn(100, pairOpts{gate: true}) // worker 0
			startReader(gate.peer)
			a, b, c, d := srv.conn(2, pairOpts{}), srv.conn(3, pairOpts{}), srv.conn(4, pairOpts{}), srv.conn(6, pairOpts{})
			ra, rb, rc, rd := startReader(a.peer), startReader(b.peer), startReader(c.peer), startReader(d.peer)
			l1 := targets(a, b, c) // one member snapshot, shared by its pushes
			l2 := targets(b, d)
			p := func(id string) *downstream.Push { return newPush(id, []byte(id)) }

			gateWorker(t, g, gate)
			g.PushMany(l1, p("p1"))
			g.PushMany(l1, p("p2"))
			g.Send(b, respFrame(nil, 1, 0))
			g.PushMany(l2, p("p3"))
			g.PushMany(l1, p("p4"))
			g.Push(d, p("p5"))
			g.Kick(c, codec.StatusDuplicateLogin, "elsewhere")
			p6 := p("p6")
			g.PushMany(l1, p6)
			close(gate.gate)

			want := map[string][]string{
				"a": {"p1", "p2", "p4", "p6"},
				"b": {"p1", "p2", "r1", "p3", "p4", "p6"},
				"c": {"p1", "p2", "p4", "KICK"},
				"d": {"p3", "p5"},
			}
			got := map[string][]string{
				"a": streamOf(t, "a", ra.waitFrames(t, 4, waitLong)),
				"b": streamOf(t, "b", rb.waitFrames(t, 6, waitLong)),
				"c": streamOf(t, "c", rc.waitEOF(t, waitLong)),
				"d": streamOf(t, "d", rd.waitFrames(t, 2, waitLong)),
			}
			for k := range want {
				if !slices.Equal(got[k], want[k]) {
					t.Errorf("%s received %v, want %v", k, got[k], want[k])
				}
			}
			if u := c.undeliveredPushes(); len(u) != 1 || u[0] != p6 {
				t.Errorf("c's undelivered pushes = %v, want p6 only", u)
			}
			checkFor(t, waitLong, time.Millisecond, func() error {
				if st := g.Stats(); st.Deliveries != 14 || st.Undelivered != 1 {
					return fmt.Errorf("Deliveries = %d, Undelivered = %d; want 14 and 1", st.Deliveries, st.Undelivered)
				}
				return nil
			})
			if workers == 1 {
				// a is a member only: its four pushes leave in the one
				// write of the cursor's visit.
				if w := a.writes.Load(); w != 1 {
					t.Errorf("a: %d writes for 4 pushes queued in one batch, want 1", w)
				}
			}

			// The run has delivered everything and let go of l1. A run on
			// l2 now must not take a, a member of the old run, for one of
			// its own: a's response comes alone.
			gate2 := srv.conn(102, pairOpts{gate: true}) // worker 0
			startReader(gate2.peer)
			gateWorker(t, g, gate2)
			g.PushMany(l2, p("q1"))
			g.Send(a, respFrame(nil, 2, 0))
			g.PushMany(l2, p("q2"))
			close(gate2.gate)
			if got := streamOf(t, "a", ra.waitFrames(t, 5, waitLong)[4:]); !slices.Equal(got, []string{"r2"}) {
				t.Errorf("a received %v after its pushes, want [r2]", got)
			}
			if got := streamOf(t, "b", rb.waitFrames(t, 8, waitLong)); !slices.Equal(got[6:], []string{"q1", "q2"}) {
				t.Errorf("b received %v, want q1 and q2 last", got)
			}
			if got := streamOf(t, "d", rd.waitFrames(t, 4, waitLong)); !slices.Equal(got, []string{"p3", "p5", "q1", "q2"}) {
				t.Errorf("d received %v", got)
			}
			time.Sleep(50 * time.Millisecond) // the test's input: room for a frame a must not get
			if fs, _, _ := ra.snapshot(); len(fs) != 5 {
				t.Errorf("a received %d frames, want 5: %v", len(fs), streamOf(t, "a", fs))
			}
		})
	}
}

// TestFanoutRunLaps: pushes to one list from two producers, while other
// output for the same connections is queued from a third, for long enough
// that the cursor goes round the list many times with pushes joining all
// along. Every connection gets every push once, with dense seqs, each
// producer's pushes in its order and the responses in theirs.
func TestFanoutRunLaps(t *testing.T) {
	g, _ := newGroup(t, downstream.Options{Workers: 2})
	srv := newServer(t)
	const conns, each, sends = 40, 300, 100
	cs := make([]downstream.Conn, conns)
	socks := make([]*sockConn, conns)
	rs := make([]*peerReader, conns)
	for i := range cs {
		socks[i] = srv.conn(uint64(i), pairOpts{})
		cs[i] = socks[i]
		rs[i] = startReader(socks[i].peer)
	}
	list := targets(cs...)
	var wg sync.WaitGroup
	pushFromTwo(&wg, g, each, func() []downstream.Target { return list })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 1; k <= sends; k++ {
			for _, c := range cs {
				g.Send(c, respFrame(nil, uint32(k), 0))
			}
		}
	}()
	wg.Wait()
	for i, r := range rs {
		s := streamOf(t, fmt.Sprintf("conn %d", i), r.waitFrames(t, 2*each+sends, waitLong))
		next := map[byte]int{}
		for _, id := range s {
			k := next[id[0]]
			next[id[0]]++
			var want string
			switch id[0] {
			case 'a', 'b':
				want = fmt.Sprintf("%c-%03d", id[0], k)
			default:
				want = fmt.Sprintf("r%d", k+1)
			}
			if id != want {
				t.Fatalf("conn %d: got %s where %s was due", i, id, want)
			}
		}
		if next['a'] != each || next['b'] != each || next['r'] != sends {
			t.Fatalf("conn %d: %v frames by kind", i, next)
		}
	}
	if st := g.Stats(); st.Deliveries != conns*2*each {
		t.Fatalf("Deliveries = %d, want %d", st.Deliveries, conns*2*each)
	}
}

// TestPushBackpressureHeld: the pushes a fan-out run holds count toward
// MaxQueue until they have reached every member. While the walk cannot
// get past a member, a producer of group pushes waits once the run holds
// MaxQueue deliveries, instead of piling pushes into the run; everything
// is delivered, in order, once the walk moves again.
func TestPushBackpressureHeld(t *testing.T) {
	g, _ := newGroup(t, downstream.Options{Workers: 1, MaxQueue: 2})
	srv := newServer(t)
	a := srv.conn(1, pairOpts{})
	h := srv.conn(2, pairOpts{gate: true, gateAfter: 1}) // marked when the run starts, held at its first visit
	ra, rh := startReader(a.peer), startReader(h.peer)
	list := targets(a, h) // 2 deliveries a push: MaxQueue holds one push
	var open sync.Once
	release := func() { open.Do(func() { close(h.gate) }) }
	defer release() // a failure must not leave the worker at the gate

	const pushes = 20
	var returned atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := range pushes {
			g.PushMany(list, newPush(fmt.Sprintf("m%d", k), []byte("x")))
			returned.Add(1)
		}
	}()
	select {
	case <-h.entered:
	case <-time.After(waitLong):
		t.Fatal("the walk never reached the held member")
	}
	time.Sleep(200 * time.Millisecond) // the test's input: time in which no further push may return
	if n := returned.Load(); n != 1 {
		t.Fatalf("%d group pushes returned while the run could not deliver the first; MaxQueue holds one", n)
	}
	if q := g.Stats().Queued; q != 4 {
		t.Fatalf("Stats.Queued = %d while the walk was held, want 4: the held push and the waiting one, 2 deliveries each", q)
	}
	release()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("producer still waiting after the walk moved")
	}
	for name, r := range map[string]*peerReader{"a": ra, "h": rh} {
		got := streamOf(t, name, r.waitFrames(t, pushes, waitLong))
		for k, id := range got {
			if want := fmt.Sprintf("m%d", k); id != want {
				t.Fatalf("%s: frame %d is %q, want %q", name, k, id, want)
			}
		}
	}
	checkFor(t, waitLong, 10*time.Millisecond, func() error {
		if q := g.Stats().Queued; q != 0 {
			return fmt.Errorf("Stats.Queued = %d after every push was delivered", q)
		}
		return nil
	})
}
