package recovery_test

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/recovery"
)

// t0 is the fake clock's origin; the API takes time.Time, so no test here
// sleeps.
var t0 = time.Unix(1_700_000_000, 0)

const ttl = 2 * time.Minute

// frame is a distinct push encoding for seq-th push of a test.
func frame(tag string, i int) []byte { return []byte(fmt.Sprintf("%s-%d", tag, i)) }

type got struct {
	seq   uint32
	frame string
}

// since collects what Since hands over.
func since(e *recovery.Entry, resume uint32) (items []got, complete bool) {
	complete = e.Since(resume, func(seq uint32, f []byte) {
		items = append(items, got{seq, string(f)})
	})
	return items, complete
}

// want lists pushes from seq lo to hi, tagged as recorded by record.
func want(tag string, lo, hi uint32) []got {
	var w []got
	for s := lo; s <= hi; s++ {
		w = append(w, got{s, string(frame(tag, int(s)))})
	}
	return w
}

// record records n pushes frame(tag, seq) and checks the seqs given.
func record(t *testing.T, e *recovery.Entry, tag string, n, size int) {
	t.Helper()
	for range n {
		next := e.Seq() + 1
		if seq := e.Record(frame(tag, int(next)), size); seq != next {
			t.Fatalf("Record = %d, want %d", seq, next)
		}
	}
}

func TestSeqCountsFromOneAcrossReconnects(t *testing.T) {
	s := recovery.New(8, ttl)
	if e := s.Attach("dev", t0); e != nil {
		t.Fatal("Attach returned an entry for an unknown device")
	}
	e := s.Acquire("dev")
	if e.Seq() != 0 {
		t.Fatalf("new entry Seq = %d", e.Seq())
	}
	for i := uint32(1); i <= 3; i++ {
		if seq := e.Record(frame("p", int(i)), 8); seq != i {
			t.Fatalf("Record #%d = %d", i, seq)
		}
	}
	s.Detach(e, t0)
	e2 := s.Attach("dev", t0.Add(ttl/2))
	if e2 != e {
		t.Fatal("Attach within the TTL did not return the device's entry")
	}
	if seq := e2.Record(frame("p", 4), 8); seq != 4 {
		t.Fatalf("seq after reconnect = %d, want 4", seq)
	}
	// Acquire of a device that has an entry returns that entry.
	if e3 := s.Acquire("dev"); e3 != e {
		t.Fatal("Acquire made a second entry")
	}
	// Other devices have their own counters.
	if seq := s.Acquire("other").Record(frame("o", 1), 8); seq != 1 {
		t.Fatalf("other device's first seq = %d", seq)
	}
}

func TestSeqRestartsAfterTTL(t *testing.T) {
	s := recovery.New(8, ttl)
	e := s.Acquire("dev")
	record(t, e, "p", 5, 8)
	s.Detach(e, t0)
	if s.Attach("dev", t0.Add(ttl+time.Nanosecond)) != nil {
		t.Fatal("Attach after the TTL returned the expired entry")
	}
	// The expired entry is gone for good, even for an earlier clock.
	if s.Attach("dev", t0) != nil {
		t.Fatal("expired entry not dropped")
	}
	e2 := s.Acquire("dev")
	if e2 == e {
		t.Fatal("Acquire returned the expired entry")
	}
	if seq := e2.Record(frame("p", 1), 8); seq != 1 {
		t.Fatalf("seq after expiry = %d, want 1", seq)
	}
	// A resume from the old counter cannot be satisfied.
	if _, complete := since(e2, 5); complete {
		t.Fatal("resume from an older counter reported complete")
	}
}

func TestRingKeepsLastSize(t *testing.T) {
	const size = 4
	s := recovery.New(size, ttl)
	e := s.Acquire("dev")

	// Before anything is evicted.
	record(t, e, "p", 3, size)
	if items, complete := since(e, 0); !complete || !reflect.DeepEqual(items, want("p", 1, 3)) {
		t.Fatalf("Since(0) = %v, %v", items, complete)
	}

	record(t, e, "p", 7, size) // seqs 1..10, ring keeps 7..10
	cases := []struct {
		resume   uint32
		items    []got
		complete bool
	}{
		{0, want("p", 7, 10), false}, // 1..6 are gone
		{5, want("p", 7, 10), false}, // 6 is gone
		{6, want("p", 7, 10), true},  // exactly the oldest kept is needed
		{7, want("p", 8, 10), true},  // later ones only
		{9, want("p", 10, 10), true}, // the last one
		{10, nil, true},              // up to date
		{11, nil, false},             // ahead of the counter
		{1 << 31, nil, false},        // far ahead
		{4294967295, nil, false},     // max uint32
	}
	for _, c := range cases {
		items, complete := since(e, c.resume)
		if complete != c.complete || !reflect.DeepEqual(items, c.items) {
			t.Errorf("Since(%d) = %v, %v; want %v, %v", c.resume, items, complete, c.items, c.complete)
		}
	}

	// Wrap around the ring several times.
	record(t, e, "p", 3*size+1, size) // seqs up to 23
	if items, complete := since(e, 19); !complete || !reflect.DeepEqual(items, want("p", 20, 23)) {
		t.Fatalf("after wrapping: Since(19) = %v, %v", items, complete)
	}
}

func TestSinceOnNilAndEmpty(t *testing.T) {
	var nilEntry *recovery.Entry
	if _, complete := since(nilEntry, 0); !complete {
		t.Fatal("nil entry, resume 0: want complete")
	}
	for _, r := range []uint32{1, 64, 4294967295} {
		if items, complete := since(nilEntry, r); complete || items != nil {
			t.Fatalf("nil entry, resume %d: %v, %v; want incomplete", r, items, complete)
		}
	}
	s := recovery.New(4, ttl)
	e := s.Acquire("dev") // an entry with no push yet
	if _, complete := since(e, 0); !complete {
		t.Fatal("empty entry, resume 0: want complete")
	}
	if _, complete := since(e, 1); complete {
		t.Fatal("empty entry, resume 1: want incomplete")
	}
}

func TestSizeZeroKeepsNothing(t *testing.T) {
	s := recovery.New(0, ttl)
	e := s.Acquire("dev")
	record(t, e, "p", 3, 0)
	if items, complete := since(e, 2); complete || items != nil {
		t.Fatalf("size 0: Since(2) = %v, %v", items, complete)
	}
	if _, complete := since(e, 3); !complete {
		t.Fatal("size 0: up-to-date resume must be complete")
	}
	e.Ack(3)
	e.Ack(99)
}

func TestAck(t *testing.T) {
	s := recovery.New(8, ttl)
	e := s.Acquire("dev")
	record(t, e, "p", 5, 8)

	e.Ack(3)
	if items, complete := since(e, 3); !complete || !reflect.DeepEqual(items, want("p", 4, 5)) {
		t.Fatalf("after Ack(3): Since(3) = %v, %v", items, complete)
	}
	// The acked pushes are gone from the ring.
	if items, _ := since(e, 0); !reflect.DeepEqual(items, want("p", 4, 5)) {
		t.Fatalf("after Ack(3): kept %v", items)
	}

	e.Ack(99) // beyond seq: ignored
	e.Ack(6)  // beyond seq by one: ignored
	if items, complete := since(e, 3); !complete || !reflect.DeepEqual(items, want("p", 4, 5)) {
		t.Fatalf("an ack beyond seq dropped something: Since(3) = %v, %v", items, complete)
	}
	e.Ack(2) // older than the last ack: nothing changes
	e.Ack(3) // repeated
	if items, _ := since(e, 3); !reflect.DeepEqual(items, want("p", 4, 5)) {
		t.Fatalf("a stale ack changed the ring: %v", items)
	}

	e.Ack(5) // everything
	if items, complete := since(e, 5); !complete || items != nil {
		t.Fatalf("after Ack(5): Since(5) = %v, %v", items, complete)
	}
	// Pushes after a full ack are kept and recovered.
	record(t, e, "p", 3, 8) // 6..8
	if items, complete := since(e, 5); !complete || !reflect.DeepEqual(items, want("p", 6, 8)) {
		t.Fatalf("after more pushes: Since(5) = %v, %v", items, complete)
	}
	// Ack across a wrapped ring.
	record(t, e, "p", 10, 8) // 9..18, ring keeps 11..18
	e.Ack(15)
	if items, complete := since(e, 15); !complete || !reflect.DeepEqual(items, want("p", 16, 18)) {
		t.Fatalf("wrapped: Since(15) = %v, %v", items, complete)
	}
	e.Ack(18)
	record(t, e, "p", 1, 8)
	if items, complete := since(e, 18); !complete || !reflect.DeepEqual(items, want("p", 19, 19)) {
		t.Fatalf("after full ack of a wrapped ring: Since(18) = %v, %v", items, complete)
	}
}

func TestOffline(t *testing.T) {
	s := recovery.New(8, ttl)
	if s.Offline("nobody", frame("x", 1), t0) {
		t.Fatal("Offline recorded for a device with no entry")
	}
	if s.Attach("nobody", t0) != nil {
		t.Fatal("Offline created an entry")
	}

	e := s.Acquire("dev")
	record(t, e, "p", 2, 8)
	s.Detach(e, t0)

	// Within the TTL: recorded with the next seq, recoverable on resume.
	if !s.Offline("dev", frame("p", 3), t0.Add(ttl-time.Nanosecond)) {
		t.Fatal("Offline within the TTL did not record")
	}
	e2 := s.Attach("dev", t0.Add(ttl-time.Nanosecond))
	if e2 != e || e2.Seq() != 3 {
		t.Fatalf("after Offline: entry %p (want %p), seq %d", e2, e, e2.Seq())
	}
	if items, complete := since(e2, 1); !complete || !reflect.DeepEqual(items, want("p", 2, 3)) {
		t.Fatalf("resume after Offline: %v, %v", items, complete)
	}
	// While attached, the entry never expires, and Offline still records.
	far := t0.Add(100 * ttl)
	if !s.Offline("dev", frame("p", 4), far) {
		t.Fatal("Offline for an attached entry did not record")
	}
	s.Detach(e2, far)

	// Past the TTL: not recorded, and the entry is dropped.
	if s.Offline("dev", frame("p", 5), far.Add(ttl+time.Nanosecond)) {
		t.Fatal("Offline recorded for an expired entry")
	}
	if e.Seq() != 4 {
		t.Fatalf("expired entry's seq moved to %d", e.Seq())
	}
	if s.Attach("dev", far) != nil {
		t.Fatal("Offline did not drop the expired entry")
	}
}

func TestExpiry(t *testing.T) {
	s := recovery.New(8, ttl)

	// Sweep drops only the expired entries.
	for i := range 10 {
		e := s.Acquire(fmt.Sprintf("d%d", i))
		e.Record(frame("p", 1), 8)
		if i < 7 {
			// d0..d6 detach at t0+i seconds; d7..d9 stay attached.
			s.Detach(e, t0.Add(time.Duration(i)*time.Second))
		}
	}
	if n := s.Sweep(t0.Add(ttl)); n != 10 {
		t.Fatalf("Sweep at the TTL: %d remain, want 10", n)
	}
	if n := s.Sweep(t0.Add(ttl + 3*time.Second + time.Nanosecond)); n != 6 {
		t.Fatalf("Sweep: %d remain, want 6 (d4..d9)", n)
	}
	for i := range 4 {
		if s.Attach(fmt.Sprintf("d%d", i), t0) != nil {
			t.Fatalf("d%d survived Sweep", i)
		}
	}
	if n := s.Sweep(t0.Add(1000 * ttl)); n != 3 {
		t.Fatalf("Sweep far in the future: %d remain, want the 3 attached", n)
	}
	for i := 7; i < 10; i++ {
		if e := s.Attach(fmt.Sprintf("d%d", i), t0.Add(1000*ttl)); e == nil || e.Seq() != 1 {
			t.Fatalf("attached d%d expired", i)
		}
	}
}

func TestTTLStartsAtLastDetach(t *testing.T) {
	s := recovery.New(8, ttl)
	e := s.Acquire("dev")
	if s.Attach("dev", t0) != e { // a second connection
		t.Fatal("Attach")
	}
	s.Detach(e, t0) // one still attached
	if n := s.Sweep(t0.Add(10 * ttl)); n != 1 {
		t.Fatal("entry expired while a connection was still attached")
	}
	last := t0.Add(10 * ttl)
	s.Detach(e, last) // the TTL starts now
	if s.Sweep(last.Add(ttl-time.Second)) != 1 {
		t.Fatal("expired before the TTL after the last detach")
	}
	// Re-attaching and detaching later moves the TTL.
	e2 := s.Attach("dev", last.Add(ttl-time.Second))
	if e2 != e {
		t.Fatal("Attach within the TTL")
	}
	later := last.Add(5 * ttl)
	s.Detach(e2, later)
	if s.Sweep(later.Add(ttl/2)) != 1 {
		t.Fatal("TTL measured from an earlier detach")
	}
	if s.Sweep(later.Add(ttl+time.Second)) != 0 {
		t.Fatal("not expired after the TTL")
	}
}

// TestConcurrent runs every operation at once on a few devices under
// -race, and checks the invariants that must hold whatever the
// interleaving: seqs are unique and dense per device, and Since hands over
// increasing, consecutive seqs.
func TestConcurrent(t *testing.T) {
	const (
		devices = 4
		size    = 16
		pushes  = 2000
	)
	s := recovery.New(size, ttl)
	var wg sync.WaitGroup
	seqs := make([][]uint32, devices)
	for d := range devices {
		dev := fmt.Sprintf("dev-%d", d)
		e := s.Acquire(dev) // keeps the entry alive: the test's clock is fake
		var mu sync.Mutex
		// Two recorders per device.
		for r := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range pushes {
					seq := e.Record(frame(dev, r*pushes+i), size)
					mu.Lock()
					seqs[d] = append(seqs[d], seq)
					mu.Unlock()
				}
			}()
		}
		// An acker.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range pushes {
				e.Ack(e.Seq() - uint32(i%5))
			}
		}()
		// A resumer.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range pushes / 4 {
				seq := e.Seq()
				resume := seq - min(seq, uint32(i%(2*size)))
				prev := resume
				e.Since(resume, func(s uint32, f []byte) {
					if s != prev+1 && prev != resume {
						t.Errorf("Since(%d): seq %d after %d", resume, s, prev)
					}
					if s <= resume || len(f) == 0 {
						t.Errorf("Since(%d) handed seq %d", resume, s)
					}
					prev = s
				})
			}
		}()
		// Connections coming and going, and offline pushes to the device.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range pushes / 4 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				if x := s.Attach(dev, now); x != nil {
					s.Offline(dev, frame("off", i), now)
					s.Detach(x, now)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			s.Sweep(t0.Add(time.Duration(i) * time.Second))
			s.Acquire(fmt.Sprintf("other-%d", i%8)).Record(frame("x", i), size)
		}
	}()
	wg.Wait()

	for d := range devices {
		e := s.Attach(fmt.Sprintf("dev-%d", d), t0)
		if e == nil {
			t.Fatalf("dev-%d expired while attached", d)
		}
		seen := make(map[uint32]bool)
		for _, q := range seqs[d] {
			if seen[q] {
				t.Fatalf("dev-%d: seq %d given twice", d, q)
			}
			seen[q] = true
		}
		// Offline pushes took seqs too; Record's ones are among 1..Seq().
		if len(seen) != 2*pushes || uint32(len(seen)) > e.Seq() {
			t.Fatalf("dev-%d: %d distinct seqs, counter at %d", d, len(seen), e.Seq())
		}
		before := e.Seq()
		record(t, e, "after", size, size)
		if items, complete := since(e, before); !complete || !reflect.DeepEqual(items, want("after", before+1, before+size)) {
			t.Fatalf("dev-%d: ring after the storm: %d items, complete %v", d, len(items), complete)
		}
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	s := recovery.New(64, ttl)
	e := s.Acquire("dev")
	f := frame("p", 1)
	e.Record(f, 64) // allocates the ring
	if allocs := testing.AllocsPerRun(1000, func() { e.Record(f, 64) }); allocs != 0 {
		t.Fatalf("Record allocates %v times once the ring exists", allocs)
	}
	if allocs := testing.AllocsPerRun(1000, func() { s.Offline("dev", f, t0) }); allocs != 0 {
		t.Fatalf("Offline allocates %v times", allocs)
	}
}

func BenchmarkRecord(b *testing.B) {
	s := recovery.New(64, ttl)
	e := s.Acquire("dev")
	f := frame("p", 1)
	e.Record(f, 64)
	b.ReportAllocs()
	for b.Loop() {
		e.Record(f, 64)
	}
}

func BenchmarkRecordAck(b *testing.B) {
	s := recovery.New(64, ttl)
	e := s.Acquire("dev")
	f := frame("p", 1)
	e.Record(f, 64)
	b.ReportAllocs()
	for b.Loop() {
		e.Ack(e.Record(f, 64))
	}
}

func BenchmarkOffline(b *testing.B) {
	s := recovery.New(64, ttl)
	s.Acquire("device-0123456789")
	f := frame("p", 1)
	b.ReportAllocs()
	for b.Loop() {
		s.Offline("device-0123456789", f, t0)
	}
}

// TestLostKeepsFirstPush: a push counted as delivered that found the
// connection gone is kept even when it was the device's first push.
func TestLostKeepsFirstPush(t *testing.T) {
	now := time.Unix(1000, 0)
	s := recovery.New(4, time.Minute)
	s.Lost("first", []byte("frame-1"), now)
	e := s.Attach("first", now.Add(time.Second))
	if e == nil {
		t.Fatal("no recovery state after a lost first push")
	}
	var got []string
	if complete := e.Since(0, func(seq uint32, f []byte) { got = append(got, fmt.Sprint(seq, string(f))) }); !complete {
		t.Fatal("resume from 0 reported a gap")
	}
	if len(got) != 1 || got[0] != "1frame-1" {
		t.Fatalf("kept %v, want [1frame-1]", got)
	}
	// With state already there, Lost records into it like Offline.
	s.Detach(e, now.Add(2*time.Second))
	s.Lost("first", []byte("frame-2"), now.Add(3*time.Second))
	e = s.Attach("first", now.Add(4*time.Second))
	if e.Seq() != 2 {
		t.Fatalf("seq %d after a second lost push, want 2", e.Seq())
	}
}
