package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/longlink/longlink/client" // package client; "client" is the generator's own connection type
	"github.com/longlink/longlink/codec"
)

// With -sdk every simulated device is a client.Client of the Go SDK
// (package client), so the figures are what an app embedding the SDK
// sees: its heartbeats, its batched PUSH_ACKs, its duplicate filter, its
// dispatcher goroutine between the socket and the push handler, its
// request table, and its own reconnects with resume.
//
// The generator keeps what it does itself: tokens (Config.Token mints or
// fetches them), the transports (Config.Dialer dials through the
// generator's dialer: source addresses, TLS, its WebSocket framing), the
// open-loop schedule, and the measurements. The SDK exposes neither PING
// round trips nor LOGIN_ACK timing, so the connection the Dialer hands to
// the SDK taps the frame headers that pass through it (frameTap): PING
// out, PONG and LOGIN_ACK in.
//
// Churn (mixed) cuts the device's connection from below, through the
// connection the Dialer returned: the SDK sees a dead socket, backs off
// and logs in again with resume, as it would when a phone changes
// networks. Closing a Client and dialing a new one would not resume: a
// fresh Client has no way to be given the last seq of an earlier one
// (Config has no such field, and its first LOGIN never carries resume).

// sdkDevice is one device in -sdk mode: its Client and the state the
// generator keeps about it.
type sdkDevice struct {
	r *runner
	s *slot

	cl       atomic.Pointer[sdk.Client] // set once Dial returned it
	conn     atomic.Pointer[sdkConn]    // the connection the Dialer made last
	up       atomic.Bool                // between OnState(Connected) and the next Disconnected/Closed
	draining atomic.Bool                // churn: send no new request on it
	cut      atomic.Int32               // churn: cutNone, cutIssued, cutDown
	inflight atomic.Int32               // Request calls not returned

	attemptAt  atomic.Int64 // runner-relative nanos at which the current attempt began (Token)
	dialFailed atomic.Bool  // the current attempt failed in the Dialer (a dial error, not a login one)

	everUp   bool          // a login succeeded; OnState only (one goroutine per client)
	firstUp  chan struct{} // closed at the first OnState(Connected)
	upClosed bool          // firstUp is closed; OnState only
}

// States of sdkDevice.cut.
const (
	cutNone   = iota
	cutIssued // the connection was cut on purpose: its end is not an error
	cutDown   // ... and the client saw it end; it has not logged in again yet
)

func newSDKDevice(r *runner, s *slot) *sdkDevice {
	return &sdkDevice{r: r, s: s, firstUp: make(chan struct{})}
}

// sdkConfig is the client.Config of device d.
func (r *runner) sdkConfig(d *sdkDevice) sdk.Config {
	cfg := r.cfg
	return sdk.Config{
		Endpoints:   []sdk.Endpoint{{Proto: cfg.transport, Addr: cfg.target}}, // tcp, ws or tls: Dialer serves all three
		Token:       d.token,
		Dialer:      d.dial,
		DialTimeout: cfg.DialTimeout,
		Heartbeat:   cfg.HB, // only ever shortens LOGIN_ACK's hb
		Handlers:    map[uint16]func(sdk.Push){uint16(cfg.Biz): d.onPush},
		OnState:     d.onState,
		MaxFrame:    cfg.MaxFrame,
	}
}

// connectSDK dials device s with the SDK. It waits for the client's first
// OnState(Connected), so that the connection gauge is exact when the
// connect phase ends.
func (r *runner) connectSDK(ctx context.Context, s *slot) error {
	d := s.sdk
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	cl, err := sdk.Dial(ctx, r.sdkConfig(d))
	if err != nil {
		if d.dialFailed.Load() {
			r.c.dialErrors.Add(1)
		} else {
			r.c.loginErrors.Add(1)
		}
		return fmt.Errorf("sdk dial %s: %w", s.device, err)
	}
	d.cl.Store(cl)
	select {
	case <-d.firstUp:
	case <-cl.Done():
	}
	return nil
}

// token is Config.Token: the token prepared before the connect phase, then
// fresh ones. It marks the start of an attempt.
func (d *sdkDevice) token(ctx context.Context) (string, error) {
	d.attemptAt.Store(d.r.mono())
	d.dialFailed.Store(false)
	return d.r.token(ctx, d.s)
}

// dial is Config.Dialer: the generator's own dialer and transports. A
// KICK's redirect (ep.Addr other than the target) is honoured.
func (d *sdkDevice) dial(ctx context.Context, ep sdk.Endpoint) (net.Conn, error) {
	r := d.r
	r.c.dials.Add(1)
	lc := &client{r: r, s: d.s}
	if r.ws {
		lc.rbuf = make([]byte, initialReadBuf)
	}
	if err := r.dial(ctx, lc, ep.Addr); err != nil {
		d.dialFailed.Store(true)
		return nil, err
	}
	// The WebSocket upgrade left a read deadline; the SDK sets none (it
	// closes the connection to interrupt a login).
	_ = lc.nc.SetReadDeadline(time.Time{})
	sc := &sdkConn{Conn: lc.nc, lc: lc, d: d}
	d.conn.Store(sc)
	return sc, nil
}

// onState is Config.OnState: the connection gauge, logins, and the end of
// a connection or of an attempt classified as the generator's errors.
// The SDK calls it on one goroutine per client, in order.
func (d *sdkDevice) onState(st sdk.State, err error) {
	r := d.r
	switch st {
	case sdk.StateConnected:
		d.everUp = true
		if d.up.CompareAndSwap(false, true) {
			r.c.addUp(1)
		}
		r.c.logins.Add(1)
		storeMax(&r.lastLogin, r.mono())
		if d.cut.CompareAndSwap(cutDown, cutNone) {
			r.pendingCuts.Add(-1)
		}
		d.draining.Store(false)
		if !d.upClosed {
			d.upClosed = true
			close(d.firstUp)
		}
	case sdk.StateDisconnected, sdk.StateClosed:
		wasUp := d.up.CompareAndSwap(true, false)
		if wasUp {
			r.c.addUp(-1)
		}
		if err == nil || errors.Is(err, sdk.ErrClosed) || r.stopping.Load() {
			return
		}
		switch {
		case wasUp && d.cut.CompareAndSwap(cutIssued, cutDown):
			// The churn's own cut.
		case wasUp:
			d.lost(err)
		case d.everUp:
			// A reconnect attempt failed (the first Dial counts its own).
			if d.dialFailed.Load() {
				r.c.dialErrors.Add(1)
			} else {
				r.c.loginErrors.Add(1)
			}
			r.noteError(fmt.Sprintf("sdk reconnect %s: %v", d.s.device, err))
		}
	}
}

// lost counts the end of a logged-in connection that the generator did
// not cause.
func (d *sdkDevice) lost(err error) {
	r := d.r
	var ke *sdk.KickError
	var pe *sdk.ProtocolError
	switch {
	case errors.As(err, &ke):
		r.c.kicks[statusIndex(ke.Status)].Add(1)
		r.noteError(fmt.Sprintf("KICK %s to %s: %q", ke.Status, d.s.device, ke.Reason))
		return
	case errors.As(err, &pe):
		r.c.protoErrors.Add(1)
	default:
		r.c.disconnects.Add(1)
	}
	r.noteError(fmt.Sprintf("connection of %s closed: %v", d.s.device, err))
}

// onPush is the push handler: the delivery latency from the stamp, as the
// generator's own reader takes it, but after the SDK's duplicate filter
// and dispatcher.
func (d *sdkDevice) onPush(p sdk.Push) {
	r := d.r
	sent, _, ok := readStamp(p.Body, r.runID)
	if !ok {
		r.c.foreign.Add(1)
		return
	}
	now := time.Now().UnixNano()
	r.lat[kindDelivery].record(d.s.idx, time.Duration(now-sent))
	r.c.deliveries.Add(1)
	storeMax(&r.c.lastDelivery, now)
}

// usable reports whether requests may be made on d.
func (d *sdkDevice) usable() bool {
	return d.up.Load() && !d.draining.Load() && d.cl.Load() != nil
}

// fireRequestSDK makes burst i of -pipeline requests on device i % conns
// (or the next usable one). Each is a client.Request on its own
// goroutine, as an app would make it; its latency runs from intended.
func (r *runner) fireRequestSDK(i int64, intended time.Time) {
	n := len(r.slots)
	for try := range 8 {
		d := r.slots[(int(i)+try*101)%n].sdk
		if d.usable() {
			for range r.cfg.Pipeline {
				d.request(intended)
			}
			return
		}
	}
	r.c.unsent.Add(int64(r.cfg.Pipeline))
}

// request makes one Request on d's client.
func (d *sdkDevice) request(intended time.Time) {
	r := d.r
	cl := d.cl.Load()
	d.inflight.Add(1)
	r.c.requests.Add(1)
	r.reqWG.Add(1)
	go func() {
		defer r.reqWG.Done()
		defer d.inflight.Add(-1)
		_, err := cl.Request(r.reqCtx, uint16(r.cfg.Biz), nil, r.reqBody)
		lat := time.Since(intended)
		var se *sdk.StatusError
		switch {
		case err == nil:
			r.lat[kindRequest].record(d.s.idx, lat)
			r.c.responses.Add(1)
		case errors.As(err, &se):
			r.lat[kindRequest].record(d.s.idx, lat)
			r.c.respErrors[statusIndex(se.Status)].Add(1)
			r.noteError(fmt.Sprintf("RESPONSE %s: %.100q", se.Status, se.Message))
		case r.stopping.Load():
			// Given up at teardown: counted as lost.
		default:
			r.c.reqFailed.Add(1)
			r.noteError(fmt.Sprintf("request on %s: %v", d.s.device, err))
		}
	}()
}

// churnSDK cuts d's connection on purpose, once its requests in flight are
// answered; the SDK then reconnects with resume by itself, after its
// backoff.
func (r *runner) churnSDK(ctx context.Context, d *sdkDevice) {
	if !d.usable() {
		return
	}
	d.draining.Store(true)
	awaitAnswers(&d.inflight)
	sc := d.conn.Load()
	if ctx.Err() != nil || sc == nil || !d.up.Load() || !d.cut.CompareAndSwap(cutNone, cutIssued) {
		d.draining.Store(false)
		return
	}
	r.c.reconnects.Add(1)
	r.pendingCuts.Add(1)
	sc.cut()
}

// teardownSDK closes every client (their sockets with a reset, see
// sdkConn.Close) and waits for the requests still running, then sums the
// clients' counters.
func (r *runner) teardownSDK() {
	r.reqCancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) * 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(r.slots)) {
					return
				}
				if cl := r.slots[i].sdk.cl.Load(); cl != nil {
					_ = cl.Close()
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); r.reqWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	st := &SDKStats{ChurnCuts: r.c.reconnects.Load()}
	for _, s := range r.slots {
		cl := s.sdk.cl.Load()
		if cl == nil {
			continue
		}
		cs := cl.Stats()
		st.Clients++
		st.Connects += cs.Connects
		st.Reconnects += cs.Reconnects
		st.Resumed += cs.Resumed
		st.Gaps += cs.Gaps
		st.Kicks += cs.Kicks
		st.HeartbeatTimeouts += cs.HeartbeatTimeouts
		st.PushesReceived += cs.PushesReceived
		st.DuplicatesDropped += cs.DroppedDuplicates
		st.Unhandled += cs.Unhandled
		st.AcksSent += cs.AcksSent
		st.RequestsSent += cs.RequestsSent
		st.RequestsRetried += cs.RequestsRetried
		st.RequestsFailed += cs.RequestsFailed
	}
	r.sdkStats = st
}

// SDKStats are the SDK clients' own counters (client.Stats), summed over
// the devices, with -sdk.
type SDKStats struct {
	Clients           int64  `json:"clients"`            // Clients that Dial returned
	ChurnCuts         int64  `json:"churn_cuts"`         // mixed: connections the generator cut
	Connects          uint64 `json:"connects"`           // logins
	Reconnects        uint64 `json:"reconnects"`         // logins after a client's first
	Resumed           uint64 `json:"resumed"`            // logins with resumed=1
	Gaps              uint64 `json:"gaps"`               // logins with resumed=0 (OnGap)
	Kicks             uint64 `json:"kicks"`              // KICKs received
	HeartbeatTimeouts uint64 `json:"heartbeat_timeouts"` // connections declared dead for missed PONGs
	PushesReceived    uint64 `json:"pushes_received"`    // pushes handed to the handlers
	DuplicatesDropped uint64 `json:"duplicates_dropped"` // pushes dropped as duplicates (seq or id)
	Unhandled         uint64 `json:"unhandled"`          // pushes of a business without a handler
	AcksSent          uint64 `json:"acks_sent"`          // PUSH_ACK frames
	RequestsSent      uint64 `json:"requests_sent"`      // REQUEST frames, retries included
	RequestsRetried   uint64 `json:"requests_retried"`   // idempotent requests sent again after a reconnect
	RequestsFailed    uint64 `json:"requests_failed"`    // requests that ended in an error other than a status
}

// sdkConn is the connection the Dialer gives the SDK: the generator's
// transport under it (the socket, TLS, or its WebSocket framing), with a
// tap on the frame headers that pass.
type sdkConn struct {
	net.Conn         // the socket, or TLS over it
	lc       *client // the generator's connection: WebSocket framing, reset at teardown
	d        *sdkDevice

	in, out frameTap
	pingSeq atomic.Uint32 // seq of the PING waiting for its PONG, 0 = none
	pingAt  atomic.Int64  // when it was written, runner-relative nanos

	rest  []byte // WebSocket: what the last Read left of a message (aliases lc's buffers)
	wpart []byte // WebSocket: the start of a frame the SDK has not finished writing
}

// Read hands the SDK the server's byte stream: the socket's bytes, or
// over WebSocket the payloads of the binary messages, each of which must
// hold exactly one frame.
func (sc *sdkConn) Read(p []byte) (int, error) {
	lc := sc.lc
	if !sc.d.r.ws {
		n, err := sc.Conn.Read(p)
		sc.in.feed(p[:n], sc.seeIn)
		return n, err
	}
	for len(sc.rest) == 0 {
		msg, ok, err := lc.nextWSMessage()
		if errors.Is(err, errWSClosed) {
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		if ok {
			if _, _, err := wsFrame(msg, sc.d.r.cfg.MaxFrame); err != nil {
				return 0, err
			}
			sc.rest = msg
			break
		}
		if err := lc.fill(lc.need); err != nil {
			return 0, err
		}
	}
	n := copy(p, sc.rest)
	sc.rest = sc.rest[n:]
	sc.in.feed(p[:n], sc.seeIn)
	return n, nil
}

// Write sends what the SDK's buffered writer flushes: as it is, or over
// WebSocket each whole frame as one masked binary message (a frame split
// across two flushes waits in wpart for its end).
func (sc *sdkConn) Write(p []byte) (int, error) {
	sc.out.feed(p, sc.seeOut)
	if !sc.d.r.ws {
		return sc.Conn.Write(p)
	}
	frames := p
	if len(sc.wpart) > 0 {
		sc.wpart = append(sc.wpart, p...)
		frames = sc.wpart
	}
	whole := wholeFrames(frames)
	var err error
	if whole > 0 {
		bp := wsBufs.Get().(*[]byte)
		out := wsAppendMessages((*bp)[:0], frames[:whole])
		sc.lc.wmu.Lock()
		_, err = sc.lc.nc.Write(out)
		sc.lc.wmu.Unlock()
		*bp = out[:0]
		wsBufs.Put(bp)
	}
	if rest := frames[whole:]; len(rest) == 0 {
		sc.wpart = nil
	} else {
		sc.wpart = append([]byte(nil), rest...)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// wholeFrames is the length of the whole frames at the start of b.
func wholeFrames(b []byte) int {
	n := 0
	for len(b)-n >= codec.HeaderSize {
		h, err := codec.ParseHeader(b[n:], 1<<30)
		if err != nil || n+h.Size() > len(b) {
			break
		}
		n += h.Size()
	}
	return n
}

// Close closes the connection; at teardown with a reset, as the
// generator's own connections.
func (sc *sdkConn) Close() error {
	sc.lc.closing.Store(true)
	if sc.d.r.stopping.Load() {
		sc.lc.abort()
		return nil
	}
	return sc.Conn.Close()
}

// cut closes the connection under the SDK (churn).
func (sc *sdkConn) cut() {
	sc.lc.closing.Store(true)
	_ = sc.Conn.Close()
}

// seeOut sees a frame the SDK writes.
func (sc *sdkConn) seeOut(h *codec.Header, _ []byte) {
	r := sc.d.r
	switch h.Op {
	case codec.OpPing:
		sc.pingAt.Store(r.mono())
		sc.pingSeq.Store(h.Seq)
		r.c.pings.Add(1)
	case codec.OpPushAck:
		r.c.acks.Add(1)
	}
}

// seeIn sees a frame the SDK reads; after is what follows its header in
// the same read.
func (sc *sdkConn) seeIn(h *codec.Header, after []byte) {
	r := sc.d.r
	switch h.Op {
	case codec.OpPong:
		if h.Seq != 0 && sc.pingSeq.CompareAndSwap(h.Seq, 0) {
			r.lat[kindPing].record(sc.d.s.idx, time.Duration(r.mono()-sc.pingAt.Load()))
			r.c.pongs.Add(1)
		}
	case codec.OpLoginAck:
		if h.Status != codec.StatusOK {
			return
		}
		r.lat[kindLogin].record(sc.d.s.idx, time.Duration(r.mono()-sc.d.attemptAt.Load()))
		if int(h.MetaLen) <= len(after) {
			if v, ok := codec.Meta(after[:h.MetaLen]).Get("hb"); ok {
				if s, err := strconv.Atoi(string(v)); err == nil && s > 0 {
					r.serverHB.CompareAndSwap(0, int64(time.Duration(s)*time.Second))
				}
			}
		}
	}
}

// frameTap follows one direction of a frame stream as its bytes pass, and
// shows each frame's header.
type frameTap struct {
	hdr    [codec.HeaderSize]byte
	hn     int  // bytes of hdr held
	skip   int  // bytes of the current frame's meta and body still to pass
	broken bool // a header did not parse: the SDK drops the connection, the tap stops
}

// feed passes b; see gets each header completed in b, with the bytes of b
// after it.
func (t *frameTap) feed(b []byte, see func(h *codec.Header, after []byte)) {
	for len(b) > 0 && !t.broken {
		if t.skip > 0 {
			n := min(t.skip, len(b))
			t.skip -= n
			b = b[n:]
			continue
		}
		n := copy(t.hdr[t.hn:], b)
		t.hn += n
		b = b[n:]
		if t.hn < codec.HeaderSize {
			return
		}
		t.hn = 0
		h, err := codec.ParseHeader(t.hdr[:], 1<<30)
		if err != nil {
			t.broken = true
			return
		}
		t.skip = int(h.MetaLen) + int(h.BodyLen)
		see(&h, b)
	}
}
