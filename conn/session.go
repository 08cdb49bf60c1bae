package conn

import (
	"context"
	"strconv"
	"time"

	"github.com/longlink/longlink/admit"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/upstream"
	"github.com/longlink/longlink/recovery"
	"github.com/longlink/longlink/route"
	"github.com/valyala/bytebufferpool"
)

// What transports call: meterIn for each frame they read (a protocol
// frame, or one of their own such as a WebSocket ping), frameIn for each
// protocol frame, kick or end to close the connection with a status, and
// open to know whether to go on.

// open reports whether c takes frames now: it is not closing, and no
// login is on a worker (login.go).
func (c *Conn) open() bool {
	w := c.state.Load()
	return State(w&stateMask) < StateClosing && w&loginQueued == 0
}

// meterIn takes one frame from c's frame rate and reports whether it came
// over the rate: it is then answered OVERLOADED where an answer exists,
// and not served otherwise. A further burst over, c is kicked.
func (c *Conn) meterIn() (over bool) {
	switch c.meter() {
	case frameKick:
		c.kick(codec.StatusOverloaded, "frame rate exceeded")
		return true
	case frameOver:
		return true
	}
	return false
}

// frameIn applies one protocol frame; over is what meterIn said of it.
func (c *Conn) frameIn(f *codec.Frame, over bool) {
	c.hub.framesIn.Add(1)
	if c.open() {
		c.handle(f, over)
	}
}

// end closes c with status once last, the transport's own bytes (nil for
// none), is written: a WebSocket close answered, a handshake refused.
// StatusOK means the client ended the session; another status counts as
// a kick. It reports false when c was closing already.
func (c *Conn) end(status codec.Status, last []byte) bool {
	if !c.setState(StateClosing, status) {
		return false
	}
	if status != codec.StatusOK {
		c.hub.countKick(status)
	}
	if last != nil {
		c.hub.down.SendRaw(c, last)
	}
	c.hub.down.CloseAfterFlush(c, status)
	return true
}

// What meter makes of a frame.
const (
	frameServed = iota // within the frame rate
	frameOver          // over it: answered OVERLOADED where an answer exists
	frameKick          // a further burst over: the connection is kicked
)

// meter refills c's rate buckets and takes one frame from its frame
// bucket. The frame bucket may go a burst below zero: the frames sent
// meanwhile are refused, and past that the client is not slowing down.
func (c *Conn) meter() int {
	h := c.hub
	if h.opts.FrameRate <= 0 && h.opts.Rate <= 0 {
		return frameServed
	}
	now := h.nowMillis()
	elapsed := float32(now - c.refill)
	c.refill = now
	if h.opts.Rate > 0 {
		c.tokens = min(float32(h.opts.Burst), c.tokens+elapsed*float32(h.opts.Rate)/1000)
	}
	if h.opts.FrameRate <= 0 {
		return frameServed
	}
	burst := float32(h.opts.FrameBurst)
	c.frames = min(burst, c.frames+elapsed*float32(h.opts.FrameRate)/1000) - 1
	switch {
	case c.frames >= 0:
		return frameServed
	case c.frames >= -burst:
		h.throttled.Add(1)
		return frameOver
	}
	h.throttled.Add(1)
	return frameKick
}

// handle applies one frame to the session; over says the frame came
// over the frame rate.
func (c *Conn) handle(f *codec.Frame, over bool) {
	if c.State() == StateAccepted {
		if f.Op != codec.OpLogin {
			c.kick(codec.StatusNotLoggedIn, "LOGIN must be the first frame")
			return
		}
		c.login(f)
		return
	}
	switch f.Op {
	case codec.OpPing:
		status := codec.StatusOK
		if over {
			status = codec.StatusOverloaded
		} else if rtt, ok := f.Meta.Get("rtt"); ok {
			// A network quality report: aggregated for the node, kept
			// nowhere for the connection. A malformed one is dropped
			// (counted); the PING is answered all the same.
			net, _ := f.Meta.Get("net")
			c.hub.rtt.Report(rtt, net)
		}
		var b [codec.HeaderSize]byte
		c.send(codec.AppendPong(b[:0], f.Seq, status))
	case codec.OpRequest:
		if over {
			c.hub.requests.Add(1)
			c.hub.respond(c, f.Biz, f.Seq, codec.StatusOverloaded, nil, nil)
			return
		}
		c.request(f)
	case codec.OpPushAck:
		if over {
			return // not applied: a later, cumulative ack covers it
		}
		c.hub.acks.Add(1)
		if e := c.rec.Load(); e != nil {
			e.Ack(f.Seq)
			if c.hub.rec.Durable() {
				c.hub.rec.JournalAck(c.device, f.Seq)
			}
		}
	case codec.OpRefresh:
		c.refresh(f, over)
	case codec.OpLogin:
		c.kick(codec.StatusBadFrame, "already logged in")
	default:
		c.kick(codec.StatusBadFrame, "op "+f.Op.String()+" is sent by the server only")
	}
}

// login authenticates the connection. On failure it answers LOGIN_ACK
// with the status and closes; on success its route work (enter) runs here
// or, with a shared route, on a login worker (login.go).
func (c *Conn) login(f *codec.Frame) {
	h := c.hub
	token, ok := f.Meta.Get("token")
	if !ok || len(token) == 0 {
		c.refuse(f.Seq, codec.StatusUnauthorized, "missing token")
		return
	}
	now := time.Now()
	claims, err := h.opts.Verifier.Verify(token, now)
	if err != nil {
		c.refuse(f.Seq, codec.StatusUnauthorized, err.Error())
		return
	}
	var resume uint32
	rv, resuming := f.Meta.Get("resume")
	if resuming {
		v, err := strconv.ParseUint(string(rv), 10, 32)
		if err != nil {
			c.refuse(f.Seq, codec.StatusBadFrame, "resume must be a decimal seq")
			return
		}
		resume = uint32(v)
	}
	hbv, asked := f.Meta.Get("hb")
	hb, ok := h.grant(hbv, asked)
	if !ok {
		c.refuse(f.Seq, codec.StatusBadFrame, "hb must be decimal seconds")
		return
	}
	l := loginJob{c: c, seq: f.Seq, claims: claims, resume: resume, resuming: resuming, hb: hb, at: now}
	if h.loginq == nil {
		l.enter()
		return
	}
	if !h.loginq.submit(l) {
		c.refuse(f.Seq, codec.StatusOverloaded, "too many logins in progress")
	}
}

// enter is a verified login's route work: it binds the device here,
// kicks an older connection of the same device, joins the token's and the
// device's groups, answers LOGIN_ACK and redelivers what resume asks for.
func (l *loginJob) enter() {
	c, h, claims, now := l.c, l.c.hub, &l.claims, l.at
	if c.State() >= StateClosing {
		return // closed while it waited: nothing to do
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.RouteTimeout)
	defer cancel()
	groups, err := h.route.Groups(ctx, claims.Device)
	if err != nil {
		// The shared route is unreachable: the device is served all the
		// same (local pushes and broadcasts reach it), with its token's
		// groups only.
		h.log.Warn("route groups failed; the device gets its token's groups only", "device", claims.Device, "err", err)
	}
	if len(claims.Groups) > 0 {
		for _, g := range claims.Groups {
			if err := h.route.Join(ctx, g, []string{claims.Device}); err != nil {
				h.log.Warn("route join failed", "device", claims.Device, "group", g, "err", err)
			}
		}
		groups = appendNew(groups, claims.Groups)
	}

	// From here the connection is logged in, unless it closes meanwhile.
	if !c.beginLogin() {
		return // closing already: nothing of the device to undo
	}
	defer func() {
		if c.endLogin() {
			h.releaseDevice(c)
		}
	}()
	c.device, c.app = claims.Device, claims.App
	if h.opts.SharedRoute {
		u := h.underway.begin(c.device)
		defer h.underway.end(c.device, u)
	}
	// Bound before the recovery state is attached: a connection of the
	// device on another node must first let go of the device and of its
	// recovery state (Cluster.Takeover).
	if prevLoc, had, err := h.route.Bind(ctx, c.device, route.Location{Node: h.opts.Node, Conn: c.id}); err != nil {
		h.log.Warn("route bind failed", "device", c.device, "err", err)
	} else if had && prevLoc.Node != h.opts.Node {
		h.opts.Cluster.Takeover(ctx, c.device, prevLoc)
	}
	rec := h.rec.AttachFrom(c.device, now, l.resume)
	if rec != nil {
		c.rec.Store(rec)
	}
	if !c.setState(StateLoggedIn, codec.StatusOK) {
		return // kicked meanwhile: the release undoes the bind
	}
	c.state.Or(wasLoggedIn)
	if c.takeUnauth() {
		if src, ok := admit.SourceOf(c.nc.RemoteAddr()); ok {
			h.opts.Admit.LoggedIn(src)
		}
	}
	c.setInputLimit(h.opts.MaxInput)
	h.wheel.settle(c, h.wheel.ticks(h.idleTimeout(l.hb)), h.sessionEnd(claims.Expires))
	c.tokens = float32(h.opts.Burst)
	h.logins.Add(1)
	h.intervals.Granted(l.hb)
	var prev *Conn
	c.welcome(l.seq, l.hb, rec, l.resume, l.resuming, func() {
		var ok bool
		if prev, ok = h.reg.put(c); !ok {
			return // closed meanwhile: it must not enter the index
		}
		for _, g := range groups {
			h.reg.join(g, c)
		}
	})
	if prev != nil {
		prev.kick(codec.StatusDuplicateLogin, "logged in on another connection")
	}
	if h.opts.Events != nil {
		h.opts.Events.Connected(h.opts.Node, c)
	}
}

// welcome queues LOGIN_ACK, with the heartbeat interval hb granted, and, when the client resumes, the pushes it
// missed, in seq order, and makes the connection reachable with register
// (Group.SendFirst): any new push is queued after them, and a client that
// has read its LOGIN_ACK can already be pushed to (a backend that pushes
// as soon as the device says it is online finds it).
func (c *Conn) welcome(seq uint32, hb time.Duration, rec *recovery.Entry, resume uint32, resuming bool, register func()) {
	h := c.hub
	buf := bytebufferpool.Get()
	defer bytebufferpool.Put(buf)
	ack := codec.LoginAck{
		Seq: seq, Conn: c.id, Node: h.opts.Node,
		Heartbeat:    int64(hb / time.Second),
		HeartbeatMin: int64(h.opts.HeartbeatMin / time.Second),
		HeartbeatMax: int64(h.opts.HeartbeatMax / time.Second),
	}
	if !resuming {
		buf.B = codec.AppendLoginAck(buf.B[:0], &ack)
		h.down.SendFirst(c, register, buf.B)
		return
	}
	// The ack's "resumed" must be known before it is encoded, and the
	// resumed pushes must follow it: collect them first (each stamped with
	// its seq), then send the ack and each push as its own frame.
	var pushes []byte
	var ends []int
	complete := rec.Since(resume, func(s uint32, frame []byte) {
		at := len(pushes)
		pushes = append(pushes, frame...)
		codec.SetSeq(pushes[at:], s)
		ends = append(ends, len(pushes))
	})
	ack.Resumed = codec.ResumedIncomplete
	if complete {
		ack.Resumed = codec.ResumedComplete
	}
	buf.B = codec.AppendLoginAck(buf.B[:0], &ack)
	frames := make([][]byte, 0, 1+len(ends))
	frames = append(frames, buf.B)
	from := 0
	for _, end := range ends {
		frames = append(frames, pushes[from:end])
		from = end
	}
	h.down.SendFirst(c, register, frames...)
	h.recovered.Add(uint64(len(ends)))
}

// refuse answers a failed LOGIN with status and reason and closes the
// connection once the answer is written.
func (c *Conn) refuse(seq uint32, status codec.Status, reason string) {
	h := c.hub
	if !c.setState(StateClosing, status) {
		return
	}
	h.loginFails.Add(1)
	buf := bytebufferpool.Get()
	buf.B = codec.AppendLoginRefusal(buf.B[:0], seq, status, reason)
	h.down.Send(c, buf.B) // the connection's first answer: within any bound
	h.down.CloseAfterFlush(c, status)
	bytebufferpool.Put(buf)
}

// request admits a REQUEST (rate limit, business queue) or answers it at
// once with the reason it was not forwarded.
func (c *Conn) request(f *codec.Frame) {
	h := c.hub
	h.requests.Add(1)
	if !c.allow() {
		h.rateLimited.Add(1)
		h.respond(c, f.Biz, f.Seq, codec.StatusOverloaded, nil, nil)
		return
	}
	req := upstream.Get()
	req.Biz, req.Seq, req.Conn = f.Biz, f.Seq, c.id
	req.Device, req.App = c.device, c.app
	req.Meta = append(req.Meta[:0], f.Meta...)
	req.Body = append(req.Body[:0], f.Body...)
	req.Reply = c
	if status := h.opts.Upstream.Submit(req); status != codec.StatusOK {
		upstream.Release(req)
		h.respond(c, f.Biz, f.Seq, status, nil, nil)
	}
}

// allow takes one token from the connection's REQUEST bucket, which
// meter refilled for this frame.
func (c *Conn) allow() bool {
	if c.hub.opts.Rate <= 0 {
		return true
	}
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// appendNew appends to dst the names of add it does not hold yet.
func appendNew(dst, add []string) []string {
next:
	for _, g := range add {
		for _, have := range dst {
			if have == g {
				continue next
			}
		}
		dst = append(dst, g)
	}
	return dst
}
