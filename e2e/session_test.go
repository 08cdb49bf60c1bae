package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// The protocol's additions that live in the session: heartbeat
// negotiation with its per-connection idle timeout, session expiry and
// REFRESH (docs/protocol.md).

// TestHeartbeatGrant checks the grant of LOGIN meta "hb" (clamped to
// -hb-min and -hb-max, -hb without it, refused when malformed), and that
// each connection's idle timeout follows its own grant.
func TestHeartbeatGrant(t *testing.T) {
	s := startServer(t, "-hb", "2s", "-hb-min", "1s", "-hb-max", "4s")
	login := func(device string, hb ...string) (*client, codec.Frame) {
		c := dial(t, s.TCP)
		var extra []string
		if len(hb) > 0 {
			extra = []string{"hb", hb[0]}
		}
		return c, c.login(token(t, device, time.Hour), extra...)
	}
	for _, tc := range []struct {
		device, ask, want string
	}{
		{"hb-none", "", "2"},
		{"hb-short", "1", "1"},
		{"hb-under", "0", "1"},
		{"hb-within", "3", "3"},
		{"hb-over", "900", "4"},
		{"hb-huge", "99999999999999999999", "4"},
	} {
		var ack codec.Frame
		if tc.ask == "" {
			_, ack = login(tc.device)
		} else {
			_, ack = login(tc.device, tc.ask)
		}
		if ack.Status != codec.StatusOK {
			t.Fatalf("%s: LOGIN_ACK %v %q", tc.device, ack.Status, metaString(ack, "reason"))
		}
		if got := metaString(ack, "hb"); got != tc.want {
			t.Errorf("%s asked hb %q: granted %q, want %q", tc.device, tc.ask, got, tc.want)
		}
		if lo, hi := metaString(ack, "hb_min"), metaString(ack, "hb_max"); lo != "1" || hi != "4" {
			t.Errorf("%s: hb_min %q hb_max %q, want 1 and 4", tc.device, lo, hi)
		}
	}
	for _, bad := range []string{"", "-1", "1.5", "ten"} {
		c, ack := login("hb-bad", bad)
		if ack.Status != codec.StatusBadFrame || metaString(ack, "reason") != "hb must be decimal seconds" {
			t.Errorf("hb %q: LOGIN_ACK %v %q, want BAD_FRAME", bad, ack.Status, metaString(ack, "reason"))
		}
		c.expectClosed(5 * time.Second)
	}

	// Idle timeouts: 3 x 1 s for short, 3 x 4 s for long. short is kicked
	// after about 3 s while long, just as silent, stays.
	short, _ := login("idle-short", "1")
	long, _ := login("idle-long", "4")
	start := time.Now()
	short.kickedWith(codec.StatusIdleTimeout, 10*time.Second)
	if el := time.Since(start); el < 2900*time.Millisecond || el > 5*time.Second {
		t.Errorf("granted 1 s, kicked idle after %v: want about 3 s", el)
	}
	if f, err := long.tryRead(time.Second); err == nil {
		t.Fatalf("granted 4 s, got %v %v within 4 s of silence", f.Op, f.Status)
	}
	long.send(codec.Header{Op: codec.OpPing, Seq: 5}, nil, nil)
	if f := long.read(5 * time.Second); f.Op != codec.OpPong || f.Seq != 5 {
		t.Fatalf("granted 4 s, silent 4 s: PING got %v %v, want PONG", f.Op, f.Status)
	}

	// Every successful login's grant is in the histogram.
	h := s.stats()["heartbeat_intervals"].(map[string]any)
	if n := h["count"].(float64); n != 8 {
		t.Errorf("heartbeat_intervals count %v, want the 8 logins", n)
	}
	if sum := h["sum_seconds"].(float64); sum != 2+1+1+3+4+4+1+4 {
		t.Errorf("heartbeat_intervals sum %v s, want 20", sum)
	}
}

// TestSessionExpiry checks that a session ends at its token's exp plus
// the 5 s leeway with KICK(UNAUTHORIZED, "token expired"), and not with
// -session-expiry=false.
func TestSessionExpiry(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.TCP)
	// exp 3 s ago is still valid within the leeway: the session has 2 s.
	exp := time.Now().Add(-3 * time.Second).Unix()
	if ack := c.login(token(t, "dev-expiring", -3*time.Second)); ack.Status != codec.StatusOK {
		t.Fatalf("login: %v %q", ack.Status, metaString(ack, "reason"))
	}
	f := c.read(10 * time.Second)
	end := time.Now()
	if f.Op != codec.OpKick || f.Status != codec.StatusUnauthorized || metaString(f, "reason") != "token expired" {
		t.Fatalf("got %v %v %q, want KICK UNAUTHORIZED \"token expired\"", f.Op, f.Status, metaString(f, "reason"))
	}
	if limit := time.Unix(exp+5, 0); end.Before(limit) {
		t.Errorf("kicked at %v, before exp + leeway %v", end, limit)
	}
	if late := end.Sub(time.Unix(exp+5, 0)); late > 2*time.Second {
		t.Errorf("kicked %v after exp + leeway", late)
	}
	c.expectClosed(5 * time.Second)
	var kicks struct {
		Kicks map[string]float64 `json:"kicks"`
	}
	s.api("GET", "/v1/stats", nil, &kicks)
	if kicks.Kicks["UNAUTHORIZED"] != 1 {
		t.Errorf("kicks %v, want one UNAUTHORIZED", kicks.Kicks)
	}

	off := startServer(t, "-session-expiry=false")
	c = dial(t, off.TCP)
	if ack := c.login(token(t, "dev-lasting", -3*time.Second)); ack.Status != codec.StatusOK {
		t.Fatalf("login: %v", ack.Status)
	}
	if f, err := c.tryRead(4 * time.Second); err == nil {
		t.Fatalf("-session-expiry=false: got %v %v past exp + leeway", f.Op, f.Status)
	}
	c.send(codec.Header{Op: codec.OpPing, Seq: 2}, nil, nil)
	if f := c.read(5 * time.Second); f.Op != codec.OpPong {
		t.Fatalf("-session-expiry=false: PING got %v %v", f.Op, f.Status)
	}
}

// refresh sends REFRESH with tok (none when empty) and returns the
// REFRESH_ACK.
func (c *client) refresh(seq uint32, tok string) codec.Frame {
	c.t.Helper()
	var m []byte
	if tok != "" {
		m = meta("token", tok)
	}
	c.send(codec.Header{Op: codec.OpRefresh, Seq: seq}, m, nil)
	f := c.read(5 * time.Second)
	if f.Op != codec.OpRefreshAck || f.Seq != seq {
		c.t.Fatalf("REFRESH %d: got %v seq %d, want REFRESH_ACK", seq, f.Op, f.Seq)
	}
	return f
}

// TestRefresh checks REFRESH: refused without closing for a missing,
// garbage, expired or another device's token; accepted for the same
// device, moving the session's end either way.
func TestRefresh(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.TCP)
	if ack := c.login(token(t, "dev-refresh", -3*time.Second)); ack.Status != codec.StatusOK {
		t.Fatalf("login: %v", ack.Status)
	}
	for i, tc := range []struct{ tok, reason string }{
		{"", "missing token"},
		{"not-a-token", "malformed token"},
		{token(t, "dev-refresh", -time.Minute), "token expired"},
		{token(t, "dev-other", time.Hour), "token is for another device"},
	} {
		f := c.refresh(uint32(10+i), tc.tok)
		if f.Status != codec.StatusUnauthorized || metaString(f, "reason") != tc.reason {
			t.Errorf("REFRESH %d: %v %q, want UNAUTHORIZED %q", i, f.Status, metaString(f, "reason"), tc.reason)
		}
	}
	want := time.Now().Add(time.Hour).Unix()
	f := c.refresh(20, token(t, "dev-refresh", time.Hour))
	if f.Status != codec.StatusOK {
		t.Fatalf("REFRESH: %v %q", f.Status, metaString(f, "reason"))
	}
	if got, _ := strconv.ParseInt(metaString(f, "exp"), 10, 64); got < want || got > want+2 {
		t.Errorf("REFRESH_ACK exp %q, want %d", metaString(f, "exp"), want)
	}
	// The old session would have ended 2 s after login.
	if f, err := c.tryRead(4 * time.Second); err == nil {
		t.Fatalf("refreshed: got %v %v past the old token's exp + leeway", f.Op, f.Status)
	}
	c.send(codec.Header{Op: codec.OpPing, Seq: 21}, nil, nil)
	if f := c.read(5 * time.Second); f.Op != codec.OpPong {
		t.Fatalf("refreshed: PING got %v %v", f.Op, f.Status)
	}

	// A refresh to a token that ends sooner ends the session sooner.
	if f := c.refresh(22, token(t, "dev-refresh", -4*time.Second)); f.Status != codec.StatusOK {
		t.Fatalf("REFRESH to a short token: %v %q", f.Status, metaString(f, "reason"))
	}
	c.kickedWith(codec.StatusUnauthorized, 5*time.Second)

	st := s.stats()
	if st["refreshes"].(float64) != 2 || st["refresh_failures"].(float64) != 4 {
		t.Errorf("refreshes %v, refresh_failures %v: want 2 and 4", st["refreshes"], st["refresh_failures"])
	}
}

// TestRefreshBeforeLogin checks that REFRESH is no way in: before LOGIN
// it is NOT_LOGGED_IN like any other frame.
func TestRefreshBeforeLogin(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.TCP)
	c.send(codec.Header{Op: codec.OpRefresh, Seq: 1}, meta("token", token(t, "dev-x", time.Hour)), nil)
	f := c.read(5 * time.Second)
	if f.Op != codec.OpKick || f.Status != codec.StatusNotLoggedIn {
		t.Fatalf("got %v %v, want KICK NOT_LOGGED_IN", f.Op, f.Status)
	}
	c.expectClosed(5 * time.Second)
	// And a client may not send REFRESH_ACK.
	d, _ := loggedIn(t, s, "dev-y")
	d.send(codec.Header{Op: codec.OpRefreshAck, Seq: 1}, nil, nil)
	if f := d.read(5 * time.Second); f.Op != codec.OpKick || f.Status != codec.StatusBadFrame {
		t.Fatalf("REFRESH_ACK from a client: %v %v, want KICK BAD_FRAME", f.Op, f.Status)
	}
}
