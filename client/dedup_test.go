package client

import (
	"fmt"
	"testing"
)

func TestDedupSeq(t *testing.T) {
	d := newDedup(8)
	for _, tc := range []struct {
		seq  uint32
		id   string
		want bool
	}{
		{1, "", true},
		{2, "", true},
		{2, "", false}, // repeated seq
		{1, "", false}, // older seq
		{5, "", true},  // a jump (lost messages) is accepted
		{4, "", false},
		{6, "a", true},
		{7, "a", false}, // same id, new seq: dropped ...
		{7, "b", false}, // ... but the seq counts as seen
		{8, "b", true},
	} {
		if got := d.accept(tc.seq, tc.id); got != tc.want {
			t.Errorf("accept(%d, %q) = %v, want %v", tc.seq, tc.id, got, tc.want)
		}
	}
	if d.last != 8 {
		t.Errorf("last = %d, want 8", d.last)
	}
}

func TestDedupIDWindow(t *testing.T) {
	d := newDedup(3)
	seq := uint32(0)
	next := func(id string) bool { seq++; return d.accept(seq, id) }
	for _, id := range []string{"a", "b", "c"} {
		if !next(id) {
			t.Fatalf("%s refused", id)
		}
	}
	if next("a") { // refreshes a: now a, c, b by recency
		t.Fatal("a accepted twice")
	}
	if !next("d") { // evicts b, the least recently seen
		t.Fatal("d refused")
	}
	if d.ids.len() != 3 {
		t.Fatalf("window holds %d ids, want 3", d.ids.len())
	}
	if next("a") || next("c") || next("d") {
		t.Fatal("an id inside the window was accepted again")
	}
	if !next("b") {
		t.Fatal("b, evicted from the window, was refused")
	}
}

func TestDedupBounded(t *testing.T) {
	d := newDedup(100)
	for i := range 10000 {
		d.accept(uint32(i+1), fmt.Sprint("id-", i))
	}
	if d.ids.len() != 100 || len(d.ids.index) != 100 {
		t.Fatalf("window grew to %d/%d, want 100", d.ids.len(), len(d.ids.index))
	}
}

// TestDedupRestart: after a login that reported a gap, the gateway may have
// lost its state and restarted seq at 1; those pushes must be accepted,
// while ids already seen are still dropped.
func TestDedupRestart(t *testing.T) {
	d := newDedup(16)
	for i := uint32(1); i <= 50; i++ {
		d.accept(i, fmt.Sprint("m", i))
	}
	d.gap()
	if !d.accept(1, "new-1") {
		t.Fatal("seq 1 after a restart refused")
	}
	if !d.accept(2, "new-2") || d.accept(2, "new-2") {
		t.Fatal("seq 2 after a restart: want accepted once")
	}
	if d.accept(3, "m50") {
		t.Fatal("an id seen before the restart accepted again")
	}
	if d.last != 3 {
		t.Fatalf("last = %d, want 3", d.last)
	}

	// A gap without a restart (recovery partial, seq carries on).
	d.gap()
	if !d.accept(10, "") || d.accept(4, "") {
		t.Fatal("seq jumping forward after a gap: want 10 accepted, then 4 refused")
	}
}
