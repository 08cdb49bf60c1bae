package e2e

// The attack suite of the hostile-clients issue: each test runs one
// attack against the real gateway binary over loopback sockets and holds
// the node to its bounds (hostile_helpers_test.go): RSS at most 64 MiB
// over idle throughout, a monitor that pings every 100ms answered with no
// gap over 1s, the flooders throttled or kicked as the contract says, and
// a fresh login served afterwards. Attacks come from 127.0.0.2 up, the
// monitor from 127.0.0.1. The attacks that hold thousands of connections
// (TestHostileUnauthLogins, TestHostileIdleTLSSockets) run the gateway
// built without the race detector, whose per-connection memory alone
// would break the bound (see plainGateway); the others run the race
// build. Run them with
//
//	go test -race -run TestHostile -v ./e2e
//
// The figures, before the limits: 4 clients flooding PING took
// RSS from 44 MB to 2.35 GB in 4s; 1 client flooding PUSH_ACK to 6.9 GB;
// 20 clients flooding REQUEST to 4.9 GB (monitor p99 3.2s); 2 WebSocket
// clients flooding pings to 3.6 GB; 5,000 connections sending 65 KB of a
// LOGIN from 21 to 378 MB; 4,200 silent sockets on the TLS port refused
// every TLS client.

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/internal/gatewaytest"
	"github.com/longlink/longlink/internal/hostile"
)

// TestHostilePingFlood: 4 logged-in clients write PINGs as fast as the
// socket takes them and read their PONGs. Each gets its bucket's worth
// answered OK, then PONG OVERLOADED (every PING answered, in order), then,
// about a burst further, KICK(OVERLOADED) "frame rate exceeded" and the
// close.
func TestHostilePingFlood(t *testing.T) {
	s := startServer(t) // the defaults: -frame-rate 1000, -frame-burst 1000
	a := newAttack(t, s)
	const flooders = 4
	type conn struct {
		nc net.Conn
		r  *hostile.Reader
	}
	conns := make([]conn, flooders)
	for i := range conns {
		conns[i].nc, conns[i].r = loggedInFrom(t, hostile.From(attackerIP(i)), s, "dev-ping-flood-"+itoa(i))
	}
	a.begin()
	outs := each(flooders, func(i int) hostile.Outcome {
		return hostile.Flood{Op: codec.OpPing, For: floodFor, Stop: a.stop}.Run(conns[i].nc, conns[i].r)
	})
	a.end()
	for i, o := range outs {
		who := "ping flooder " + itoa(i)
		t.Logf("%s: %s", who, o.Summary())
		checkKicked(t, who, o.Kick, o.Closed, o.AfterKick, codec.StatusOverloaded, frameRateReason)
		checkThrottledThenKicked(t, who, o, defaultFrameRate, defaultFrameBurst)
		for _, p := range o.Problems {
			t.Errorf("%s: %s", who, p)
		}
	}
}

// checkThrottledThenKicked checks a flooder kicked by the frame rate: at
// most the bucket's worth answered OK, then OVERLOADED answers (at least
// half a burst of them: the kick waits for a further burst) before the
// KICK.
func checkThrottledThenKicked(t *testing.T, who string, o hostile.Outcome, rate, burst float64) {
	t.Helper()
	if most := withinBucket(rate, burst, o.Window()); o.OK() > most {
		t.Errorf("%s: %d answered OK in %v, want at most %d (frame rate %v/s, burst %v)", who, o.OK(), o.Window(), most, rate, burst)
	}
	if o.Overloaded() == 0 {
		t.Errorf("%s: no answer was OVERLOADED before the KICK", who)
	} else if o.Kick != nil && o.FirstOverloaded > o.Kick.AnswersBefore {
		t.Errorf("%s: the first OVERLOADED answer came after the KICK", who)
	}
	if o.Kick != nil && o.Overloaded() < int(burst/2) {
		t.Errorf("%s: kicked after only %d OVERLOADED answers, want about a burst (%v) over the bucket first", who, o.Overloaded(), burst)
	}
	if o.Kick != nil && o.Overloaded() > 2*int(burst)+withinBucket(rate, 0, o.Window()) {
		t.Errorf("%s: %d OVERLOADED answers before the KICK, want about a burst (%v)", who, o.Overloaded(), burst)
	}
}

// TestHostilePushAckFlood: one client floods PUSH_ACKs (which get no
// answer, within the rate or over it) and is kicked OVERLOADED "frame
// rate exceeded". It has a push of its own, so its acks reach a recovery
// state.
func TestHostilePushAckFlood(t *testing.T) {
	s := startServer(t)
	a := newAttack(t, s)
	nc, r := loggedInFrom(t, hostile.From(attackerIP(0)), s, "dev-ack-flood")
	if delivered, _ := s.push([]string{"dev-ack-flood"}, "ack me", map[string]any{"ack": true}); delivered != 1 {
		t.Fatalf("push delivered %d", delivered)
	}
	if f, err := r.Next(time.Now().Add(5 * time.Second)); err != nil || f.Op != codec.OpPush || f.Seq != 1 {
		t.Fatalf("push: %v seq %d err %v", f.Op, f.Seq, err)
	}
	a.begin()
	o := hostile.Flood{Op: codec.OpPushAck, For: floodFor, Stop: a.stop}.Run(nc, r)
	a.end()
	t.Logf("push-ack flooder: %s", o.Summary())
	checkKicked(t, "push-ack flooder", o.Kick, o.Closed, o.AfterKick, codec.StatusOverloaded, frameRateReason)
	if o.Answers > 0 {
		t.Errorf("push-ack flooder: %d answers to PUSH_ACKs, want none", o.Answers)
	}
	for _, p := range o.Problems {
		t.Errorf("push-ack flooder: %s", p)
	}
}

// TestHostileRequestFlood: 20 clients send REQUESTs far over -rate (100/s,
// burst 200) and read the answers. At full speed each is throttled
// (RESPONSE OVERLOADED past -rate, and past -frame-rate) and then kicked
// OVERLOADED "frame rate exceeded"; at 500/s, within -frame-rate but five
// times -rate, each is only throttled: every REQUEST answered, at most
// the -rate bucket's worth OK, and no KICK.
func TestHostileRequestFlood(t *testing.T) {
	const flooders = 20
	run := func(t *testing.T, rate float64) []hostile.Outcome {
		s := startServer(t)
		a := newAttack(t, s)
		type conn struct {
			nc net.Conn
			r  *hostile.Reader
		}
		conns := make([]conn, flooders)
		for i := range conns {
			conns[i].nc, conns[i].r = loggedInFrom(t, hostile.From(attackerIP(i%8)), s, "dev-req-flood-"+itoa(i))
		}
		a.begin()
		outs := each(flooders, func(i int) hostile.Outcome {
			return hostile.Flood{Op: codec.OpRequest, Biz: 1, Body: []byte("flood"), Rate: rate, For: floodFor, Stop: a.stop}.Run(conns[i].nc, conns[i].r)
		})
		a.end()
		return outs
	}
	t.Run("full speed", func(t *testing.T) {
		for i, o := range run(t, 0) {
			who := "request flooder " + itoa(i)
			t.Logf("%s: %s", who, o.Summary())
			checkKicked(t, who, o.Kick, o.Closed, o.AfterKick, codec.StatusOverloaded, frameRateReason)
			if most := withinBucket(defaultRate, defaultRateBurst, o.Window()); o.OK() > most {
				t.Errorf("%s: %d requests answered OK in %v, want at most %d (-rate %d, burst %d)", who, o.OK(), o.Window(), most, defaultRate, defaultRateBurst)
			}
			if o.Overloaded() == 0 || (o.Kick != nil && o.FirstOverloaded > o.Kick.AnswersBefore) {
				t.Errorf("%s: no RESPONSE OVERLOADED before the KICK", who)
			}
			if o.Answers != o.OK()+o.Overloaded() {
				t.Errorf("%s: answers %v, want only OK and OVERLOADED", who, o.ByStatus)
			}
			for _, p := range o.Problems {
				t.Errorf("%s: %s", who, p)
			}
		}
	})
	t.Run("paced over -rate", func(t *testing.T) {
		const rate = 500 // REQUESTs/s: 5 x -rate, half of -frame-rate
		for i, o := range run(t, rate) {
			who := "request flooder " + itoa(i)
			t.Logf("%s: %s", who, o.Summary())
			if o.Kick != nil {
				t.Errorf("%s: %v at %d/s, within -frame-rate: want throttled, not kicked", who, o.Kick, rate)
			}
			if !o.Drained || o.Answers != o.Sent {
				t.Errorf("%s: %d of %d requests answered, want all", who, o.Answers, o.Sent)
			}
			if most := withinBucket(defaultRate, defaultRateBurst, o.Window()); o.OK() > most {
				t.Errorf("%s: %d requests answered OK in %v, want at most %d (-rate %d, burst %d)", who, o.OK(), o.Window(), most, defaultRate, defaultRateBurst)
			}
			if o.Sent < rate*int(floodFor/time.Second)/2 {
				t.Errorf("%s: only %d requests sent in %v at %d/s", who, o.Sent, o.Elapsed, rate)
			}
			if o.Answers != o.OK()+o.Overloaded() || o.Overloaded() < o.Sent/2 {
				t.Errorf("%s: answers %v of %d sent, want most OVERLOADED and the rest OK", who, o.ByStatus, o.Sent)
			}
			for _, p := range o.Problems {
				t.Errorf("%s: %s", who, p)
			}
		}
	})
}

// TestHostileWebSocketPingFlood: 2 logged-in WebSocket clients flood ping
// control frames. The bucket's worth is answered with pongs, pings over
// the frame rate get none, and about a burst further each is kicked
// OVERLOADED "frame rate exceeded" (a binary KICK message) and closed.
func TestHostileWebSocketPingFlood(t *testing.T) {
	s := startWSServer(t)
	a := newAttack(t, s)
	const flooders = 2
	ws := make([]*hostile.WS, flooders)
	for i := range ws {
		w, err := hostile.DialWS(hostile.From(attackerIP(i)), s.WS)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.NC.Close() })
		if err := w.Login(token(t, "dev-ws-flood-"+itoa(i), time.Hour)); err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	a.begin()
	outs := each(flooders, func(i int) hostile.WSOutcome {
		return hostile.WSFlood{For: floodFor, Stop: a.stop}.Run(ws[i])
	})
	a.end()
	for i, o := range outs {
		who := "websocket flooder " + itoa(i)
		t.Logf("%s: %s", who, o.Summary())
		checkKicked(t, who, o.Kick, o.Closed, o.AfterKick, codec.StatusOverloaded, frameRateReason)
		if most := withinBucket(defaultFrameRate, defaultFrameBurst, o.Window()); o.Pongs > most {
			t.Errorf("%s: %d pongs in %v, want at most %d (frame rate %d/s, burst %d)", who, o.Pongs, o.Window(), most, defaultFrameRate, defaultFrameBurst)
		}
		if o.Pongs < defaultFrameBurst/2 {
			t.Errorf("%s: %d pongs, want the pings within the bucket (%d) answered", who, o.Pongs, defaultFrameBurst)
		}
		for _, p := range o.Problems {
			t.Errorf("%s: %s", who, p)
		}
	}
}

// TestHostileUnauthLogins: connections that never finish a LOGIN.
// "oversized": 5,000 of them, from 5 addresses, each sends 65,000 bytes of
// a LOGIN whose header declares 65,536: each gets KICK(FRAME_TOO_LARGE)
// from the header alone (before login a frame is at most 8192 bytes) and
// is closed. "held": 2,400 each send all but the last byte of an
// 8192-byte LOGIN and are held, open and unanswered, within the RSS
// bound; one of them then sends its last byte and is logged in (8192
// bytes is allowed), and a header declaring 8193 is refused at once.
// Both run on the gateway built without the race detector (see
// plainGateway).
func TestHostileUnauthLogins(t *testing.T) {
	bin := plainGateway(t)
	t.Run("oversized", func(t *testing.T) {
		const n, addrs = 5000, 5
		s := startServerBin(t, bin)
		a := newAttack(t, s)
		payload := hostile.PartialLogin(65536, 65000, "")
		a.begin()
		opened := hostile.Mass{Dialers: hostile.Attackers(addrs), Addr: s.TCP, N: n, Payload: payload, Stop: a.stop}.Open()
		defer hostile.CloseAll(opened.Conns)
		heard := hostile.ListenAll(opened.Conns, 64, time.Now().Add(5*time.Second))
		a.end()
		t.Logf("%d connections opened in %v (%d dials failed: %v)", opened.Opened, opened.Elapsed.Round(time.Millisecond), opened.Failed, opened.FirstErr)
		if opened.Opened != n {
			t.Errorf("%d of %d connections opened", opened.Opened, n)
		}
		kicked, shown := 0, 0
		for i, h := range heard {
			if opened.Conns[i] == nil {
				continue
			}
			f := h.First()
			if len(h.Frames) == 1 && f.Op == codec.OpKick && f.Status == codec.StatusFrameTooLarge && h.Closed {
				kicked++
				continue
			}
			if shown++; shown <= 5 {
				t.Errorf("connection %d: heard %d frames (first %v %v %q), closed %v, err %v; want KICK FRAME_TOO_LARGE and the close",
					i, len(h.Frames), f.Op, f.Status, hostile.Reason(f), h.Closed, h.Err)
			}
		}
		t.Logf("%d of %d kicked FRAME_TOO_LARGE and closed", kicked, opened.Opened)
		if kicked != opened.Opened {
			t.Errorf("%d of %d connections kicked FRAME_TOO_LARGE and closed", kicked, opened.Opened)
		}
	})
	t.Run("held", func(t *testing.T) {
		const n, addrs = 2400, 3 // 800 per address, under -max-unauth-per-ip
		s := startServerBin(t, bin, "-login-timeout", "30s")
		a := newAttack(t, s)
		tok := token(t, "dev-held", time.Hour)
		a.begin()
		opened := hostile.Mass{Dialers: hostile.Attackers(addrs), Addr: s.TCP, N: n, Payload: hostile.PartialLogin(8192, 8191, tok), Stop: a.stop}.Open()
		defer hostile.CloseAll(opened.Conns)
		t.Logf("%d connections opened in %v, each with 8191 bytes of an 8192-byte LOGIN (%d dials failed: %v)",
			opened.Opened, opened.Elapsed.Round(time.Millisecond), opened.Failed, opened.FirstErr)
		if opened.Opened != n {
			t.Fatalf("%d of %d connections opened", opened.Opened, n)
		}
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if c := s.snapshot().Connections; c < n+1 {
				return fmt.Errorf("the node holds %d connections, want %d (+ the monitor)", c, n)
			}
			return nil
		})
		// Held, not answered: nothing comes on any of them.
		heard := hostile.ListenAll(opened.Conns, 64, time.Now().Add(300*time.Millisecond))
		for i, h := range heard {
			if h.Bytes > 0 || h.Closed || h.Err != nil {
				t.Fatalf("held connection %d: %d bytes heard (first %v %v), closed %v, err %v; want nothing", i, h.Bytes, h.First().Op, h.First().Status, h.Closed, h.Err)
			}
		}
		// The last byte makes it a whole 8192-byte LOGIN, which is allowed.
		last := hostile.PartialLogin(8192, 8192, tok)[8191:]
		nc := opened.Conns[0]
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(last); err != nil {
			t.Fatal(err)
		}
		f, err := hostile.NewReader(nc).Next(time.Now().Add(5 * time.Second))
		if err != nil || f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
			t.Errorf("the completed 8192-byte LOGIN: %v %v (%s) err %v, want LOGIN_ACK OK", f.Op, f.Status, hostile.Reason(f), err)
		}
		a.end()
		// One byte more is refused from the header alone.
		c := dial(t, s.TCP)
		start := time.Now()
		c.write(hostile.LoginHeader(8193))
		c.kickedWith(codec.StatusFrameTooLarge, time.Second)
		t.Logf("a LOGIN header declaring 8193 bytes: FRAME_TOO_LARGE after %v", time.Since(start).Round(time.Millisecond))
	})
}

// TestHostileIdleTLSSockets: 4,200 TCP sockets from 5 attacking addresses
// connect to the TLS port and send nothing (more than the node's 4,096
// TLS handshake slots). A socket that sent nothing holds no handshake
// slot, so while all of them are held, 14 TLS clients from 127.0.0.1 log
// in and get their echo, each within a second. Gateway built without the
// race detector (plainGateway).
func TestHostileIdleTLSSockets(t *testing.T) {
	const n, addrs, logins = 4200, 5, 14
	certFile, keyFile, pool, err := gatewaytest.WriteCert(t.TempDir(), "hostile")
	if err != nil {
		t.Fatal(err)
	}
	s := startServerBin(t, plainGateway(t), "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile, "-login-timeout", "30s")
	a := newAttack(t, s)
	accepted := s.snapshot().Accepted
	a.begin()
	opened := hostile.Mass{Dialers: hostile.Attackers(addrs), Addr: s.TLS, N: n, Conc: 64, Stop: a.stop}.Open()
	defer hostile.CloseAll(opened.Conns)
	t.Logf("%d silent sockets opened in %v (%d dials failed: %v)", opened.Opened, opened.Elapsed.Round(time.Millisecond), opened.Failed, opened.FirstErr)
	if opened.Opened != n {
		t.Fatalf("%d of %d silent sockets opened", opened.Opened, n)
	}
	// The node has taken them all from its listen queue.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := s.snapshot().Accepted - accepted; got < n {
			return fmt.Errorf("the node accepted %d of the %d silent sockets", got, n)
		}
		return nil
	})
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	start := time.Now()
	for i := range logins {
		t0 := time.Now()
		tc, err := hostile.DialTLS(hostile.From("127.0.0.1"), s.TLS, cfg, 5*time.Second)
		if err != nil {
			t.Fatalf("TLS login %d of %d, %v after the first: %v", i+1, logins, time.Since(start).Round(time.Millisecond), err)
		}
		defer tc.Close()
		r := hostile.NewReader(tc)
		if _, err := hostile.Login(tc, r, token(t, "dev-tls-"+itoa(i), time.Hour)); err != nil {
			t.Fatalf("TLS login %d: %v", i+1, err)
		}
		if err := hostile.Echo(tc, r, 1, 1, []byte("over tls")); err != nil {
			t.Fatalf("TLS login %d: %v", i+1, err)
		}
		if el := time.Since(t0); el > time.Second {
			t.Errorf("TLS login %d took %v with the silent sockets held, want under 1s", i+1, el)
		}
	}
	t.Logf("%d TLS logins and echoes in %v with %d silent sockets held", logins, time.Since(start).Round(time.Millisecond), n)
	// The silent sockets were held all along: none was refused or closed
	// (a node that gives each a handshake slot runs out and refuses some).
	closed := 0
	for _, h := range hostile.ListenAll(opened.Conns, 64, time.Now().Add(200*time.Millisecond)) {
		if h.Closed || h.Bytes > 0 {
			closed++
		}
	}
	if closed > 0 {
		t.Errorf("%d of the %d silent sockets were closed or answered, want all held until the login timeout", closed, n)
	}
	a.end()
}

// TestHostileTLSHandshakeTimeout: with -tls-handshake-timeout 1s and
// -login-timeout 4s, a client that sends half a ClientHello is closed 1s
// after its first byte; one that first waits 1.5s (still open) and then
// sends half a ClientHello is closed 1s after that byte, the handshake
// time counting from it; one that sends nothing holds no handshake and is
// closed at the 4s login timeout.
func TestHostileTLSHandshakeTimeout(t *testing.T) {
	const hsTimeout, loginTimeout, idleFirst = time.Second, 4 * time.Second, 1500 * time.Millisecond
	certFile, keyFile, pool, err := gatewaytest.WriteCert(t.TempDir(), "hostile")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile,
		"-tls-handshake-timeout", hsTimeout.String(), "-login-timeout", loginTimeout.String())
	a := newAttack(t, s)
	hello, err := hostile.ClientHello("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	half := hello[:len(hello)/2]
	a.begin()
	type result struct {
		closedAfter time.Duration // from the first byte sent (from the dial when none was)
		early       string        // what went wrong before the first byte
		heard       hostile.Heard
	}
	// Timeouts on the node's timing wheel fire up to a tick late: an
	// eighth of the shortest of the login and idle timeouts.
	const tick = loginTimeout / 8
	cases := []struct {
		name  string
		wait  time.Duration // silence before half a ClientHello; -1: never send
		want  time.Duration
		bound time.Duration
	}{
		{"half a ClientHello", 0, hsTimeout, hsTimeout + tick + slack},
		{"silence, then half a ClientHello", idleFirst, hsTimeout, hsTimeout + tick + slack},
		{"silence", -1, loginTimeout, loginTimeout + tick + slack},
	}
	res := each(len(cases), func(i int) result {
		tc := cases[i]
		nc, err := hostile.From(attackerIP(i)).Dial("tcp", s.TLS)
		if err != nil {
			return result{early: err.Error()}
		}
		defer nc.Close()
		start := time.Now()
		if tc.wait > 0 {
			// The silence must not count against the handshake.
			if h := hostile.Listen(nc, time.Now().Add(tc.wait)); h.Closed || h.Bytes > 0 || h.Err != nil {
				return result{early: fmt.Sprintf("during %v of silence: %d bytes heard, closed %v, err %v", tc.wait, h.Bytes, h.Closed, h.Err)}
			}
		}
		if tc.wait >= 0 {
			start = time.Now()
			if _, err := nc.Write(half); err != nil {
				return result{early: err.Error()}
			}
		}
		h := hostile.Listen(nc, time.Now().Add(tc.bound+2*time.Second))
		return result{closedAfter: time.Since(start), heard: h}
	})
	a.end()
	for i, tc := range cases {
		r := res[i]
		if r.early != "" {
			t.Errorf("%s: %s", tc.name, r.early)
			continue
		}
		t.Logf("%s: closed %v after %s, %d bytes heard", tc.name, r.closedAfter.Round(time.Millisecond), map[bool]string{true: "the first byte", false: "the dial"}[tc.wait >= 0], r.heard.Bytes)
		switch {
		case !r.heard.Closed:
			t.Errorf("%s: still open %v later (err %v), want closed after %v", tc.name, r.closedAfter.Round(time.Millisecond), r.heard.Err, tc.want)
		case r.closedAfter < tc.want-20*time.Millisecond || r.closedAfter > tc.bound:
			t.Errorf("%s: closed after %v, want %v (at most %v)", tc.name, r.closedAfter.Round(time.Millisecond), tc.want, tc.bound)
		}
	}
	// TLS clients are served all along.
	tc, err := hostile.DialTLS(hostile.From("127.0.0.1"), s.TLS, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	r := hostile.NewReader(tc)
	if _, err := hostile.Login(tc, r, token(t, "dev-tls-after", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := hostile.Echo(tc, r, 1, 1, []byte("tls")); err != nil {
		t.Fatal(err)
	}
}

// TestHostileUnauthPerIP: with -max-unauth-per-ip 20, an address holding
// 20 connections still in the TLS handshake or login phase gets no more:
// TCP gets KICK(OVERLOADED) "too many connections from this address" and
// the close, TLS and WebSocket the close without a word. One of them
// logging in frees its place. Other addresses, the monitor's included,
// are unaffected. Each transport is filled from its own address.
func TestHostileUnauthPerIP(t *testing.T) {
	const limit = 20
	certFile, keyFile, pool, err := gatewaytest.WriteCert(t.TempDir(), "hostile")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	s := startServer(t, "-max-unauth-per-ip", itoa(limit), "-login-timeout", "30s", "-ws-listen", "127.0.0.1:0",
		"-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	a := newAttack(t, s)
	a.begin()
	// expect is the number of connections the test holds open (the
	// monitor's first); the node's count settles there after each step
	// (closes and refusals reach it a moment later).
	expect := s.snapshot().Connections
	settled := func() {
		t.Helper()
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if c := s.snapshot().Connections; c != expect {
				return fmt.Errorf("the node holds %d connections, want %d", c, expect)
			}
			return nil
		})
	}

	// TCP from 127.0.0.2.
	tcpFrom := hostile.From(attackerIP(0))
	held := make([]net.Conn, limit)
	for i := range held {
		nc, err := tcpFrom.Dial("tcp", s.TCP)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		held[i] = nc
	}
	expect += limit
	settled()
	refusedTCP(t, "TCP over the cap", tcpFrom, s.TCP, perIPReason)
	// Logging in one of them frees a place, for one connection.
	if _, err := hostile.Login(held[0], hostile.NewReader(held[0]), token(t, "dev-unauth-0", time.Hour)); err != nil {
		t.Fatalf("a held connection logging in: %v", err)
	}
	var again net.Conn
	checkFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		nc, _, err := hostile.Dial(tcpFrom, s.TCP, token(t, "dev-unauth-again", time.Hour))
		if err != nil {
			return fmt.Errorf("after one logged in, a new connection: %w", err)
		}
		again = nc
		return nil
	})
	defer again.Close()
	expect++
	// Other addresses: TCP from 127.0.0.5 and the monitor's address.
	for _, ip := range []string{attackerIP(3), "127.0.0.1"} {
		nc, r, err := hostile.Dial(hostile.From(ip), s.TCP, token(t, "dev-unauth-other-"+ip, time.Hour))
		if err != nil {
			t.Fatalf("TCP from %s while 127.0.0.2 is at its cap: %v", ip, err)
		}
		if err := hostile.Echo(nc, r, 1, 1, []byte("x")); err != nil {
			t.Fatalf("TCP from %s: %v", ip, err)
		}
		nc.Close()
	}

	// TLS from 127.0.0.3: handshakes done, no LOGIN.
	tlsFrom := hostile.From(attackerIP(1))
	settled()
	for range limit {
		tc, err := hostile.DialTLS(tlsFrom, s.TLS, tlsCfg, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
	}
	expect += limit
	settled()
	hello, err := hostile.ClientHello("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	refusedSilently(t, "TLS over the cap", tlsFrom, s.TLS, hello)
	if tc, err := hostile.DialTLS(hostile.From("127.0.0.1"), s.TLS, tlsCfg, 5*time.Second); err != nil {
		t.Errorf("TLS from 127.0.0.1 while 127.0.0.3 is at its cap: %v", err)
	} else {
		if _, err := hostile.Login(tc, hostile.NewReader(tc), token(t, "dev-unauth-tls", time.Hour)); err != nil {
			t.Errorf("TLS from 127.0.0.1: %v", err)
		}
		tc.Close()
	}

	// WebSocket from 127.0.0.4: upgraded, no LOGIN.
	wsFrom := hostile.From(attackerIP(2))
	settled()
	for range limit {
		w, err := hostile.DialWS(wsFrom, s.WS)
		if err != nil {
			t.Fatal(err)
		}
		defer w.NC.Close()
	}
	expect += limit
	settled()
	refusedSilently(t, "WebSocket over the cap", wsFrom, s.WS, hostile.UpgradeRequest())
	if w, err := hostile.DialWS(hostile.From("127.0.0.1"), s.WS); err != nil {
		t.Errorf("WebSocket from 127.0.0.1 while 127.0.0.4 is at its cap: %v", err)
	} else {
		if err := w.Login(token(t, "dev-unauth-ws", time.Hour)); err != nil {
			t.Errorf("WebSocket from 127.0.0.1: %v", err)
		}
		w.NC.Close()
	}
	a.end()
}

// refusedTCP checks a TCP connection from d is refused: KICK(OVERLOADED)
// with reason (any when empty), then the close.
func refusedTCP(t *testing.T, what string, d *net.Dialer, addr, reason string) {
	t.Helper()
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("%s: dial: %v", what, err)
	}
	defer nc.Close()
	h := hostile.Listen(nc, time.Now().Add(2*time.Second))
	f := h.First()
	switch {
	case len(h.Frames) != 1 || f.Op != codec.OpKick || f.Status != codec.StatusOverloaded:
		t.Errorf("%s: heard %d frames, first %v %v (%s); want KICK OVERLOADED", what, len(h.Frames), f.Op, f.Status, hostile.Reason(f))
	case reason != "" && hostile.Reason(f) != reason:
		t.Errorf("%s: KICK OVERLOADED %q, want %q", what, hostile.Reason(f), reason)
	case reason == "" && hostile.Reason(f) == "":
		t.Errorf("%s: KICK OVERLOADED without a reason", what)
	case !h.Closed:
		t.Errorf("%s: not closed after the KICK (err %v)", what, h.Err)
	}
}

// refusedSilently checks a connection from d that sends hello is closed
// without a byte sent back.
func refusedSilently(t *testing.T, what string, d *net.Dialer, addr string, hello []byte) {
	t.Helper()
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("%s: dial: %v", what, err)
	}
	defer nc.Close()
	_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = nc.Write(hello) // it may be closed already
	h := hostile.Listen(nc, time.Now().Add(2*time.Second))
	if !h.Closed || h.Bytes > 0 {
		t.Errorf("%s: %d bytes heard, closed %v (err %v); want closed without a word", what, h.Bytes, h.Closed, h.Err)
	}
}

// TestHostilePerSourceLimits: -max-conns-per-ip counts every connection
// of an address, logged in or not, on every transport; -connect-rate-per-ip
// is a token bucket of connects (burst = rate). Over either, TCP gets
// KICK(OVERLOADED) and the close, TLS and WebSocket the close without a
// word; other addresses are unaffected.
func TestHostilePerSourceLimits(t *testing.T) {
	certFile, keyFile, pool, err := gatewaytest.WriteCert(t.TempDir(), "hostile")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	withAll := func(extra ...string) []string {
		return append([]string{"-ws-listen", "127.0.0.1:0", "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, extra...)
	}

	t.Run("max conns per ip", func(t *testing.T) {
		const limit = 10
		s := startServer(t, withAll("-max-conns-per-ip", itoa(limit))...)
		a := newAttack(t, s)
		a.begin()
		// TCP from 127.0.0.2, logged in.
		tcpFrom := hostile.From(attackerIP(0))
		tcps := make([]net.Conn, limit)
		for i := range tcps {
			tcps[i], _ = loggedInFrom(t, tcpFrom, s, "dev-cap-tcp-"+itoa(i))
		}
		refusedTCP(t, "TCP over -max-conns-per-ip", tcpFrom, s.TCP, perIPReason)
		// A place freed by a close is reusable (once the node saw the close).
		tcps[0].Close()
		checkFor(t, 2*time.Second, 20*time.Millisecond, func() error {
			nc, _, err := hostile.Dial(tcpFrom, s.TCP, token(t, "dev-cap-tcp-again", time.Hour))
			if err != nil {
				return fmt.Errorf("after a close, a new connection: %w", err)
			}
			t.Cleanup(func() { nc.Close() })
			return nil
		})
		// TLS from 127.0.0.3, logged in.
		tlsFrom := hostile.From(attackerIP(1))
		for i := range limit {
			tc, err := hostile.DialTLS(tlsFrom, s.TLS, tlsCfg, 5*time.Second)
			if err != nil {
				t.Fatalf("TLS %d: %v", i, err)
			}
			defer tc.Close()
			if _, err := hostile.Login(tc, hostile.NewReader(tc), token(t, "dev-cap-tls-"+itoa(i), time.Hour)); err != nil {
				t.Fatalf("TLS %d: %v", i, err)
			}
		}
		hello, err := hostile.ClientHello("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		refusedSilently(t, "TLS over -max-conns-per-ip", tlsFrom, s.TLS, hello)
		// WebSocket from 127.0.0.4, logged in.
		wsFrom := hostile.From(attackerIP(2))
		for i := range limit {
			w, err := hostile.DialWS(wsFrom, s.WS)
			if err != nil {
				t.Fatalf("WebSocket %d: %v", i, err)
			}
			defer w.NC.Close()
			if err := w.Login(token(t, "dev-cap-ws-"+itoa(i), time.Hour)); err != nil {
				t.Fatalf("WebSocket %d: %v", i, err)
			}
		}
		refusedSilently(t, "WebSocket over -max-conns-per-ip", wsFrom, s.WS, hostile.UpgradeRequest())
		// Another address is unaffected.
		for i := range limit {
			loggedInFrom(t, hostile.From(attackerIP(3)), s, "dev-cap-other-"+itoa(i))
		}
		a.end()
	})

	t.Run("connect rate per ip", func(t *testing.T) {
		// 2 connects/s: a token every 500ms, so a burst of dials is
		// always faster than the refill.
		const rate, dials = 2, 100
		s := startServer(t, withAll("-connect-rate-per-ip", itoa(rate))...)
		a := newAttack(t, s)
		a.begin()
		// 100 connects from 127.0.0.2 and 2 from 127.0.0.3 at once; then
		// each tells whether it was admitted: LOGIN_ACK OK or KICK.
		type verdict struct {
			admitted bool
			err      error
		}
		judge := func(d *net.Dialer, n int, device string) ([]verdict, time.Duration) {
			conns := make([]net.Conn, n)
			start := time.Now()
			for i := range conns {
				nc, err := d.Dial("tcp", s.TCP)
				if err != nil {
					return []verdict{{err: fmt.Errorf("dial %d: %w", i, err)}}, time.Since(start)
				}
				t.Cleanup(func() { nc.Close() })
				conns[i] = nc
			}
			out := each(n, func(i int) verdict {
				nc := conns[i]
				_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
				_, _ = nc.Write(hostile.LoginFrame(1, token(t, device+itoa(i), time.Hour))) // a refused one may be closed already
				f, err := hostile.NewReader(nc).Next(time.Now().Add(5 * time.Second))
				switch {
				case err != nil:
					return verdict{err: fmt.Errorf("connection %d: %w", i, err)}
				case f.Op == codec.OpLoginAck && f.Status == codec.StatusOK:
					return verdict{admitted: true}
				case f.Op == codec.OpKick && f.Status == codec.StatusOverloaded && hostile.Reason(f) != "":
					if h := hostile.Listen(nc, time.Now().Add(2*time.Second)); !h.Closed || h.Bytes > 0 {
						return verdict{err: fmt.Errorf("connection %d: after the KICK %d bytes, closed %v", i, h.Bytes, h.Closed)}
					}
					return verdict{}
				default:
					return verdict{err: fmt.Errorf("connection %d: %v %v (%s), want LOGIN_ACK OK or KICK OVERLOADED with a reason", i, f.Op, f.Status, hostile.Reason(f))}
				}
			})
			return out, time.Since(start)
		}
		type tally struct {
			admitted, refused int
			took              time.Duration
		}
		count := func(vs []verdict, took time.Duration) tally {
			var c tally
			c.took = took
			for _, v := range vs {
				switch {
				case v.err != nil:
					t.Error(v.err)
				case v.admitted:
					c.admitted++
				default:
					c.refused++
				}
			}
			return c
		}
		res := each(2, func(i int) tally {
			if i == 0 {
				return count(judge(hostile.From(attackerIP(0)), dials, "dev-rate-a-"))
			}
			return count(judge(hostile.From(attackerIP(1)), rate, "dev-rate-b-"))
		})
		fast, other := res[0], res[1]
		t.Logf("127.0.0.2: %d connects in %v, %d admitted, %d refused; 127.0.0.3: %d connects, %d admitted", dials, fast.took.Round(time.Millisecond), fast.admitted, fast.refused, rate, other.admitted)
		if most := withinBucket(rate, rate, fast.took); fast.admitted > most || fast.admitted < rate {
			t.Errorf("127.0.0.2: %d of %d connects in %v admitted, want %d..%d (rate %d/s, burst %d)", fast.admitted, dials, fast.took, rate, most, rate, rate)
		}
		if fast.refused == 0 {
			t.Errorf("127.0.0.2: none of %d connects refused", dials)
		}
		if other.admitted != rate {
			t.Errorf("127.0.0.3: %d of its %d connects admitted, want all (its own bucket)", other.admitted, rate)
		}
		// TLS from 127.0.0.4 and WebSocket from 127.0.0.5: a burst's
		// worth of handshakes, then one more at once, closed without a
		// word.
		hello, err := hostile.ClientHello("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		tlsFrom := hostile.From(attackerIP(2))
		for i := range rate {
			tc, err := hostile.DialTLS(tlsFrom, s.TLS, tlsCfg, 5*time.Second)
			if err != nil {
				t.Fatalf("TLS %d of the burst: %v", i, err)
			}
			defer tc.Close()
		}
		refusedSilently(t, "TLS connecting too fast", tlsFrom, s.TLS, hello)
		wsFrom := hostile.From(attackerIP(3))
		for i := range rate {
			w, err := hostile.DialWS(wsFrom, s.WS)
			if err != nil {
				t.Fatalf("WebSocket %d of the burst: %v", i, err)
			}
			defer w.NC.Close()
		}
		refusedSilently(t, "WebSocket connecting too fast", wsFrom, s.WS, hostile.UpgradeRequest())
		// The bucket refills: a connect a little later is admitted.
		checkFor(t, 3*time.Second, 100*time.Millisecond, func() error {
			nc, _, err := hostile.Dial(hostile.From(attackerIP(0)), s.TCP, token(t, "dev-rate-later", time.Hour))
			if err != nil {
				return err
			}
			nc.Close()
			return nil
		})
		a.end()
	})
}

// TestHostileInputBackpressure: with -frame-rate 0 and -rate 0 (nothing
// kicks a flooder), a logged-in client writes as fast as it can and never
// reads. The node reads at most -max-input ahead of what it processed, so
// the client's writes block (the kernel's buffers fill) instead of the
// node buffering the stream: what the client got the kernel to take is
// at most what the node processed plus the kernel's buffers plus
// -max-input. "push acks" is never kicked for it, and answers a PING
// afterwards; "large requests" (to an unknown business: each answered
// with a small RESPONSE the client never reads) ends open or kicked
// SLOW_CONSUMER, nothing else.
func TestHostileInputBackpressure(t *testing.T) {
	const maxInput = 65536
	run := func(t *testing.T, frame []byte) (net.Conn, hostile.BlindOutcome) {
		s := startServer(t, "-frame-rate", "0", "-rate", "0", "-max-input", itoa(maxInput))
		a := newAttack(t, s)
		nc, _ := loggedInFrom(t, hostile.From(attackerIP(0)), s, "dev-blind")
		sndbuf, err := hostile.SendBuffer(nc)
		if err != nil {
			t.Fatal(err)
		}
		// In flight = taken by the client's kernel - processed by the node;
		// at most the kernel's buffers (the client's send buffer, the
		// node's receive buffer at its largest) and -max-input, with a
		// frame and a read's worth of slack.
		bound := int64(sndbuf) + tcpRmemMax(t) + 2*maxInput + 2*int64(len(frame)) + 1<<20
		var progress atomic.Int64
		base := s.snapshot().BytesIn
		a.begin()
		var maxInFlight atomic.Int64
		watching := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for {
				select {
				case <-watching:
					return
				case <-time.After(100 * time.Millisecond):
				}
				var st snap
				if s.apiNoFail("GET", "/v1/stats", &st) != nil {
					continue
				}
				if in := progress.Load() - int64(st.BytesIn-base); in > maxInFlight.Load() {
					maxInFlight.Store(in)
				}
			}
		}()
		out := hostile.Blind{Frame: frame, For: floodFor, Stop: a.stop, Bytes: &progress}.Run(nc)
		close(watching)
		<-watched
		t.Logf("flooder: %v", out)
		t.Logf("most in flight (taken by the kernel, not yet processed by the node): %d KiB, bound %d KiB", maxInFlight.Load()>>10, bound>>10)
		if in := maxInFlight.Load(); in > bound {
			t.Errorf("%d KiB written but not processed by the node, want at most %d KiB (kernel buffers + -max-input): the node buffers the stream", in>>10, bound>>10)
		}
		if out.WouldBlock == 0 {
			t.Errorf("the flooder's writes never blocked: %v", out)
		}
		a.end()
		return nc, out
	}
	t.Run("push acks", func(t *testing.T) {
		nc, out := run(t, codec.AppendFrame(nil, codec.Header{Op: codec.OpPushAck, Seq: 1}, nil, nil))
		if out.Err != nil {
			t.Fatalf("the flooder's connection ended: %v", out.Err)
		}
		// Not kicked: once the node is through the backlog, a PING is
		// answered, and nothing came before its PONG.
		c := &client{t: t, nc: nc}
		c.send(codec.Header{Op: codec.OpPing, Seq: 77}, nil, nil)
		if f := c.read(30 * time.Second); f.Op != codec.OpPong || f.Seq != 77 {
			t.Fatalf("after the flood: %v %v seq %d (%s), want the PONG", f.Op, f.Status, f.Seq, metaString(f, "reason"))
		}
	})
	t.Run("large requests", func(t *testing.T) {
		body := bytes.Repeat([]byte("r"), 60000)
		nc, out := run(t, codec.AppendFrame(nil, codec.Header{Op: codec.OpRequest, Biz: 4242, Seq: 1}, nil, body))
		// What it never read: RESPONSEs UNKNOWN_BIZ, then either the
		// PONG of a PING sent now (it is still served) or KICK
		// SLOW_CONSUMER and the close.
		if out.Err == nil {
			_ = nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			_, _ = nc.Write(codec.AppendFrame(nil, codec.Header{Op: codec.OpPing, Seq: 77}, nil, nil))
		}
		r := hostile.NewReader(nc)
		responses := 0
		for {
			f, err := r.Next(time.Now().Add(30 * time.Second))
			if err != nil {
				if hostile.IsClosed(err) && out.Err != nil {
					t.Fatalf("closed after %d RESPONSEs without a KICK (the write error was %v)", responses, out.Err)
				}
				t.Fatalf("after %d RESPONSEs: %v", responses, err)
			}
			if f.Op == codec.OpResponse && f.Status == codec.StatusUnknownBiz {
				responses++
				continue
			}
			if f.Op == codec.OpPong && f.Seq == 77 {
				t.Logf("still served after the flood: %d RESPONSEs read, then the PONG", responses)
				return
			}
			if f.Op == codec.OpKick && f.Status == codec.StatusSlowConsumer {
				t.Logf("kicked SLOW_CONSUMER after %d RESPONSEs", responses)
				c := &client{t: t, nc: nc}
				c.expectClosed(2 * time.Second)
				return
			}
			t.Fatalf("after %d RESPONSEs: %v %v seq %d (%s), want RESPONSE UNKNOWN_BIZ, the PONG or KICK SLOW_CONSUMER", responses, f.Op, f.Status, f.Seq, hostile.Reason(f))
		}
	})
}

// TestHostileSlowConsumerKick: a device with a 4 KiB receive window stops
// reading while unicast (POST /v1/push) and group (POST
// /v1/groups/.../push) pushes of 16 KiB come in, until the node drops it
// as a slow consumer (-max-pending 65536, -sndbuf 16384). It starts
// reading again at once (well within 10s): it reads the pushes the kernel
// held, in seq order, then KICK(SLOW_CONSUMER), then the close. Resuming
// from the last seq it read gets every dropped push, in order, with
// resumed=1.
func TestHostileSlowConsumerKick(t *testing.T) {
	const size, most = 16384, 400
	s := startServer(t, "-max-pending", "65536", "-sndbuf", "16384")
	a := newAttack(t, s)
	dev := "dev-slow-kick"
	nc, r := loggedInFrom(t, hostile.WithRcvBuf(hostile.From(attackerIP(0)), 4096), s, dev)
	// The device must be in the group before the pushes.
	var join struct{ Members int }
	if code := s.api("PUT", "/v1/groups/slow-room/members", map[string]any{"devices": []string{dev}}, &join); code != 200 || join.Members != 1 {
		t.Fatalf("join: %d, %d members", code, join.Members)
	}
	a.begin()
	stoppedReading := time.Now()
	body := func(i int) string { return fmt.Sprintf("%-8d", i) + string(bytes.Repeat([]byte("p"), size-8)) }
	var seqBody []string // seqBody[seq-1]: the body of the push that took seq
	var lastUnicast bool
	pushes := 0
	for pushes < most {
		i := pushes
		pushes++
		var delivered int
		if i%2 == 0 {
			var res struct {
				Delivered int      `json:"delivered"`
				Offline   []string `json:"offline"`
			}
			if code := s.api("POST", "/v1/push", map[string]any{"devices": []string{dev}, "biz": 9, "data": body(i), "id": "m" + itoa(i)}, &res); code != 200 {
				t.Fatalf("push %d: status %d", i, code)
			}
			delivered, lastUnicast = res.Delivered, true
		} else {
			var res struct{ Delivered int }
			if code := s.api("POST", "/v1/groups/slow-room/push", map[string]any{"biz": 9, "data": body(i)}, &res); code != 200 {
				t.Fatalf("group push %d: status %d", i, code)
			}
			delivered, lastUnicast = res.Delivered, false
		}
		if delivered == 0 {
			// Offline already. A unicast push that found the device
			// offline is kept for resume with the next seq (the device
			// has recovery state); a group push is not.
			if lastUnicast {
				seqBody = append(seqBody, body(i))
			}
			break
		}
		// Handed to the connection: it has the next seq, written, queued
		// or kept for resume when the queue was dropped.
		seqBody = append(seqBody, body(i))
		st := s.snapshot()
		if q, _ := st.queue("downstream_blocked_conns"); st.Kicks["SLOW_CONSUMER"] > 0 || q.Dropped > 0 {
			break // the node cut it off
		}
	}
	kickedAfter := time.Since(stoppedReading)
	if pushes == most {
		t.Fatalf("%d pushes of %d KiB to a device that reads nothing, and it is not cut off", most, size>>10)
	}
	t.Logf("the device was cut off after %d pushes (%d took a seq), %v after it stopped reading", pushes, len(seqBody), kickedAfter.Round(time.Millisecond))

	// Reading again: what the kernel held, then the KICK, then the close.
	read := 0
	kicked := false
	for !kicked {
		f, err := r.Next(time.Now().Add(5 * time.Second))
		if err != nil {
			t.Fatalf("after %d pushes read, %v: %v; want KICK SLOW_CONSUMER (read again %v after stopping)", read, map[bool]string{true: "closed", false: "read error"}[hostile.IsClosed(err)], err, time.Since(stoppedReading).Round(time.Millisecond))
		}
		switch {
		case f.Op == codec.OpPush && int(f.Seq) == read+1 && read < len(seqBody) && string(f.Body) == seqBody[read]:
			read++
		case f.Op == codec.OpKick && f.Status == codec.StatusSlowConsumer:
			kicked = true
		default:
			t.Fatalf("after %d pushes read: %v %v seq %d, want PUSH seq %d (its body) or KICK SLOW_CONSUMER", read, f.Op, f.Status, f.Seq, read+1)
		}
	}
	if _, err := r.Next(time.Now().Add(2 * time.Second)); !hostile.IsClosed(err) {
		t.Errorf("after the KICK: %v, want the close", err)
	}
	t.Logf("read %d pushes the kernel held, then KICK SLOW_CONSUMER", read)
	nc.Close()

	// Resume from the last one read: the dropped ones come back.
	c := dial(t, s.TCP)
	ack := c.login(token(t, dev, time.Hour), "resume", strconv.Itoa(read))
	if ack.Status != codec.StatusOK || metaString(ack, "resumed") != "1" {
		t.Fatalf("resume from %d: %v resumed=%q, want OK resumed=1", read, ack.Status, metaString(ack, "resumed"))
	}
	for seq := read + 1; seq <= len(seqBody); seq++ {
		f := c.read(5 * time.Second)
		if f.Op != codec.OpPush || int(f.Seq) != seq || string(f.Body) != seqBody[seq-1] {
			t.Fatalf("redelivered: %v seq %d body %.8q, want PUSH seq %d %.8q", f.Op, f.Seq, f.Body, seq, seqBody[seq-1])
		}
	}
	t.Logf("resumed from %d: %d pushes redelivered", read, len(seqBody)-read)
	c.expectNothing()
	a.end()
}

// TestHostileUnreadAnswers: a client that sends within the frame rate but
// never reads its answers (4 KiB receive window). Its answers count toward
// -max-pending like pushes, so it is a slow consumer: reading at last, it
// finds the answers the kernel held, then KICK(SLOW_CONSUMER), then the
// close. A node that instead stops reading such a client passes too, if
// the client's writes blocked and, reading at last, it gets every answer
// and is served on. "requests": 800 echo REQUESTs/s of 8 KiB with -rate
// 0; "pings": 800 PINGs/s with -max-pending 65536 -sndbuf 4096.
func TestHostileUnreadAnswers(t *testing.T) {
	const rate = 800 // frames/s, within -frame-rate 1000
	const marker = 0xBEEF
	run := func(t *testing.T, frame []byte, answer codec.Op, floodFor time.Duration, flags ...string) {
		s := startServer(t, flags...)
		a := newAttack(t, s)
		nc, r := loggedInFrom(t, hostile.WithRcvBuf(hostile.From(attackerIP(0)), 4096), s, "dev-unread")
		a.begin()
		out := hostile.Blind{Frame: frame, Rate: rate, Batch: 64, For: floodFor, Stop: a.stop}.Run(nc)
		t.Logf("flooder: %v", out)
		if out.Err == nil {
			// Still open: a PING after the flood tells the end of the
			// answers. It is written while the answers are read: a node
			// that stopped reading this client takes it only then.
			go func() {
				_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
				_, _ = nc.Write(codec.AppendFrame(nil, codec.Header{Op: codec.OpPing, Seq: marker}, nil, nil))
			}()
		}
		answers := 0
		for {
			f, err := r.Next(time.Now().Add(10 * time.Second))
			if err != nil {
				t.Fatalf("after %d answers: %v; want KICK SLOW_CONSUMER (or, with back-pressure, every answer and the PONG)", answers, err)
			}
			switch {
			case f.Op == answer && f.Status == codec.StatusOK && f.Seq == 1:
				answers++
				continue
			case f.Op == codec.OpKick && f.Status == codec.StatusSlowConsumer:
				t.Logf("kicked SLOW_CONSUMER: %d answers read from the kernel first (%d frames sent)", answers, out.Frames)
				if _, err := r.Next(time.Now().Add(2 * time.Second)); !hostile.IsClosed(err) {
					t.Errorf("after the KICK: %v, want the close", err)
				}
			case f.Op == codec.OpPong && f.Seq == marker:
				t.Logf("not kicked: %d answers of %d frames sent, writes blocked %d times", answers, out.Frames, out.WouldBlock)
				if out.WouldBlock == 0 || answers != out.Frames {
					t.Errorf("not kicked, %d answers of %d frames, writes blocked %d times: want KICK SLOW_CONSUMER, or back-pressure (writes blocked, every frame answered)", answers, out.Frames, out.WouldBlock)
				}
			default:
				t.Fatalf("after %d answers: %v %v seq %d (%s), want %v OK or KICK SLOW_CONSUMER", answers, f.Op, f.Status, f.Seq, hostile.Reason(f), answer)
			}
			break
		}
		a.end()
	}
	t.Run("requests", func(t *testing.T) {
		// 6.4 MB/s of answers: over -max-pending in well under a second.
		run(t, codec.AppendFrame(nil, codec.Header{Op: codec.OpRequest, Biz: 1, Seq: 1}, nil, bytes.Repeat([]byte("a"), 8192)), codec.OpResponse, 3*time.Second, "-rate", "0")
	})
	t.Run("pings", func(t *testing.T) {
		// 16 KB/s of answers: over -max-pending and the kernel's few KiB
		// after about 5s.
		run(t, codec.AppendFrame(nil, codec.Header{Op: codec.OpPing, Seq: 1}, nil, nil), codec.OpPong, 8*time.Second, "-max-pending", "65536", "-sndbuf", "4096")
	})
}
