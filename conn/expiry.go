package conn

import (
	"math"
	"time"

	"github.com/longlink/longlink/auth"
	"github.com/longlink/longlink/codec"
	"github.com/valyala/bytebufferpool"
)

// Session expiry and REFRESH (docs/protocol.md, "Session expiry and
// REFRESH").
//
// A session ends at its token's exp plus auth.Leeway, unless REFRESH
// brought a newer token for the same device. The end is kept in Conn.due
// as a Unix second, and the timing wheel kicks the connection then with
// UNAUTHORIZED "token expired": no timer per connection, and a refresh
// costs a move in the wheel. A refused REFRESH leaves the session as it
// was: a client whose token service hiccups gets to try again before its
// session ends.

// Reasons a REFRESH is refused with, beyond the verifier's own.
const (
	reasonOtherDevice = "token is for another device"
)

// sessionEnd is the Conn.due of a session whose token expires at exp: 0
// (never) with expiry off or past what a uint32 holds.
func (h *Hub) sessionEnd(exp time.Time) uint32 {
	if !h.opts.SessionExpiry {
		return 0
	}
	end := exp.Add(auth.Leeway)
	// A second that is not whole ends the session at the next one, never
	// before exp + Leeway.
	u := end.Unix()
	if end.After(time.Unix(u, 0)) {
		u++
	}
	if u <= 0 || u > math.MaxUint32 {
		return 0
	}
	return uint32(u)
}

// refresh answers a REFRESH: a valid token for the session's device moves
// the session's end to the token's; anything else is refused, and the
// session goes on.
func (c *Conn) refresh(f *codec.Frame, over bool) {
	h := c.hub
	if over {
		c.refreshAck(f.Seq, codec.StatusOverloaded, "frame rate exceeded", 0)
		return
	}
	token, ok := f.Meta.Get("token")
	if !ok || len(token) == 0 {
		c.refreshAck(f.Seq, codec.StatusUnauthorized, "missing token", 0)
		return
	}
	claims, err := h.opts.Verifier.Verify(token, time.Now())
	if err != nil {
		c.refreshAck(f.Seq, codec.StatusUnauthorized, err.Error(), 0)
		return
	}
	if claims.Device != c.device {
		c.refreshAck(f.Seq, codec.StatusUnauthorized, reasonOtherDevice, 0)
		return
	}
	h.wheel.extend(c, h.sessionEnd(claims.Expires))
	h.refreshes.Add(1)
	c.refreshAck(f.Seq, codec.StatusOK, "", claims.Expires.Unix())
}

// refreshAck queues the REFRESH_ACK of seq: OK with exp, or status with
// reason.
func (c *Conn) refreshAck(seq uint32, status codec.Status, reason string, exp int64) {
	if status != codec.StatusOK {
		c.hub.refreshFails.Add(1)
	}
	buf := bytebufferpool.Get()
	if status == codec.StatusOK {
		buf.B = codec.AppendRefreshAck(buf.B[:0], seq, exp)
	} else {
		buf.B = codec.AppendRefreshRefusal(buf.B[:0], seq, status, reason)
	}
	c.send(buf.B)
	bytebufferpool.Put(buf)
}
