package recovery_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/recovery"
)

// seqsOf lists the seqs and frames of st as "seq:frame".
func seqsOf(st recovery.State) []string {
	var out []string
	for _, it := range st.Items {
		out = append(out, fmt.Sprintf("%d:%s", it.Seq, it.Frame))
	}
	return out
}

// TestRedisJournal: journaled pushes are in Redis with their seqs, acks
// drop them, and TakeFrom leaves the state journaled for the taker.
func TestRedisJournal(t *testing.T) {
	r, rdb := sharedRedis(t, 8, time.Minute)
	ctx := t.Context()
	err := r.Journal(ctx, []recovery.JournalOp{
		{Device: "dev", Seq: 4, Frame: []byte("a")},
		{Device: "dev", Seq: 5, Frame: []byte("b")},
		{Device: "dev", Seq: 7, Frame: []byte("c")}, // 6 was not durable
		{Device: "dev", Seq: 5},                     // an ack
	})
	if err != nil {
		t.Fatal(err)
	}
	st, ok, err := r.TakeFrom(ctx, "dev", 7)
	if err != nil || !ok || st.Seq != 7 || !slices.Equal(seqsOf(st), []string{"7:c"}) {
		t.Fatalf("TakeFrom after journal and ack: %v %v %+v %q, want seq 7 and 7:c", ok, err, st, seqsOf(st))
	}
	// Still there, journaled by the taker: the next take finds it.
	if n, _ := rdb.Exists(ctx, "longlink:rs:{dev}", "longlink:rb:{dev}", "longlink:rj:{dev}").Result(); n != 3 {
		t.Fatalf("%d of the 3 keys left after TakeFrom, want all", n)
	}
	if _, ok, _ := r.Take(ctx, "dev"); !ok {
		t.Fatal("Take after TakeFrom found nothing")
	}
	if n, _ := rdb.Exists(ctx, "longlink:rs:{dev}", "longlink:rb:{dev}", "longlink:rj:{dev}").Result(); n != 0 {
		t.Fatalf("%d keys left after Take, want none", n)
	}
}

// TestRedisJournalNodeDied: after the journaling node died, pushes
// appended get no seq, and the login numbers them after the higher of the
// stored seq and the client's resume; KeepLost creates a state for a
// device that had none.
func TestRedisJournalNodeDied(t *testing.T) {
	r, _ := sharedRedis(t, 8, time.Minute)
	ctx := t.Context()
	if err := r.Journal(ctx, []recovery.JournalOp{{Device: "dev", Seq: 3, Frame: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	kept, err := r.Append(ctx, []recovery.Push{{Device: "dev", Frame: []byte("b")}, {Device: "new", Frame: []byte("x"), Lost: true}, {Device: "none", Frame: []byte("y")}})
	if err != nil || !slices.Equal(kept, []recovery.Kept{recovery.Stored, recovery.Stored, recovery.NoState}) {
		t.Fatalf("Append = %v, %v; want kept, kept (Lost creates), not kept", kept, err)
	}
	// The client saw seq 9 (pushes that were not durable): b comes after.
	st, ok, err := r.TakeFrom(ctx, "dev", 9)
	if err != nil || !ok || st.Seq != 10 || !slices.Equal(seqsOf(st), []string{"3:a", "10:b"}) {
		t.Fatalf("TakeFrom(9): %v %v seq %d %q, want seq 10: 3:a 10:b", ok, err, st.Seq, seqsOf(st))
	}
	st, ok, err = r.TakeFrom(ctx, "new", 4)
	if err != nil || !ok || st.Seq != 5 || !slices.Equal(seqsOf(st), []string{"5:x"}) {
		t.Fatalf("TakeFrom(4) of a created state: %v %v seq %d %q, want 5:x", ok, err, st.Seq, seqsOf(st))
	}
}

// TestRedisJournalMark: a push journaled under a mark is not kept again
// by an Append that names the mark (its sender got no answer from the node
// that journaled it, then died), even once it is acknowledged and gone
// from the state; one journaled under another mark, or none, is kept.
func TestRedisJournalMark(t *testing.T) {
	r, rdb := sharedRedis(t, 8, time.Minute)
	ctx := t.Context()
	err := r.Journal(ctx, []recovery.JournalOp{
		{Device: "dev", Seq: 1, Frame: []byte("a"), Mark: "i1.1"},
		{Device: "dev", Seq: 2, Frame: []byte("b"), Mark: "i1.2"},
		{Device: "dev", Seq: 2}, // both acknowledged: gone from the state
		{Device: "dev", Seq: 3, Frame: []byte("c")},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A mark lasts MarkTTL, not the state's TTL: it is read within seconds.
	if ttl, _ := rdb.PTTL(ctx, "longlink:rm:{dev}:i1.1").Result(); ttl <= 0 || ttl > recovery.MarkTTL {
		t.Fatalf("the mark's TTL is %v, want (0, %v]", ttl, recovery.MarkTTL)
	}
	kept, err := r.Append(ctx, []recovery.Push{
		{Device: "dev", Frame: []byte("a"), Lost: true, Unless: "i1.1"},
		{Device: "dev", Frame: []byte("b"), Lost: true, Unless: "i1.2"},
		{Device: "dev", Frame: []byte("d"), Lost: true, Unless: "i1.3"},
		{Device: "other", Frame: []byte("e"), Lost: true, Unless: "i1.1"}, // a mark is per device
	})
	want := []recovery.Kept{recovery.Journaled, recovery.Journaled, recovery.Stored, recovery.Stored}
	if err != nil || !slices.Equal(kept, want) {
		t.Fatalf("Append = %v, %v; want %v", kept, err, want)
	}
	st, ok, err := r.TakeFrom(ctx, "dev", 3)
	if err != nil || !ok || !slices.Equal(seqsOf(st), []string{"3:c", "4:d"}) {
		t.Fatalf("TakeFrom(3): %v %v %q, want 3:c 4:d: each push once", ok, err, seqsOf(st))
	}
}

// TestStoreJournal: the store journals in batches, calls each push's done
// once it is written, and keeps a device's highest ack of a batch.
func TestStoreJournal(t *testing.T) {
	r, _ := sharedRedis(t, 8, time.Minute)
	s := recovery.New(8, time.Minute)
	s.Share(r, recovery.ShareOptions{Durable: true})
	defer s.Close()
	if !s.Durable() {
		t.Fatal("a store shared with Redis and Durable does not journal")
	}
	var wg sync.WaitGroup
	for seq := uint32(1); seq <= 20; seq++ {
		wg.Add(1)
		s.Journal("dev", seq, []byte(fmt.Sprint(seq)), "", wg.Done)
	}
	wg.Wait()
	s.JournalAck("dev", 12)
	s.JournalAck("dev", 18)
	s.JournalAck("dev", 15)
	// A marker push after the acks: once it is written, so are they.
	wg.Add(1)
	s.Journal("dev", 21, []byte("21"), "", wg.Done)
	wg.Wait()
	st, ok, err := r.TakeFrom(t.Context(), "dev", 0)
	if err != nil || !ok || !slices.Equal(seqsOf(st), []string{"19:19", "20:20", "21:21"}) {
		t.Fatalf("after acks up to 18: %v %v %q, want 19, 20, 21", ok, err, seqsOf(st))
	}
	if n := s.JournalDropped(); n != 0 {
		t.Fatalf("%d journal ops dropped", n)
	}
}

// TestStoreResumeAfterCrash: a device whose node died resumes its
// journaled pushes on another node, but never as provably complete up to
// the seqs the dead node may have used; after a push numbered by the new
// node it is again.
func TestStoreResumeAfterCrash(t *testing.T) {
	r, _ := sharedRedis(t, 8, time.Minute)
	dead := recovery.New(8, time.Minute)
	dead.Share(r, recovery.ShareOptions{Durable: true})
	var wg sync.WaitGroup
	for seq := uint32(1); seq <= 3; seq++ {
		wg.Add(1)
		dead.Journal("dev", seq, []byte(fmt.Sprint(seq)), "", wg.Done)
	}
	wg.Wait()
	dead.Close() // the node is gone; its memory with it

	s := recovery.New(8, time.Minute)
	s.Share(r, recovery.ShareOptions{Durable: true})
	defer s.Close()
	e := s.AttachFrom("dev", time.Now(), 1)
	if e == nil {
		t.Fatal("no state taken over from the journal")
	}
	var got []uint32
	complete := e.Since(1, func(seq uint32, _ []byte) { got = append(got, seq) })
	if complete || !slices.Equal(got, []uint32{2, 3}) {
		t.Fatalf("Since(1) after a crash: %v complete=%v, want 2, 3 and not complete", got, complete)
	}
	seq := e.Record([]byte("new"), 8)
	if seq != 4 {
		t.Fatalf("the first push after the takeover has seq %d, want 4", seq)
	}
	if !e.Since(seq, func(uint32, []byte) {}) {
		t.Fatal("a resume from a seq the new node gave is not complete")
	}
}

// TestRedisLostBack: a durable push for a dead node's device is kept
// while the device's binding still names the dead instance (or it has
// none), and not kept once it names another: the device logged in again.
func TestRedisLostBack(t *testing.T) {
	_, rdb := sharedRedis(t, 8, time.Minute)
	bind := func(d string) string { return "longlink:d:{" + d + "}" }
	r := recovery.NewRedis(recovery.RedisConfig{Client: rdb, Size: 8, TTL: time.Minute, Binding: bind})
	ctx := t.Context()
	push := func(frame string) []recovery.Kept {
		t.Helper()
		kept, err := r.Append(ctx, []recovery.Push{{Device: "dev", Frame: []byte(frame), Lost: true, Check: true, Dead: "dead-1"}})
		if err != nil {
			t.Fatal(err)
		}
		return kept
	}
	if kept := push("a"); !slices.Equal(kept, []recovery.Kept{recovery.Stored}) {
		t.Fatalf("no binding: kept %v, want kept", kept)
	}
	rdb.Set(ctx, bind("dev"), "7 dead-1 n2", 0)
	if kept := push("b"); !slices.Equal(kept, []recovery.Kept{recovery.Stored}) {
		t.Fatalf("bound to the dead instance: kept %v, want kept", kept)
	}
	rdb.Set(ctx, bind("dev"), "9 live-1 n0", 0)
	if kept := push("c"); !slices.Equal(kept, []recovery.Kept{recovery.Bound}) {
		t.Fatalf("bound to a live instance: kept %v, want not kept", kept)
	}
	st, _, err := r.TakeFrom(ctx, "dev", 0)
	if err != nil || !slices.Equal(seqsOf(st), []string{"1:a", "2:b"}) {
		t.Fatalf("the state holds %q (%v), want 1:a 2:b and not c", seqsOf(st), err)
	}
}

// TestKeepBack: Keep does not append a push that a login would not see.
// A device whose state a connection here holds (a login under way), or
// whose binding names a live instance (its new node may have taken its
// state), is handed back to be routed anew; an unbound device with state
// gets the push.
func TestKeepBack(t *testing.T) {
	_, rdb := sharedRedis(t, 8, time.Minute)
	bind := func(d string) string { return "longlink:d:{" + d + "}" }
	r := recovery.NewRedis(recovery.RedisConfig{Client: rdb, Size: 8, TTL: time.Minute, Binding: bind})
	s := sharedStore(t, r, 8)
	ctx := t.Context()
	for _, d := range []string{"held", "bound", "free"} {
		if err := r.Save(ctx, d, recovery.State{Seq: 1}); err != nil {
			t.Fatal(err)
		}
	}
	e := s.Attach("held", t0)
	if e == nil {
		t.Fatal("no state to attach")
	}
	rdb.Set(ctx, bind("bound"), "9 live-1 n0", 0)
	back, err := s.Keep(ctx, []string{"held", "bound", "free"}, frame("p", 2), t0)
	if err != nil || !slices.Equal(back, []string{"held", "bound"}) {
		t.Fatalf("Keep = back %q, %v; want held and bound back", back, err)
	}
	if st, _, _ := r.Take(ctx, "bound"); st.Seq != 1 || len(st.Items) != 0 {
		t.Fatalf("bound's state got the push: %+v", st)
	}
	if st, _, _ := r.Take(ctx, "free"); st.Seq != 2 || len(st.Items) != 1 {
		t.Fatalf("free's state = %+v, want the push as seq 2", st)
	}
	s.Detach(e, t0)
}
