package conn

import (
	"errors"
	"strconv"
	"time"
)

// Heartbeat negotiation (docs/protocol.md, "Heartbeat negotiation").
//
// A LOGIN may ask for a heartbeat interval with meta "hb"; the node grants
// it clamped to [HeartbeatMin, HeartbeatMax], and Heartbeat without the
// key. The grant sets the connection's idle timeout, kept in Conn.idle as
// wheel ticks: the timing wheel holds connections of mixed timeouts in
// the same slots, so a per-connection interval costs 4 bytes and no timer.

// IdleHeartbeats is a connection's idle timeout in granted intervals, at
// least: two heartbeats may be lost before the node gives up.
const IdleHeartbeats = 3

// maxHeartbeatSeconds is what a LOGIN's "hb" is cut to before the
// clamp, so that seconds convert to a Duration without overflow.
const maxHeartbeatSeconds = 1 << 31

// grant is the heartbeat interval for a LOGIN's meta "hb" (asked says
// whether it had one), or false when the value is not decimal seconds.
func (h *Hub) grant(v []byte, asked bool) (time.Duration, bool) {
	if !asked {
		return h.opts.Heartbeat, true
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		n = maxHeartbeatSeconds // all digits, too many of them: clamped
	} else if err != nil {
		return 0, false
	}
	d := time.Duration(min(n, maxHeartbeatSeconds)) * time.Second
	return min(max(d, h.opts.HeartbeatMin), h.opts.HeartbeatMax), true
}

// idleTimeout is the idle timeout of a connection granted hb.
func (h *Hub) idleTimeout(hb time.Duration) time.Duration {
	return max(h.opts.IdleTimeout, IdleHeartbeats*hb)
}
