package conn

import (
	"fmt"
	"slices"
	"testing"

	"github.com/longlink/longlink/dispatch/downstream"
)

// TestRegistryGroupMembers: a group's dense member list follows joins and
// leaves (a leaving member's place is taken by the last one), carries each
// connection's ID for the downstream workers, ignores a second join, and
// the group is gone with its last member.
func TestRegistryGroupMembers(t *testing.T) {
	var r registry
	r.init()
	cs := make([]*Conn, 6)
	for i := range cs {
		cs[i] = &Conn{id: uint64(100 + i), device: fmt.Sprintf("d%d", i)}
		r.put(cs[i])
		r.join("g", cs[i])
	}
	r.join("g", cs[2]) // already a member
	r.join("other", cs[0])

	check := func(want ...int) {
		t.Helper()
		ts := r.members("g")
		var got []int
		for _, tg := range ts {
			c := tg.Conn.(*Conn)
			if tg.ID != c.id {
				t.Fatalf("target of %s has ID %d, its connection %d", c.device, tg.ID, c.id)
			}
			got = append(got, int(c.id-100))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("members = %v, want %v", got, want)
		}
	}
	check(0, 1, 2, 3, 4, 5)

	r.leave("g", cs[1]) // from the middle: the last member moves there
	r.leave("g", cs[5]) // the last one
	r.leave("g", cs[1]) // not a member any more: a no-op
	r.remove(cs[0])     // leaves every group it joined
	check(2, 3, 4)
	if ts := r.members("other"); len(ts) != 0 {
		t.Fatalf("group other has %d members after its only one was removed", len(ts))
	}
	for _, i := range []int{2, 3, 4} {
		r.leave("g", cs[i])
	}
	check()
	gs := r.group("g")
	if _, ok := gs.m["g"]; ok {
		t.Fatal("an empty group is still indexed")
	}
}

// TestRegistryMembersSnapshot: the list a push takes is the registry's
// own, shared without a copy, yet later leaves and joins do not change
// it, and appending to it does not reach the registry.
func TestRegistryMembersSnapshot(t *testing.T) {
	var r registry
	r.init()
	cs := make([]*Conn, 5)
	for i := range cs {
		cs[i] = &Conn{id: uint64(i), device: fmt.Sprintf("d%d", i)}
		r.put(cs[i])
	}
	for _, c := range cs[:4] {
		r.join("g", c)
	}
	ids := func(ts []downstream.Target) []uint64 {
		var out []uint64
		for _, tg := range ts {
			out = append(out, tg.ID)
		}
		return out
	}
	snap := r.members("g")
	if again := r.members("g"); &again[0] != &snap[0] {
		t.Fatal("two pushes with no change between them got different lists: the list was copied")
	}
	want := ids(snap)
	r.leave("g", cs[1]) // from the middle: rewrites a slot in place unless copied
	r.join("g", cs[4])  // appends past the end
	r.leave("g", cs[0])
	if got := ids(snap); !slices.Equal(got, want) {
		t.Fatalf("the snapshot changed after leaves and joins: %v, was %v", got, want)
	}
	now := ids(r.members("g"))
	slices.Sort(now)
	if !slices.Equal(now, []uint64{2, 3, 4}) {
		t.Fatalf("members now %v, want [2 3 4]", now)
	}

	// The list is capped: what a caller appends to it is its own, and a
	// join does not write over it.
	ext := append(r.members("g"), downstream.Target{ID: 99})
	r.join("g", cs[0])
	if ext[len(ext)-1].ID != 99 {
		t.Fatalf("a join wrote over what a caller appended to its list: %v", ids(ext))
	}
}

// TestRegistryPutClosed: a connection that closed while its login ran
// (release has already removed it) does not enter the device index, and
// the device's connection stays the one it was.
func TestRegistryPutClosed(t *testing.T) {
	var r registry
	r.init()
	live := &Conn{id: 1, device: "d"}
	if prev, ok := r.put(live); prev != nil || !ok {
		t.Fatalf("put of a new device: prev %v, ok %v", prev, ok)
	}
	gone := &Conn{id: 2, device: "d"}
	gone.state.Store(uint32(StateClosed))
	if prev, ok := r.put(gone); prev != nil || ok {
		t.Fatalf("put of a closed connection: prev %v, ok %v; want nil, false", prev, ok)
	}
	if got := r.lookup("d"); got != live {
		t.Fatalf("device d is %p, want the live connection %p", got, live)
	}
	next := &Conn{id: 3, device: "d"}
	if prev, ok := r.put(next); prev != live || !ok {
		t.Fatalf("put replacing a live connection: prev %p, ok %v; want %p, true", prev, ok, live)
	}
}
