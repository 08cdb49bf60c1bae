package conn

import (
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
	"github.com/longlink/longlink/netquality"
)

// Lookup returns the device's connection on this node, or nil.
func (h *Hub) Lookup(device string) *Conn { return h.reg.lookup(device) }

// LoginUnderWay returns a channel that closes when the device's login
// under way here ends (it is then registered, or failed), or nil when
// none is. With a shared route a login binds the device before Lookup
// finds it: a push routed here meanwhile waits on this channel.
func (h *Hub) LoginUnderWay(device string) <-chan struct{} { return h.underway.await(device) }

// Members returns the connections of group's members on this node: a
// snapshot shared with the registry, to be read and not changed (later
// joins and leaves do not show in it).
func (h *Hub) Members(group string) []downstream.Target { return h.reg.members(group) }

// All appends every logged-in connection on this node to dst.
func (h *Hub) All(dst []downstream.Target) []downstream.Target { return h.reg.all(dst) }

// Join adds the device's connection here, if any, to group.
func (h *Hub) Join(group, device string) {
	if c := h.reg.lookup(device); c != nil {
		h.reg.join(group, c)
	}
}

// Leave removes the device's connection here, if any, from group.
func (h *Hub) Leave(group, device string) {
	if c := h.reg.lookup(device); c != nil {
		h.reg.leave(group, c)
	}
}

// Kick closes the device's connection here with KICK(status) and reports
// whether there was one.
func (h *Hub) Kick(device string, status codec.Status, reason string) bool {
	c := h.reg.lookup(device)
	if c == nil {
		return false
	}
	c.kick(status, reason)
	return true
}

// KickConn closes the device's connection here with KICK(status) if it is
// connection id (whichever it is when id is 0), and reports whether it
// did. Another node asks for it when the device logs in there.
func (h *Hub) KickConn(device string, id uint64, status codec.Status, reason string) bool {
	c := h.reg.lookup(device)
	if c == nil || (id != 0 && c.id != id) {
		return false
	}
	c.kick(status, reason)
	return true
}

// Drain makes the hub refuse new connections and kicks every open one
// with SHUTTING_DOWN, carrying redirect when it is not empty. It returns
// how many it kicked.
func (h *Hub) Drain(redirect string) int {
	h.redirect.Store(&redirect)
	h.draining.Store(true)
	var all []*Conn
	h.wheel.each(func(c *Conn) { all = append(all, c) })
	for _, c := range all {
		c.kick(codec.StatusShuttingDown, "node is shutting down")
	}
	return len(all)
}

// Counters is the hub's part of the node's statistics.
type Counters struct {
	Connections, LoggedIn                        int64
	Accepted, Refused, Logins, LoginFailures     uint64
	Refreshes, RefreshFailures                   uint64 // REFRESHes granted and refused
	FramesIn, BytesIn, Acks, Recovered, Requests uint64
	TLSHandshakeFailures                         uint64
	RateLimited                                  uint64 // REQUESTs answered OVERLOADED by -rate
	RefusedSource                                uint64 // connections refused by a per-source limit (part of Refused)
	Throttled                                    uint64 // frames over the frame rate
	Kicks                                        [codec.NumStatus]uint64
	Closes                                       [NumCloseReasons]uint64 // connections closed, by reason
}

// ClientRTT returns the round trips clients reported, per network type,
// and how many reports were dropped as malformed.
func (h *Hub) ClientRTT() ([]netquality.Stats, uint64) { return h.rtt.Stats(), h.rtt.Dropped() }

// Intervals returns the histogram of heartbeat intervals granted at
// login (netquality.IntervalBounds): cumulative counts, count, sum.
func (h *Hub) Intervals() ([len(netquality.IntervalBounds)]uint64, uint64, float64) {
	return h.intervals.Stats()
}

// Counters reads the hub's counters.
func (h *Hub) Counters() (s Counters) {
	s.Connections, s.LoggedIn = h.conns.Load(), h.loggedIn.Load()
	s.Accepted, s.Refused = h.accepted.Load(), h.refused.Load()
	s.Logins, s.LoginFailures = h.logins.Load(), h.loginFails.Load()
	s.Refreshes, s.RefreshFailures = h.refreshes.Load(), h.refreshFails.Load()
	s.FramesIn, s.BytesIn = h.framesIn.Load(), h.bytesIn.Load()
	s.Acks, s.Recovered, s.Requests = h.acks.Load(), h.recovered.Load(), h.requests.Load()
	s.TLSHandshakeFailures = h.tlsFailures.Load()
	s.RateLimited = h.rateLimited.Load()
	s.RefusedSource, s.Throttled = h.refusedSource.Load(), h.throttled.Load()
	for i := range s.Kicks {
		s.Kicks[i] = h.kicks[i].Load()
	}
	for i := range s.Closes {
		s.Closes[i] = h.closes[i].Load()
	}
	return s
}
