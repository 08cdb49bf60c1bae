// Package routetest is the behaviour every route.Route must have, written
// once so that the memory and the Redis implementations are held to the
// same contract. Each implementation runs it from its own tests:
//
//	func TestMemory(t *testing.T) {
//		routetest.Run(t, func(*testing.T) route.Route { return route.NewMemory() })
//	}
package routetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/route"
)

// Run runs the suite, one subtest per behaviour. It calls newRoute once per
// subtest; the route it returns must hold no bindings and no groups (a
// Redis implementation empties its database or uses a fresh key prefix).
// Run closes the route when the subtest ends and fails it if Close does.
func Run(t *testing.T, newRoute func(t *testing.T) route.Route) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, r route.Route)
	}{
		{"Bind/new device", testBindNew},
		{"Bind/duplicate login", testBindDuplicate},
		{"Bind/same location again", testBindSameLocation},
		{"Bind/devices are independent", testBindIndependent},
		{"Unbind/current location", testUnbindCurrent},
		{"Unbind/stale location", testUnbindStale},
		{"Unbind/same conn on another node", testUnbindOtherNode},
		{"Unbind/unknown device", testUnbindUnknown},
		{"Lookup/unknown device", testLookupUnknown},
		{"Join/new group", testJoinNew},
		{"Join/twice is a no-op", testJoinTwice},
		{"Join/repeats in one call", testJoinRepeats},
		{"Join/no devices", testJoinNone},
		{"Join/several groups", testJoinSeveral},
		{"Join/devices=10000 in one call", testJoinMany},
		{"Leave/member", testLeaveMember},
		{"Leave/non-member is a no-op", testLeaveNonMember},
		{"Leave/last member empties the group", testLeaveLast},
		{"Leave/keeps other groups", testLeaveKeepsOthers},
		{"GroupSize/unknown group", testGroupSizeUnknown},
		{"Groups/unknown device", testGroupsUnknown},
		{"membership persists while offline", testMembershipOffline},
		{"concurrent calls end consistent", testConcurrent},
		{"cancelled context does not hang", testCancelled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRoute(t)
			t.Cleanup(func() {
				if err := r.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.test(t, r)
		})
	}
}

var (
	loc1 = route.Location{Node: "node-1", Conn: 1}
	loc2 = route.Location{Node: "node-2", Conn: 2}
)

func testBindNew(t *testing.T, r route.Route) {
	bind(t, r, "dev", loc1, route.Location{}, false)
	wantLookup(t, r, "dev", loc1, true)
}

func testBindDuplicate(t *testing.T, r route.Route) {
	bind(t, r, "dev", loc1, route.Location{}, false)
	bind(t, r, "dev", loc2, loc1, true)
	wantLookup(t, r, "dev", loc2, true)
}

func testBindSameLocation(t *testing.T, r route.Route) {
	bind(t, r, "dev", loc1, route.Location{}, false)
	bind(t, r, "dev", loc1, loc1, true)
	wantLookup(t, r, "dev", loc1, true)
}

func testBindIndependent(t *testing.T, r route.Route) {
	bind(t, r, "dev-a", loc1, route.Location{}, false)
	bind(t, r, "dev-b", loc2, route.Location{}, false)
	wantLookup(t, r, "dev-a", loc1, true)
	wantLookup(t, r, "dev-b", loc2, true)
}

func testUnbindCurrent(t *testing.T, r route.Route) {
	bind(t, r, "dev", loc1, route.Location{}, false)
	unbind(t, r, "dev", loc1)
	wantOffline(t, r, "dev")
	// Offline means a new Bind is not a duplicate login.
	bind(t, r, "dev", loc2, route.Location{}, false)
}

func testUnbindStale(t *testing.T, r route.Route) {
	bind(t, r, "dev", loc1, route.Location{}, false)
	bind(t, r, "dev", loc2, loc1, true)
	unbind(t, r, "dev", loc1) // the old connection closes late
	wantLookup(t, r, "dev", loc2, true)
}

func testUnbindOtherNode(t *testing.T, r route.Route) {
	bind(t, r, "dev", loc1, route.Location{}, false)
	unbind(t, r, "dev", route.Location{Node: "node-2", Conn: loc1.Conn})
	unbind(t, r, "dev", route.Location{Node: loc1.Node, Conn: loc1.Conn + 1})
	wantLookup(t, r, "dev", loc1, true)
}

func testUnbindUnknown(t *testing.T, r route.Route) {
	unbind(t, r, "dev", loc1)
	wantOffline(t, r, "dev")
}

func testLookupUnknown(t *testing.T, r route.Route) {
	wantOffline(t, r, "dev")
}

func testJoinNew(t *testing.T, r route.Route) {
	join(t, r, "room", "dev-a", "dev-b", "dev-c")
	wantSize(t, r, "room", 3)
	for _, d := range []string{"dev-a", "dev-b", "dev-c"} {
		wantGroups(t, r, d, "room")
	}
}

func testJoinTwice(t *testing.T, r route.Route) {
	join(t, r, "room", "dev-a", "dev-b")
	join(t, r, "room", "dev-b", "dev-a")
	wantSize(t, r, "room", 2)
	wantGroups(t, r, "dev-a", "room")
	wantGroups(t, r, "dev-b", "room")
}

func testJoinRepeats(t *testing.T, r route.Route) {
	join(t, r, "room", "dev-a", "dev-a", "dev-b", "dev-a")
	wantSize(t, r, "room", 2)
	wantGroups(t, r, "dev-a", "room")
}

func testJoinNone(t *testing.T, r route.Route) {
	join(t, r, "room")
	wantSize(t, r, "room", 0)
}

func testJoinSeveral(t *testing.T, r route.Route) {
	join(t, r, "room-1", "dev-a")
	join(t, r, "room-2", "dev-a", "dev-b")
	join(t, r, "room-3", "dev-a")
	wantGroups(t, r, "dev-a", "room-1", "room-2", "room-3")
	wantGroups(t, r, "dev-b", "room-2")
	wantSize(t, r, "room-1", 1)
	wantSize(t, r, "room-2", 2)
	wantSize(t, r, "room-3", 1)
}

func testJoinMany(t *testing.T, r route.Route) {
	const n = 10000
	devices := make([]string, n)
	for i := range devices {
		devices[i] = fmt.Sprintf("dev-%d", i)
	}
	// Groups is checked on a sample: one call per device is slow over a
	// network.
	sample := func(from, to int) []string {
		var s []string
		for i := from; i < to; i += 97 {
			s = append(s, devices[i])
		}
		return append(s, devices[to-1])
	}
	join(t, r, "room", devices...)
	wantSize(t, r, "room", n)
	for _, d := range sample(0, n) {
		wantGroups(t, r, d, "room")
	}
	leave(t, r, "room", devices[:n/2]...)
	wantSize(t, r, "room", n/2)
	for _, d := range sample(0, n/2) {
		wantGroups(t, r, d)
	}
	for _, d := range sample(n/2, n) {
		wantGroups(t, r, d, "room")
	}
	leave(t, r, "room", devices...)
	wantSize(t, r, "room", 0)
	for _, d := range sample(0, n) {
		wantGroups(t, r, d)
	}
}

func testLeaveMember(t *testing.T, r route.Route) {
	join(t, r, "room", "dev-a", "dev-b")
	leave(t, r, "room", "dev-a")
	wantSize(t, r, "room", 1)
	wantGroups(t, r, "dev-a")
	wantGroups(t, r, "dev-b", "room")
}

func testLeaveNonMember(t *testing.T, r route.Route) {
	join(t, r, "room", "dev-a")
	leave(t, r, "room", "dev-x")
	leave(t, r, "other", "dev-a")
	leave(t, r, "room")
	wantSize(t, r, "room", 1)
	wantSize(t, r, "other", 0)
	wantGroups(t, r, "dev-a", "room")
	wantGroups(t, r, "dev-x")
}

func testLeaveLast(t *testing.T, r route.Route) {
	join(t, r, "room", "dev-a")
	leave(t, r, "room", "dev-a", "dev-a")
	wantSize(t, r, "room", 0)
	wantGroups(t, r, "dev-a")
	// The group can be made again.
	join(t, r, "room", "dev-b")
	wantSize(t, r, "room", 1)
	wantGroups(t, r, "dev-b", "room")
}

func testLeaveKeepsOthers(t *testing.T, r route.Route) {
	join(t, r, "room-1", "dev-a")
	join(t, r, "room-2", "dev-a")
	leave(t, r, "room-1", "dev-a")
	wantGroups(t, r, "dev-a", "room-2")
	wantSize(t, r, "room-2", 1)
}

func testGroupSizeUnknown(t *testing.T, r route.Route) {
	wantSize(t, r, "room", 0)
}

func testGroupsUnknown(t *testing.T, r route.Route) {
	wantGroups(t, r, "dev")
}

func testMembershipOffline(t *testing.T, r route.Route) {
	join(t, r, "room", "dev") // never bound
	wantGroups(t, r, "dev", "room")
	bind(t, r, "dev", loc1, route.Location{}, false)
	unbind(t, r, "dev", loc1)
	wantOffline(t, r, "dev")
	wantGroups(t, r, "dev", "room")
	wantSize(t, r, "room", 1)
}

// testConcurrent runs Bind, Unbind, Join and Leave from several goroutines
// at once, on shared groups and on devices of their own and shared
// devices, then checks that the result is what the goroutines' own steps
// imply and that the two sides of membership agree.
func testConcurrent(t *testing.T, r route.Route) {
	const (
		workers    = 8
		iterations = 100
		owned      = 16 // devices of each worker
	)
	groups := []string{"room-0", "room-1", "room-2", "room-3"}
	shared := []string{"shared-0", "shared-1", "shared-2"}
	ctx := t.Context()

	// worker is what one goroutine did, from its own point of view.
	type worker struct {
		devices []string
		member  [][]bool // member[device][group], for its own devices
		loc     route.Location
		bound   bool // devices[0] is bound at loc
		// live are the locations it bound shared devices at and never
		// unbound.
		live map[string][]route.Location
	}
	ws := make([]*worker, workers)
	var wg sync.WaitGroup
	for w := range ws {
		wk := &worker{member: make([][]bool, owned), live: make(map[string][]route.Location)}
		for i := range owned {
			wk.devices = append(wk.devices, fmt.Sprintf("w%d-dev-%d", w, i))
			wk.member[i] = make([]bool, len(groups))
		}
		ws[w] = wk
		node := fmt.Sprintf("node-%d", w)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range iterations {
				// Membership: a batch of own devices, with repeats, and
				// one shared device.
				g := rng.IntN(len(groups))
				join := rng.IntN(2) == 0
				batch := []string{shared[rng.IntN(len(shared))]}
				for range 1 + rng.IntN(owned) {
					d := rng.IntN(owned)
					batch = append(batch, wk.devices[d])
					wk.member[d][g] = join
				}
				var err error
				if join {
					err = r.Join(ctx, groups[g], batch)
				} else {
					err = r.Leave(ctx, groups[g], batch)
				}
				if err != nil {
					t.Errorf("worker %d: Join/Leave: %v", w, err)
					return
				}

				// Own binding: only this worker binds devices[0], so
				// every Bind must report the previous one exactly.
				loc := route.Location{Node: node, Conn: uint64(i)}
				prev, hadPrev, err := r.Bind(ctx, wk.devices[0], loc)
				if err != nil || hadPrev != wk.bound || (hadPrev && prev != wk.loc) {
					t.Errorf("worker %d: Bind(%s) = %v, %v, %v; want %v, %v, nil",
						w, wk.devices[0], prev, hadPrev, err, wk.loc, wk.bound)
					return
				}
				wk.loc, wk.bound = loc, true
				switch rng.IntN(3) {
				case 0:
					err = r.Unbind(ctx, wk.devices[0], loc)
					wk.bound = false
				case 1: // stale: must change nothing
					err = r.Unbind(ctx, wk.devices[0], route.Location{Node: node, Conn: uint64(i) + iterations})
				}
				if err != nil {
					t.Errorf("worker %d: Unbind: %v", w, err)
					return
				}

				// Shared binding: workers overwrite each other's.
				s := shared[rng.IntN(len(shared))]
				if _, _, err := r.Bind(ctx, s, loc); err != nil {
					t.Errorf("worker %d: Bind(%s): %v", w, s, err)
					return
				}
				if rng.IntN(2) == 0 {
					if err := r.Unbind(ctx, s, loc); err != nil {
						t.Errorf("worker %d: Unbind(%s): %v", w, s, err)
						return
					}
				} else {
					wk.live[s] = append(wk.live[s], loc)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	members := make(map[string]int) // group → devices whose Groups list it
	count := func(d string) []string {
		got := groupsOf(t, r, d)
		for _, g := range got {
			members[g]++
		}
		return got
	}
	for w, wk := range ws {
		for i, d := range wk.devices {
			var want []string
			for g, in := range wk.member[i] {
				if in {
					want = append(want, groups[g])
				}
			}
			if got := count(d); !slices.Equal(got, want) {
				t.Errorf("Groups(%s) = %q, want %q", d, got, want)
			}
		}
		loc, online := lookup(t, r, wk.devices[0])
		if online != wk.bound || (online && loc != wk.loc) {
			t.Errorf("worker %d: Lookup(%s) = %v, %v; want %v, %v", w, wk.devices[0], loc, online, wk.loc, wk.bound)
		}
	}
	for _, s := range shared {
		got := count(s)
		if len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("Groups(%s) = %q, has repeats", s, got)
		}
		loc, online := lookup(t, r, s)
		if !online {
			continue
		}
		if !slices.ContainsFunc(ws, func(wk *worker) bool { return slices.Contains(wk.live[s], loc) }) {
			t.Errorf("Lookup(%s) = %v, a location that was unbound or never bound", s, loc)
		}
	}
	for _, g := range groups {
		wantSize(t, r, g, members[g])
	}
}

// testCancelled calls every method with a context already cancelled: each
// must return, with no error or one that says the context was cancelled.
func testCancelled(t *testing.T, r route.Route) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"Bind", func() error { _, _, err := r.Bind(ctx, "dev", loc1); return err }},
		{"Lookup", func() error { _, _, err := r.Lookup(ctx, "dev"); return err }},
		{"Unbind", func() error { return r.Unbind(ctx, "dev", loc1) }},
		{"Join", func() error { return r.Join(ctx, "room", []string{"dev"}) }},
		{"GroupSize", func() error { _, err := r.GroupSize(ctx, "room"); return err }},
		{"Groups", func() error { _, err := r.Groups(ctx, "dev"); return err }},
		{"Leave", func() error { return r.Leave(ctx, "room", []string{"dev"}) }},
	}
	errs := make(chan error, len(calls))
	go func() {
		for _, c := range calls {
			if err := c.call(); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w, want nil or context.Canceled", c.name, err)
				continue
			}
			errs <- nil
		}
	}()
	timeout := time.After(10 * time.Second)
	for range calls {
		select {
		case err := <-errs:
			if err != nil {
				t.Error(err)
			}
		case <-timeout:
			t.Fatal("a call with a cancelled context did not return within 10s")
		}
	}
}

func bind(t *testing.T, r route.Route, device string, loc, wantPrev route.Location, wantHadPrev bool) {
	t.Helper()
	prev, hadPrev, err := r.Bind(t.Context(), device, loc)
	if err != nil {
		t.Fatalf("Bind(%s, %v): %v", device, loc, err)
	}
	if hadPrev != wantHadPrev || (hadPrev && prev != wantPrev) {
		t.Errorf("Bind(%s, %v) = %v, %v; want %v, %v", device, loc, prev, hadPrev, wantPrev, wantHadPrev)
	}
}

func unbind(t *testing.T, r route.Route, device string, loc route.Location) {
	t.Helper()
	if err := r.Unbind(t.Context(), device, loc); err != nil {
		t.Fatalf("Unbind(%s, %v): %v", device, loc, err)
	}
}

func lookup(t *testing.T, r route.Route, device string) (route.Location, bool) {
	t.Helper()
	loc, online, err := r.Lookup(t.Context(), device)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", device, err)
	}
	return loc, online
}

func wantLookup(t *testing.T, r route.Route, device string, want route.Location, wantOnline bool) {
	t.Helper()
	if loc, online := lookup(t, r, device); loc != want || online != wantOnline {
		t.Errorf("Lookup(%s) = %v, %v; want %v, %v", device, loc, online, want, wantOnline)
	}
}

func wantOffline(t *testing.T, r route.Route, device string) {
	t.Helper()
	if loc, online := lookup(t, r, device); online {
		t.Errorf("Lookup(%s) = %v, online; want offline", device, loc)
	}
}

func join(t *testing.T, r route.Route, group string, devices ...string) {
	t.Helper()
	if err := r.Join(t.Context(), group, devices); err != nil {
		t.Fatalf("Join(%s, %d devices): %v", group, len(devices), err)
	}
}

func leave(t *testing.T, r route.Route, group string, devices ...string) {
	t.Helper()
	if err := r.Leave(t.Context(), group, devices); err != nil {
		t.Fatalf("Leave(%s, %d devices): %v", group, len(devices), err)
	}
}

func wantSize(t *testing.T, r route.Route, group string, want int) {
	t.Helper()
	n, err := r.GroupSize(t.Context(), group)
	if err != nil {
		t.Fatalf("GroupSize(%s): %v", group, err)
	}
	if n != want {
		t.Errorf("GroupSize(%s) = %d, want %d", group, n, want)
	}
}

// groupsOf returns Groups(device), sorted.
func groupsOf(t *testing.T, r route.Route, device string) []string {
	t.Helper()
	got, err := r.Groups(t.Context(), device)
	if err != nil {
		t.Fatalf("Groups(%s): %v", device, err)
	}
	slices.Sort(got)
	return got
}

// wantGroups checks Groups(device) against want, given sorted.
func wantGroups(t *testing.T, r route.Route, device string, want ...string) {
	t.Helper()
	if got := groupsOf(t, r, device); !slices.Equal(got, want) {
		t.Errorf("Groups(%s) = %q, want %q", device, got, want)
	}
}
