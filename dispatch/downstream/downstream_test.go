package downstream_test

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
)

const waitLong = 10 * time.Second

func pingFrame() []byte {
	return codec.AppendFrame(nil, codec.Header{Op: codec.OpPong, Seq: 1}, nil, nil)
}

// TestSendAndPushInOrder: frames handed to Send and Push from one
// goroutine arrive in that order, on every connection of every worker;
// Send copies its frame, so the caller can reuse the buffer at once.
func TestSendAndPushInOrder(t *testing.T) {
	g, _ := newGroup(t, downstream.Options{Workers: 2})
	srv := newServer(t)
	const conns, n = 4, 3000
	p := newPush("p-1", []byte("push-body"))
	pristine := bytes.Clone(p.Frame)

	var wg sync.WaitGroup
	cs := make([]*sockConn, conns)
	rs := make([]*peerReader, conns)
	for i := range conns {
		cs[i] = srv.conn(uint64(i), pairOpts{})
		rs[i] = startReader(cs[i].peer)
	}
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 128)
			for k := 1; k <= n; k++ {
				if k%10 == 0 {
					g.Push(c, p)
					continue
				}
				buf = respFrame(buf[:0], uint32(k), k%50)
				g.Send(c, buf)
				for j := range buf {
					buf[j] = 0xEE // Send must have copied
				}
			}
		}()
	}
	wg.Wait()
	for i, r := range rs {
		fs := r.waitFrames(t, n, waitLong)
		if len(fs) != n {
			t.Fatalf("conn %d: %d frames, want %d", i, len(fs), n)
		}
		for k := 1; k <= n; k++ {
			f := fs[k-1]
			if k%10 == 0 {
				if f.Op != codec.OpPush || f.Seq != uint32(k/10) || string(f.body) != "push-body" || f.meta["id"] != "p-1" || f.Flags != codec.FlagAckRequired || f.Biz != 7 {
					t.Fatalf("conn %d, frame %d: %+v %q; want PUSH seq %d", i, k, f.Header, f.body, k/10)
				}
				continue
			}
			if f.Op != codec.OpResponse || f.Seq != uint32(k) {
				t.Fatalf("conn %d, frame %d: %+v; want RESPONSE seq %d", i, k, f.Header, k)
			}
			checkRespBody(t, f, k%50)
		}
		if cs[i].terminated() {
			t.Fatalf("conn %d terminated", i)
		}
	}
	if !bytes.Equal(p.Frame, pristine) {
		t.Fatal("the shared push frame was modified")
	}
	st := g.Stats()
	if st.FramesOut != conns*n || st.Deliveries != conns*n/10 || st.Undelivered != 0 || st.SlowConsumers != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSendFirst: the frames of SendFirst are not written before its
// publish returns, and a Push or Send queued by someone who found the
// connection through publish (here: once publish has begun) follows them.
// Login relies on it: a client that has read LOGIN_ACK is already in the
// registry, and no new push overtakes LOGIN_ACK or the resumed pushes.
func TestSendFirst(t *testing.T) {
	g, _ := newGroup(t, downstream.Options{Workers: 1})
	c := newServer(t).conn(1, pairOpts{})
	r := startReader(c.peer)
	inPublish, release := make(chan struct{}), make(chan struct{})
	first := [][]byte{respFrame(nil, 1, 3), respFrame(nil, 2, 5)}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		g.SendFirst(c, func() {
			close(inPublish)
			<-release
		}, first...)
	}()
	<-inPublish
	later := make(chan struct{})
	go func() {
		defer close(later)
		g.Push(c, newPush("p-1", []byte("new")))
		g.Send(c, respFrame(nil, 3, 1))
	}()
	time.Sleep(100 * time.Millisecond) // the test's input: room for a wrong worker to write, which must not
	if fs, _, err := r.snapshot(); len(fs) != 0 || err != nil {
		t.Fatalf("%d frames (err %v) written while publish runs; want none", len(fs), err)
	}
	close(release)
	<-sent
	<-later
	fs := r.waitFrames(t, 4, waitLong)
	if len(fs) != 4 {
		t.Fatalf("%d frames, want 4", len(fs))
	}
	for i, want := range []struct {
		op  codec.Op
		seq uint32
	}{{codec.OpResponse, 1}, {codec.OpResponse, 2}, {codec.OpPush, 1}, {codec.OpResponse, 3}} {
		if fs[i].Op != want.op || fs[i].Seq != want.seq {
			t.Fatalf("frame %d: %v seq %d; want %v seq %d", i, fs[i].Op, fs[i].Seq, want.op, want.seq)
		}
	}
	checkRespBody(t, fs[0], 3)
	checkRespBody(t, fs[1], 5)
}

// gateWorker makes a worker busy: it queues a frame for gate's connection,
// whose Outbox blocks until the gate is opened, and waits until the worker
// is inside it. Everything queued meanwhile is drained in one batch.
func gateWorker(t *testing.T, g *downstream.Group, gate *sockConn) {
	t.Helper()
	gate.gateSkip.Add(1) // Send itself looks at the outbox; the worker is held at its look
	g.Send(gate, pingFrame())
	select {
	case <-gate.entered:
	case <-time.After(waitLong):
		t.Fatal("worker never reached the gate")
	}
}

// TestCoalescing: frames queued between two wake-ups of a worker leave in
// one write per connection.
func TestCoalescing(t *testing.T) {
	t.Run("burst=1000", func(t *testing.T) {
		g, _ := newGroup(t, downstream.Options{Workers: 1})
		srv := newServer(t)
		gate := srv.conn(100, pairOpts{gate: true})
		startReader(gate.peer)
		a := srv.conn(1, pairOpts{})
		ra := startReader(a.peer)

		gateWorker(t, g, gate)
		var buf []byte
		for k := 1; k <= 1000; k++ {
			buf = respFrame(buf[:0], uint32(k), 0) // 20 bytes
			g.Send(a, buf)
		}
		close(gate.gate)
		fs := ra.waitFrames(t, 1000, waitLong)
		for k, f := range fs {
			if f.Seq != uint32(k+1) {
				t.Fatalf("frame %d has seq %d", k, f.Seq)
			}
		}
		st := g.Stats()
		t.Logf("frames %d, writes %d (conn: %d writes, %d refused)", st.FramesOut, st.Writes, a.writes.Load(), a.refusals.Load())
		if st.FramesOut != 1001 {
			t.Fatalf("FramesOut = %d, want 1001", st.FramesOut)
		}
		if st.Writes*20 > st.FramesOut {
			t.Fatalf("%d writes for %d frames: not coalesced", st.Writes, st.FramesOut)
		}
		if w := a.writes.Load(); w > 3 {
			t.Fatalf("1000 frames queued in one batch took %d writes", w)
		}
	})

	t.Run("conns=10/frames=100", func(t *testing.T) {
		g, _ := newGroup(t, downstream.Options{Workers: 1})
		srv := newServer(t)
		gate := srv.conn(100, pairOpts{gate: true})
		startReader(gate.peer)
		cs := make([]*sockConn, 10)
		rs := make([]*peerReader, 10)
		for i := range cs {
			cs[i] = srv.conn(uint64(i), pairOpts{})
			rs[i] = startReader(cs[i].peer)
		}
		gateWorker(t, g, gate)
		p := newPush("m", []byte("x"))
		var buf []byte
		for k := 1; k <= 100; k++ { // interleaved across connections
			for _, c := range cs {
				if k%2 == 0 {
					g.Push(c, p)
				} else {
					buf = respFrame(buf[:0], uint32(k), 3)
					g.Send(c, buf)
				}
			}
		}
		close(gate.gate)
		for i, r := range rs {
			fs := r.waitFrames(t, 100, waitLong)
			for k, f := range fs {
				if (k%2 == 1) != (f.Op == codec.OpPush) {
					t.Fatalf("conn %d frame %d: %v", i, k, f.Op)
				}
			}
			if w := cs[i].writes.Load(); w != 1 {
				t.Fatalf("conn %d: %d writes for 100 frames queued in one batch, want 1", i, w)
			}
		}
	})
}

// TestPushManyStampsSeq: PushMany hands one shared encoding to every
// worker; each connection gets a private copy stamped with its own seq
// sequence, and the shared frame is never written to.
func TestPushManyStampsSeq(t *testing.T) {
	g, _ := newGroup(t, downstream.Options{Workers: 2})
	srv := newServer(t)
	const conns, pushes = 20, 30
	cs := make([]*sockConn, conns)
	rs := make([]*peerReader, conns)
	for i := range cs {
		cs[i] = srv.conn(uint64(i), pairOpts{})
		rs[i] = startReader(cs[i].peer)
	}
	ps := make([]*downstream.Push, pushes)
	pristine := make([][]byte, pushes)
	expect := make([][]int, conns)
	total := 0
	for k := range pushes {
		ps[k] = newPush(fmt.Sprintf("m%d", k), []byte(fmt.Sprintf("body-%d", k)))
		pristine[k] = bytes.Clone(ps[k].Frame)
		var sub []downstream.Conn
		for i, c := range cs {
			if (i+k)%3 != 0 {
				sub = append(sub, c)
				expect[i] = append(expect[i], k)
				total++
			}
		}
		g.PushMany(targets(sub...), ps[k])
	}
	for i, r := range rs {
		fs := r.waitFrames(t, len(expect[i]), waitLong)
		for j, f := range fs {
			k := expect[i][j]
			if f.Op != codec.OpPush || f.Seq != uint32(j+1) || f.meta["id"] != fmt.Sprintf("m%d", k) || string(f.body) != fmt.Sprintf("body-%d", k) {
				t.Fatalf("conn %d push %d: %+v id %q body %q; want seq %d, m%d", i, j, f.Header, f.meta["id"], f.body, j+1, k)
			}
		}
	}
	for k, p := range ps {
		if !bytes.Equal(p.Frame, pristine[k]) {
			t.Fatalf("push %d: shared frame modified", k)
		}
	}
	if st := g.Stats(); st.Deliveries != uint64(total) {
		t.Fatalf("Deliveries = %d, want %d", st.Deliveries, total)
	}

	// Two producers at once: each connection's seqs stay dense, and each
	// producer's pushes keep their order.
	const each = 50
	all := make([]downstream.Conn, conns)
	for i, c := range cs {
		all[i] = c
	}
	var wg sync.WaitGroup
	pushFromTwo(&wg, g, each, func() []downstream.Target { return targets(all...) })
	wg.Wait()
	for i, r := range rs {
		fs := r.waitFrames(t, len(expect[i])+2*each, waitLong)[len(expect[i]):]
		var a, b []string
		for j, f := range fs {
			if f.Seq != uint32(len(expect[i])+j+1) {
				t.Fatalf("conn %d: seq %d at position %d", i, f.Seq, len(expect[i])+j)
			}
			if id := f.meta["id"]; id[0] == 'a' {
				a = append(a, id)
			} else {
				b = append(b, id)
			}
		}
		if len(a) != each || len(b) != each || !slices.IsSorted(a) || !slices.IsSorted(b) {
			t.Fatalf("conn %d: producer order lost: %v / %v", i, a, b)
		}
	}
}

// TestKick: a KICK is written after everything queued before it, then the
// connection is terminated with its status, once; later output is dropped
// and later pushes reach Undelivered.
func TestKick(t *testing.T) {
	for _, withFrame := range []bool{true, false} {
		t.Run(fmt.Sprintf("kickFrame=%v", withFrame), func(t *testing.T) {
			o := downstream.Options{Workers: 2}
			g, _ := newGroup(t, o)
			srv := newServer(t)
			a := srv.conn(1, pairOpts{})
			a.noKick = !withFrame
			r := startReader(a.peer)
			other := srv.conn(2, pairOpts{}) // on the other worker
			ro := startReader(other.peer)

			var buf []byte
			for k := 1; k <= 100; k++ {
				buf = respFrame(buf[:0], uint32(k), 100)
				g.Send(a, buf)
			}
			p := newPush("before", []byte("b"))
			g.Push(a, p)
			g.Kick(a, codec.StatusDuplicateLogin, "logged in elsewhere")

			fs := r.waitEOF(t, waitLong)
			want := 101
			if withFrame {
				want = 102
			}
			if len(fs) != want {
				t.Fatalf("%d frames before EOF, want %d", len(fs), want)
			}
			for k := 1; k <= 100; k++ {
				if fs[k-1].Op != codec.OpResponse || fs[k-1].Seq != uint32(k) {
					t.Fatalf("frame %d: %+v", k, fs[k-1].Header)
				}
			}
			if fs[100].Op != codec.OpPush || fs[100].Seq != 1 {
				t.Fatalf("frame 101: %+v, want the PUSH", fs[100].Header)
			}
			if withFrame {
				k := fs[101]
				if k.Op != codec.OpKick || k.Status != codec.StatusDuplicateLogin || k.meta["reason"] != "logged in elsewhere" {
					t.Fatalf("last frame %+v %v, want KICK(DUPLICATE_LOGIN)", k.Header, k.meta)
				}
			}
			if s := a.waitTerminated(t, waitLong); s != codec.StatusDuplicateLogin {
				t.Fatalf("Terminate(%v), want DUPLICATE_LOGIN", s)
			}

			// After termination: bytes are dropped, pushes are handed back.
			p2 := newPush("after", []byte("a"))
			g.Send(a, pingFrame())
			g.Push(a, p2)
			g.PushMany(targets(a, other), p2)
			g.Kick(a, codec.StatusInternal, "again")
			g.CloseAfterFlush(a, codec.StatusInternal)
			ro.waitFrames(t, 1, waitLong)
			checkFor(t, waitLong, time.Millisecond, func() error {
				if u := a.undeliveredPushes(); len(u) != 2 || u[0] != p2 || u[1] != p2 {
					return fmt.Errorf("undelivered = %v", u)
				}
				return nil
			})
			if st := g.Stats(); st.Undelivered != 2 {
				t.Fatalf("Stats.Undelivered = %d, want 2", st.Undelivered)
			}
			if n := a.termCount.Load(); n != 1 {
				t.Fatalf("Terminate called %d times", n)
			}
			if other.terminated() {
				t.Fatal("the other connection was terminated")
			}
		})
	}
}

// TestKickIsLastFrame: docs/protocol.md makes KICK the server's last word on a
// connection. Output queued for the connection after the Kick (here in the
// same batch, so the worker sees it before the KICK is flushed) must not
// follow the KICK on the wire, and a push queued after it was not
// delivered, so it must reach Undelivered to stay recoverable.
func TestKickIsLastFrame(t *testing.T) {
	g, _ := newGroup(t, downstream.Options{Workers: 1})
	srv := newServer(t)
	gate := srv.conn(100, pairOpts{gate: true})
	startReader(gate.peer)
	a := srv.conn(1, pairOpts{})
	r := startReader(a.peer)

	gateWorker(t, g, gate)
	g.Send(a, respFrame(nil, 1, 4))
	g.Kick(a, codec.StatusDuplicateLogin, "logged in elsewhere")
	g.Send(a, respFrame(nil, 2, 4))
	p := newPush("late", []byte("late push"))
	g.Push(a, p)
	close(gate.gate)

	fs := r.waitEOF(t, waitLong)
	if s := a.waitTerminated(t, waitLong); s != codec.StatusDuplicateLogin {
		t.Fatalf("Terminate(%v)", s)
	}
	var ops []string
	for _, f := range fs {
		ops = append(ops, fmt.Sprintf("%v(seq %d)", f.Op, f.Seq))
	}
	if len(fs) != 2 || fs[0].Op != codec.OpResponse || fs[1].Op != codec.OpKick {
		t.Errorf("wire after Send, Kick, Send, Push: %v; want [RESPONSE KICK]: frames were written after the KICK", ops)
	}
	if u := a.undeliveredPushes(); len(u) != 1 || u[0] != p {
		t.Errorf("the push queued after the Kick was not handed to Undelivered (stamped seqs: %d, undelivered %d)", a.seq.Load(), len(u))
	}
}

// TestCloseAfterFlush: the connection closes, without a KICK, once what was
// queued before is written, even when that takes several retries.
func TestCloseAfterFlush(t *testing.T) {
	t.Run("flushed", func(t *testing.T) {
		g, _ := newGroup(t, downstream.Options{Workers: 1})
		srv := newServer(t)
		a := srv.conn(1, pairOpts{})
		r := startReader(a.peer)
		for k := 1; k <= 50; k++ {
			g.Send(a, respFrame(nil, uint32(k), 10))
		}
		g.CloseAfterFlush(a, codec.StatusUnauthorized)
		fs := r.waitEOF(t, waitLong)
		if len(fs) != 50 || fs[49].Seq != 50 || fs[49].Op != codec.OpResponse {
			t.Fatalf("%d frames before EOF, want the 50 queued and no KICK", len(fs))
		}
		if s := a.waitTerminated(t, waitLong); s != codec.StatusUnauthorized {
			t.Fatalf("Terminate(%v), want UNAUTHORIZED", s)
		}
		if st := g.Stats(); st.FramesOut != 50 {
			t.Fatalf("FramesOut = %d: CloseAfterFlush is not a frame", st.FramesOut)
		}
	})

	t.Run("blocked", func(t *testing.T) {
		g, _ := newGroup(t, downstream.Options{Workers: 1})
		srv := newServer(t)
		a := srv.conn(1, pairOpts{sndbuf: 4096, rcvbuf: 4096})
		const n, size = 200, 1024
		for k := 1; k <= n; k++ {
			g.Send(a, respFrame(nil, uint32(k), size))
		}
		g.CloseAfterFlush(a, codec.StatusUnauthorized)
		checkFor(t, waitLong, time.Millisecond, func() error {
			if st := g.Stats(); st.Pending != 1 {
				return fmt.Errorf("not blocked: %+v", st)
			}
			return nil
		})
		time.Sleep(20 * time.Millisecond) // the test's input: time for a wrong close, which must not come
		if a.terminated() {
			t.Fatal("terminated with bytes still pending")
		}
		r := startReader(a.peer)
		fs := r.waitEOF(t, waitLong)
		if len(fs) != n {
			t.Fatalf("%d frames before EOF, want %d", len(fs), n)
		}
		for k, f := range fs {
			if f.Seq != uint32(k+1) {
				t.Fatalf("frame %d has seq %d", k, f.Seq)
			}
			checkRespBody(t, f, size)
		}
		if s := a.waitTerminated(t, waitLong); s != codec.StatusUnauthorized {
			t.Fatalf("Terminate(%v)", s)
		}
		if st := g.Stats(); st.Pending != 0 || st.SlowConsumers != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestSlowConsumer: a peer that stops reading, behind small kernel
// buffers, piles up more than MaxPending bytes: it is cut off (its queue
// dropped, its later pushes handed to Undelivered) while a connection on
// the same worker receives everything; when it reads again within the
// write timeout it gets whole frames, in order, and then its
// KICK(SLOW_CONSUMER), and only then is it closed.
func TestSlowConsumer(t *testing.T) {
	const maxPending = 64 << 10
	g, _ := newGroup(t, downstream.Options{Workers: 1, MaxPending: maxPending})
	srv := newServer(t)
	slow := srv.conn(1, pairOpts{sndbuf: 4096, rcvbuf: 4096}) // not read until it is cut off
	fast := srv.conn(2, pairOpts{})
	rf := startReader(fast.peer)

	const pushes = 400
	body := bytes.Repeat([]byte{'s'}, 1024)
	ps := make([]*downstream.Push, pushes)
	for k := range ps {
		ps[k] = newPush(fmt.Sprintf("m%d", k), body)
		g.PushMany(targets(slow, fast), ps[k])
		if k%20 == 19 {
			rf.waitFrames(t, k+1, waitLong) // the fast reader keeps up
		}
	}
	checkFor(t, waitLong, time.Millisecond, func() error {
		if slow.cuts.Load() == 0 {
			return fmt.Errorf("slow conn not cut off")
		}
		return nil
	})
	// It may be closed already if its kernel buffers had room for the
	// KICK; what it reads below must end with the KICK either way.

	fs := rf.waitFrames(t, pushes, waitLong)
	for k, f := range fs {
		if f.Seq != uint32(k+1) || f.meta["id"] != fmt.Sprintf("m%d", k) {
			t.Fatalf("fast conn: push %d arrived as %+v id %q", k, f.Header, f.meta["id"])
		}
	}
	if fast.terminated() {
		t.Fatal("fast conn terminated")
	}

	// Every push is accounted for: stamped into the outbox, or handed back.
	checkFor(t, waitLong, time.Millisecond, func() error {
		stamped, und := int(slow.seq.Load()), len(slow.undeliveredPushes())
		if stamped+und != pushes {
			return fmt.Errorf("slow conn: %d stamped + %d undelivered != %d", stamped, und, pushes)
		}
		return nil
	})
	und := slow.undeliveredPushes()
	if len(und) == 0 {
		t.Fatal("no push reached Undelivered after the slow consumer was cut off")
	}
	for i, p := range und {
		if p != ps[pushes-len(und)+i] {
			t.Fatalf("undelivered push %d is not the %d-th pushed", i, pushes-len(und)+i)
		}
	}

	// The peer reads again: whole frames in order (the one the socket
	// took part of completed), then the KICK, then the close.
	rs := startReader(slow.peer)
	got := rs.waitEOF(t, waitLong)
	if s := slow.waitTerminated(t, waitLong); s != codec.StatusSlowConsumer {
		t.Fatalf("slow conn: Terminate(%v), want SLOW_CONSUMER", s)
	}
	if len(got) == 0 {
		t.Fatal("the slow peer read nothing")
	}
	if last := got[len(got)-1]; last.Op != codec.OpKick || last.Status != codec.StatusSlowConsumer {
		t.Fatalf("the slow peer's last frame is %+v, want KICK(SLOW_CONSUMER)", last.Header)
	}
	for k, f := range got[:len(got)-1] {
		if f.Op != codec.OpPush || f.Seq != uint32(k+1) {
			t.Fatalf("slow peer frame %d: %+v", k, f.Header)
		}
	}
	if n := len(got) - 1; n >= int(slow.seq.Load()) {
		t.Fatalf("the slow peer read %d pushes of %d stamped: nothing was dropped", n, slow.seq.Load())
	}
	st := g.Stats()
	if st.SlowConsumers != 1 || st.Undelivered != uint64(len(und)) || st.Pending != 0 {
		t.Fatalf("stats %+v, undelivered %d", st, len(und))
	}
	t.Logf("slow consumer cut after %d pushes stamped; it read %d of them, then its KICK", slow.seq.Load(), len(got)-1)
}

// TestCutOffWaitsWriteTimeout: a cut-off peer whose socket does not take
// its KICK is closed after the write timeout, not before; one whose kernel
// buffers still had room for the KICK is closed once it was written.
func TestCutOffWaitsWriteTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	g, _ := newGroup(t, downstream.Options{Workers: 1, MaxPending: 16 << 10, WriteTimeout: timeout, Retry: 10 * time.Millisecond})
	srv := newServer(t)
	slow := srv.conn(1, pairOpts{sndbuf: 4096, rcvbuf: 4096})
	for k := 1; k <= 200; k++ {
		g.Send(slow, respFrame(nil, uint32(k), 1024))
	}
	checkFor(t, waitLong, time.Millisecond, func() error {
		if slow.cuts.Load() == 0 {
			return fmt.Errorf("not cut off")
		}
		return nil
	})
	cut := time.Now()
	if s := slow.waitTerminated(t, waitLong); s != codec.StatusSlowConsumer {
		t.Fatalf("Terminate(%v), want SLOW_CONSUMER", s)
	}
	slow.mu.Lock()
	elapsed := slow.terminatedAt.Sub(cut)
	slow.mu.Unlock()
	got := startReader(slow.peer).waitEOF(t, waitLong)
	kicked := len(got) > 0 && got[len(got)-1].Op == codec.OpKick && got[len(got)-1].Status == codec.StatusSlowConsumer
	t.Logf("closed %v after the cut; the peer then read %d frames, KICK last: %v", elapsed, len(got), kicked)
	if !kicked && elapsed < timeout/2 {
		t.Fatalf("closed %v after the cut without writing the KICK, want about the %v write timeout", elapsed, timeout)
	}
}

// TestSendBound: answers queued with Send and not yet taken by the worker
// count toward MaxPending per connection: past it Send refuses, so a
// client cannot make the node stage answers faster than they drain.
func TestSendBound(t *testing.T) {
	const maxPending = 32 << 10
	g, _ := newGroup(t, downstream.Options{Workers: 1, MaxPending: maxPending})
	srv := newServer(t)
	gate := srv.conn(100, pairOpts{gate: true})
	startReader(gate.peer)
	c := srv.conn(1, pairOpts{})
	rc := startReader(c.peer)
	gateWorker(t, g, gate) // the worker takes nothing until the gate opens

	frame := respFrame(nil, 1, 1000)
	accepted := 0
	for g.Send(c, frame) {
		accepted++
		if accepted > 2*maxPending/len(frame) {
			t.Fatalf("Send accepted %d frames of %d bytes, over MaxPending %d", accepted, len(frame), maxPending)
		}
	}
	if want := maxPending / len(frame); accepted != want {
		t.Fatalf("Send accepted %d frames of %d bytes, want %d (MaxPending %d)", accepted, len(frame), want, maxPending)
	}
	close(gate.gate)
	rc.waitFrames(t, accepted, waitLong)
	// Taken by the worker, the bound frees again.
	checkFor(t, waitLong, time.Millisecond, func() error {
		if !g.Send(c, frame) {
			return fmt.Errorf("Send still refuses after the worker took the queue")
		}
		return nil
	})
}

// TestWriteTimeout: a socket that refuses every byte for WriteTimeout is
// cut as a slow consumer even though its pending bytes are far below
// MaxPending; another connection on the same worker keeps receiving.
func TestWriteTimeout(t *testing.T) {
	const timeout = 150 * time.Millisecond
	g, _ := newGroup(t, downstream.Options{Workers: 1, MaxPending: 1 << 20, WriteTimeout: timeout, Retry: time.Millisecond})
	srv := newServer(t)
	stuck := srv.conn(1, pairOpts{sndbuf: 4096, rcvbuf: 4096})
	other := srv.conn(2, pairOpts{})
	ro := startReader(other.peer)

	start := time.Now()
	for k := 1; k <= 64; k++ { // 64 KiB: fills the kernel buffers, 1/16 of MaxPending
		g.Send(stuck, respFrame(nil, uint32(k), 1024))
	}
	checkFor(t, waitLong, time.Millisecond, func() error {
		if g.Stats().Pending != 1 {
			return fmt.Errorf("socket not blocked")
		}
		return nil
	})
	for k := 1; k <= 20; k++ { // one at a time, each received while stuck is blocked
		g.Send(other, respFrame(nil, uint32(k), 10))
		ro.waitFrames(t, k, waitLong)
	}

	if s := stuck.waitTerminated(t, waitLong); s != codec.StatusSlowConsumer {
		t.Fatalf("Terminate(%v), want SLOW_CONSUMER", s)
	}
	stuck.mu.Lock()
	elapsed := stuck.terminatedAt.Sub(start)
	stuck.mu.Unlock()
	t.Logf("cut after %v; socket took %d bytes, %d refusals", elapsed, stuck.wrote.Load(), stuck.refusals.Load())
	if elapsed < timeout {
		t.Fatalf("cut after %v, before WriteTimeout %v", elapsed, timeout)
	}
	if elapsed > timeout+3*time.Second {
		t.Fatalf("cut after %v, long after WriteTimeout %v", elapsed, timeout)
	}
	if st := g.Stats(); st.SlowConsumers != 1 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
	if other.terminated() {
		t.Fatal("the other connection was terminated")
	}
}

// TestWriteTimeoutCountsFromLastProgress: Options.WriteTimeout is "how
// long a socket may refuse all bytes". A peer that reads slowly but
// steadily, so that every retry or nearly every one moves bytes, is not
// refusing all bytes and must not be cut while its backlog stays under
// MaxPending.
func TestWriteTimeoutCountsFromLastProgress(t *testing.T) {
	const timeout = 300 * time.Millisecond
	g, _ := newGroup(t, downstream.Options{Workers: 1, MaxPending: 1 << 20, WriteTimeout: timeout, Retry: time.Millisecond})
	srv := newServer(t)
	a := srv.conn(1, pairOpts{sndbuf: 4096, rcvbuf: 4096})

	const n, size = 160, 1024
	for k := 1; k <= n; k++ {
		g.Send(a, respFrame(nil, uint32(k), size))
	}
	want := n * (codec.HeaderSize + size)

	// The peer reads 2 KiB every 10 ms: about 200 KB/s, so the 164 KiB
	// backlog takes most of a second, with progress every few ms.
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		for got.Len() < want {
			k, err := a.peer.Read(buf)
			got.Write(buf[:k])
			if err != nil {
				done <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		done <- nil
	}()
	var readErr error
	select {
	case readErr = <-done:
	case <-time.After(waitLong):
		t.Fatal("slow reader stuck")
	}

	a.mu.Lock()
	progress := slices.Clone(a.progressAt)
	termAt := a.terminatedAt
	a.mu.Unlock()
	var maxGap time.Duration
	for i := 1; i < len(progress); i++ {
		maxGap = max(maxGap, progress[i].Sub(progress[i-1]))
	}
	if a.terminated() && len(progress) > 0 {
		maxGap = max(maxGap, termAt.Sub(progress[len(progress)-1]))
	}
	t.Logf("%d writes took bytes, largest gap %v; read %d of %d bytes (%v); terminated %v", len(progress), maxGap, got.Len(), want, readErr, a.terminated())
	if a.terminated() {
		if maxGap >= timeout {
			t.Logf("the socket really refused everything for %v: a cut is allowed", maxGap)
			return
		}
		s := a.waitTerminated(t, time.Second)
		t.Fatalf("cut with %v after %d bytes although the socket took bytes at least every %v (WriteTimeout %v): the timeout counts from the first refusal, not from the last progress",
			s, a.wrote.Load(), maxGap, timeout)
	}
	if readErr != nil || got.Len() != want {
		t.Fatalf("read %d of %d bytes: %v", got.Len(), want, readErr)
	}
}

// TestPeerGone: a write error (the peer reset the connection) terminates
// the connection with OK, and later pushes reach Undelivered.
func TestPeerGone(t *testing.T) {
	g, _ := newGroup(t, downstream.Options{Workers: 1})
	srv := newServer(t)
	a := srv.conn(1, pairOpts{})
	if err := a.peer.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	a.peer.Close() // RST
	checkFor(t, waitLong, 2*time.Millisecond, func() error {
		if a.terminated() {
			return nil
		}
		g.Send(a, pingFrame())
		return fmt.Errorf("not terminated")
	})
	if s := a.waitTerminated(t, waitLong); s != codec.StatusOK {
		t.Fatalf("Terminate(%v), want OK for a peer that left", s)
	}
	a.mu.Lock()
	writeErr := a.writeErr
	a.mu.Unlock()
	if writeErr == nil {
		t.Fatal("Terminate was not told of the failed write")
	}
	p := newPush("x", nil)
	g.Push(a, p)
	checkFor(t, waitLong, time.Millisecond, func() error {
		if u := a.undeliveredPushes(); len(u) != 1 || u[0] != p {
			return fmt.Errorf("undelivered %v", u)
		}
		return nil
	})
	if st := g.Stats(); st.SlowConsumers != 0 || st.Undelivered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCloseStopsWorkers: Close writes what was queued and stops every
// worker goroutine.
func TestCloseStopsWorkers(t *testing.T) {
	srv := newServer(t)
	a := srv.conn(1, pairOpts{})
	r := startReader(a.peer)
	before := runtime.NumGoroutine()

	g, stop := newGroup(t, downstream.Options{Workers: 4})
	if g.Workers() != 4 {
		t.Fatalf("Workers() = %d", g.Workers())
	}
	if n := runtime.NumGoroutine(); n < before+4 {
		t.Fatalf("%d goroutines after New, want at least %d", n, before+4)
	}
	for k := 1; k <= 100; k++ {
		g.Send(a, respFrame(nil, uint32(k), 8))
	}
	stop()
	fs := r.waitFrames(t, 100, waitLong)
	if fs[99].Seq != 100 {
		t.Fatalf("last frame %+v", fs[99].Header)
	}
	checkFor(t, waitLong, time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines after Close, %d before New", n, before)
		}
		return nil
	})
	def, err := downstream.New(downstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if def.Workers() != 1 {
		t.Fatalf("zero Options: %d workers, want 1", def.Workers())
	}
	def.Close()
}

// TestTransportFraming: with a transport that frames messages (WebSocket),
// every frame is wrapped by Conn.AppendFrame, StampPush gets the frame's
// own bytes inside the wrapping, and SendRaw bytes go out as they are, all
// in order.
func TestTransportFraming(t *testing.T) {
	g, _ := newGroup(t, downstream.Options{Workers: 1})
	srv := newServer(t)
	a := srv.conn(1, pairOpts{})
	a.ws = true

	handshake := []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
	g.SendRaw(a, handshake)
	g.Send(a, respFrame(nil, 1, 10))
	g.Push(a, newPush("m1", []byte("hello")))
	g.Send(a, respFrame(nil, 2, 300))                          // 16-bit WebSocket length
	g.SendRaw(a, []byte{0x8A, 0x00})                           // a WebSocket pong, as is
	g.Push(a, newPush("m2", bytes.Repeat([]byte{'b'}, 70000))) // 64-bit length
	g.Kick(a, codec.StatusShuttingDown, "bye")

	r := startRawReader(a.peer)
	all := r.wait(t, waitLong)
	if !bytes.HasPrefix(all, handshake) {
		t.Fatalf("stream does not start with the raw handshake: %q", all[:min(len(all), 64)])
	}
	b := all[len(handshake):]
	type msg struct {
		opcode byte
		f      frame
	}
	var msgs []msg
	for len(b) > 0 {
		if len(b) < 2 {
			t.Fatalf("cut WebSocket header: %x", b)
		}
		op, n, hl := b[0], int(b[1]), 2
		switch n {
		case 126:
			n, hl = int(b[2])<<8|int(b[3]), 4
		case 127:
			n, hl = 0, 10
			for i := 2; i < 10; i++ {
				n = n<<8 | int(b[i])
			}
		}
		payload := b[hl : hl+n]
		b = b[hl+n:]
		m := msg{opcode: op}
		if op == 0x82 {
			f, k, err := codec.Decode(payload, 1<<20)
			if err != nil || k != len(payload) {
				t.Fatalf("message of %d bytes is not one frame: %d, %v", len(payload), k, err)
			}
			m.f = frame{Header: f.Header, body: bytes.Clone(f.Body)}
		}
		msgs = append(msgs, m)
	}
	want := []struct {
		opcode byte
		op     codec.Op
		seq    uint32
	}{
		{0x82, codec.OpResponse, 1}, {0x82, codec.OpPush, 1}, {0x82, codec.OpResponse, 2},
		{0x8A, 0, 0}, {0x82, codec.OpPush, 2}, {0x82, codec.OpKick, 0},
	}
	if len(msgs) != len(want) {
		t.Fatalf("%d messages, want %d", len(msgs), len(want))
	}
	for i, w := range want {
		m := msgs[i]
		if m.opcode != w.opcode || m.f.Op != w.op || m.f.Seq != w.seq {
			t.Fatalf("message %d: opcode %#x %v seq %d; want %#x %v seq %d", i, m.opcode, m.f.Op, m.f.Seq, w.opcode, w.op, w.seq)
		}
	}
	if len(msgs[4].f.body) != 70000 {
		t.Fatal("large push body")
	}
	if s := a.waitTerminated(t, waitLong); s != codec.StatusShuttingDown {
		t.Fatalf("Terminate(%v)", s)
	}
}

// TestPushBackpressure: while a worker cannot take its queue, Push and
// PushMany wait once the queue exceeds MaxQueue instead of growing it, and
// everything is delivered once the worker moves again.
func TestPushBackpressure(t *testing.T) {
	const maxQueue = 50
	g, _ := newGroup(t, downstream.Options{Workers: 1, MaxQueue: maxQueue})
	srv := newServer(t)
	gate := srv.conn(100, pairOpts{gate: true})
	startReader(gate.peer)
	a := srv.conn(1, pairOpts{})
	ra := startReader(a.peer)
	gateWorker(t, g, gate)

	const pushes = 500
	var queued atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := 0; k < pushes; k++ {
			g.PushMany(targets(a), newPush(fmt.Sprintf("m%d", k), []byte("x")))
			queued.Add(1)
		}
	}()
	// The producer must stall just past the bound while the worker is held:
	// the wait is the test's input, time in which it must not go further
	// (the Queued check below fails if it never started).
	time.Sleep(200 * time.Millisecond)
	if n := queued.Load(); n > maxQueue+1 {
		t.Fatalf("%d pushes queued while the worker was held; MaxQueue is %d", n, maxQueue)
	}
	// The producer appended its current push and waits for room: the
	// queue holds every push it counted, plus that one.
	if q, want := g.Stats().Queued, queued.Load()+1; q != want {
		t.Fatalf("Stats.Queued = %d while the worker was held, want %d", q, want)
	}
	close(gate.gate)
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("producer still blocked after the worker moved")
	}
	fs := ra.waitFrames(t, pushes, waitLong)
	for k, f := range fs {
		if f.Seq != uint32(k+1) {
			t.Fatalf("push %d has seq %d", k, f.Seq)
		}
	}
}

// panicConn is a connection whose transport panics when it frames a
// frame: a bug the worker must survive.
type panicConn struct{ out downstream.Outbox }

func (c *panicConn) ID() uint64                         { return 2 }
func (c *panicConn) Outbox() *downstream.Outbox         { return &c.out }
func (c *panicConn) Write(b []byte) (int, error)        { return len(b), nil }
func (c *panicConn) Backlog() int                       { return 0 }
func (c *panicConn) StampPush([]byte, *downstream.Push) {}
func (c *panicConn) Undelivered(*downstream.Push)       {}
func (c *panicConn) Terminate(codec.Status, error)      {}
func (c *panicConn) Cut(codec.Status)                   {}
func (c *panicConn) FrameLen(b []byte) int              { return codec.FrameSize(b) }
func (c *panicConn) WatchWritable(int, uint64) error    { return nil }
func (c *panicConn) AppendFrame(dst, frame []byte) ([]byte, int) {
	panic("transport bug")
}

// AppendKick implements downstream.Conn: no KICK.
func (c *panicConn) AppendKick(dst []byte, _ codec.Status, _ string) []byte { return dst }

// TestWorkerSurvivesPanic: a panic in one connection's transport is
// recovered and counted, and the worker goes on serving its others.
func TestWorkerSurvivesPanic(t *testing.T) {
	g, _ := newGroup(t, downstream.Options{Workers: 1})
	srv := newServer(t)
	a := srv.conn(1, pairOpts{})
	ra := startReader(a.peer)
	g.Send(&panicConn{}, respFrame(nil, 1, 0))
	checkFor(t, waitLong, time.Millisecond, func() error {
		if p := g.Stats().Panics; p != 1 {
			return fmt.Errorf("panics = %d, want 1", p)
		}
		return nil
	})
	for k := 1; k <= 10; k++ {
		g.Send(a, respFrame(nil, uint32(k), 0))
	}
	fs := ra.waitFrames(t, 10, waitLong)
	for k, f := range fs {
		if f.Seq != uint32(k+1) {
			t.Fatalf("frame %d has seq %d", k, f.Seq)
		}
	}
}

// TestBlockedSocketsCostNothing: a socket that refuses bytes costs
// nothing while it stays full: with the default options the worker waits
// for the kernel to report it writable (EPOLLOUT) instead of trying it
// again on a short timer (2 ms once: about 100 attempts per socket here).
func TestBlockedSocketsCostNothing(t *testing.T) {
	const conns = 50
	g, _ := newGroup(t, downstream.Options{Workers: 2})
	blockSockets(t, g, conns)
	// The peers' kernels may still be acknowledging the last bytes, which
	// makes room for a last write or two: let them finish.
	time.Sleep(100 * time.Millisecond)
	before := g.Stats().Writes
	time.Sleep(200 * time.Millisecond)
	// At most the once-a-second retry and one late report each.
	if idle := g.Stats().Writes - before; idle > 2*conns {
		t.Fatalf("%d write attempts on %d full sockets in 200 ms; want at most two each", idle, conns)
	}
}

// TestBlockedSocketsWakeOnWritable: once the peers read, the kernel's
// report moves the pending bytes. Retry is an hour here, so nothing else
// can.
func TestBlockedSocketsWakeOnWritable(t *testing.T) {
	const conns = 50
	g, _ := newGroup(t, downstream.Options{Workers: 2, WriteTimeout: time.Hour, Retry: time.Hour})
	cs, want := blockSockets(t, g, conns)
	readers := make([]*rawReader, conns)
	for i, c := range cs {
		readers[i] = startRawReader(c.peer)
	}
	checkFor(t, waitLong, time.Millisecond, func() error {
		for i, c := range cs {
			if got := c.wrote.Load(); got != int64(want) {
				return fmt.Errorf("conn %d: socket took %d of %d bytes", i+1, got, want)
			}
		}
		if p := g.Stats().Pending; p != 0 {
			return fmt.Errorf("%d sockets still blocked", p)
		}
		return nil
	})
	for _, c := range cs {
		if c.terminated() {
			t.Fatalf("conn %d terminated", c.id)
		}
		c.nc.CloseWrite()
	}
	for i, r := range readers {
		if got := len(r.wait(t, waitLong)); got != want {
			t.Fatalf("peer %d read %d bytes, want %d", i+1, got, want)
		}
	}
}

// blockSockets opens conns connections with small kernel buffers, queues
// 64 KiB for each (more than those buffers hold) and waits until every
// socket has refused bytes. want is the bytes queued per connection.
func blockSockets(t *testing.T, g *downstream.Group, conns int) (cs []*sockConn, want int) {
	t.Helper()
	const frames, size = 64, 1024
	srv := newServer(t)
	cs = make([]*sockConn, conns)
	for i := range cs {
		cs[i] = srv.conn(uint64(i+1), pairOpts{sndbuf: 4096, rcvbuf: 4096})
		for k := 1; k <= frames; k++ {
			g.Send(cs[i], respFrame(nil, uint32(k), size))
		}
	}
	checkFor(t, waitLong, time.Millisecond, func() error {
		if p := g.Stats().Pending; p != int64(conns) {
			return fmt.Errorf("%d sockets blocked, want %d", p, conns)
		}
		return nil
	})
	return cs, frames * (codec.HeaderSize + size)
}
