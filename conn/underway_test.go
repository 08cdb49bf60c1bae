package conn

import "testing"

// TestUnderway: a device's logins under way are awaited together; the
// channel closes when the last of them ends, and none is left behind.
func TestUnderway(t *testing.T) {
	var u underway
	if u.await("d") != nil {
		t.Fatal("await of a device with no login under way is not nil")
	}
	a := u.begin("d")
	b := u.begin("d") // a second connection of the device logging in
	ch := u.await("d")
	if ch == nil {
		t.Fatal("no channel for a login under way")
	}
	u.end("d", a)
	select {
	case <-ch:
		t.Fatal("closed while a login is still under way")
	default:
	}
	u.end("d", b)
	select {
	case <-ch:
	default:
		t.Fatal("not closed once every login ended")
	}
	if u.await("d") != nil || len(u.m) != 0 {
		t.Fatalf("a login is left behind: %v", u.m)
	}
}
