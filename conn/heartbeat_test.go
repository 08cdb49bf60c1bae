package conn

import (
	"testing"
	"time"
)

func TestGrant(t *testing.T) {
	h := &Hub{opts: Options{Heartbeat: time.Minute, HeartbeatMin: 30 * time.Second, HeartbeatMax: 10 * time.Minute, IdleTimeout: 4 * time.Minute}}
	for _, tc := range []struct {
		v     string
		asked bool
		want  time.Duration
		ok    bool
	}{
		{"", false, time.Minute, true},
		{"45", true, 45 * time.Second, true},
		{"1", true, 30 * time.Second, true},
		{"3600", true, 10 * time.Minute, true},
		{"184467440737095516160", true, 10 * time.Minute, true},
		{"", true, 0, false},
		{"-5", true, 0, false},
		{"5s", true, 0, false},
	} {
		got, ok := h.grant([]byte(tc.v), tc.asked)
		if got != tc.want || ok != tc.ok {
			t.Errorf("grant(%q, %v) = %v, %v; want %v, %v", tc.v, tc.asked, got, ok, tc.want, tc.ok)
		}
	}
	// The idle timeout is the larger of -idle-timeout and 3 grants.
	if got := h.idleTimeout(time.Minute); got != 4*time.Minute {
		t.Errorf("idleTimeout(1m) = %v, want -idle-timeout's 4m", got)
	}
	if got := h.idleTimeout(5 * time.Minute); got != 15*time.Minute {
		t.Errorf("idleTimeout(5m) = %v, want 15m", got)
	}
}

func TestSessionEnd(t *testing.T) {
	h := &Hub{opts: Options{SessionExpiry: true}}
	exp := time.Unix(1_800_000_000, 0)
	if got := h.sessionEnd(exp); got != 1_800_000_005 {
		t.Errorf("sessionEnd = %d, want exp + 5 s leeway", got)
	}
	if got := h.sessionEnd(exp.Add(300 * time.Millisecond)); got != 1_800_000_006 {
		t.Errorf("sessionEnd of a fractional exp = %d, want the next whole second", got)
	}
	if got := h.sessionEnd(time.Unix(1<<33, 0)); got != 0 {
		t.Errorf("sessionEnd past 2106 = %d, want 0 (never)", got)
	}
	h.opts.SessionExpiry = false
	if got := h.sessionEnd(exp); got != 0 {
		t.Errorf("sessionEnd with expiry off = %d, want 0", got)
	}
}

// TestWheelDeadline checks the deadlines of mixed connections in one
// wheel: each logged-in connection by its own idle ticks, cut short by its
// session's end when that comes first.
func TestWheelDeadline(t *testing.T) {
	w := &wheel{tick: 100 * time.Millisecond}
	const now, unix = 1000, 1_800_000_000
	c := &Conn{due: 1050}
	if got := w.deadline(c, now, unix); got != 1050 {
		t.Errorf("before login: deadline %d, want the login deadline 1050", got)
	}
	c.seen.Store(990)
	c.idle, c.due = 30, 0
	if got := w.deadline(c, now, unix); got != 1021 {
		t.Errorf("idle 30 ticks, seen 990: deadline %d, want 1021", got)
	}
	c.due = unix + 1 // one second = 10 ticks, before the idle deadline
	if got := w.deadline(c, now, unix); got != 1011 {
		t.Errorf("session ends in 1 s: deadline %d, want 1011", got)
	}
	c.due = unix + 3600
	if got := w.deadline(c, now, unix); got != 1021 {
		t.Errorf("session ends in an hour: deadline %d, want the idle deadline 1021", got)
	}
	c.due = unix
	if got := w.deadline(c, now, unix); got != now || !sessionOver(c, unix) {
		t.Errorf("session over: deadline %d (want %d), sessionOver %v", got, now, sessionOver(c, unix))
	}
}
