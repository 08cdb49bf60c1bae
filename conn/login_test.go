package conn

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/auth"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/route"
)

// TestLoginAckMeansReachable: LOGIN_ACK is not written before the device
// is in the registry, so a backend that pushes as soon as the client has
// read it finds the device (a CI run once saw a push right after the ack
// answered "offline"). The test holds the device's registry shard while
// the login runs: no LOGIN_ACK may leave until the shard is free, and once
// it has arrived the device is registered.
func TestLoginAckMeansReachable(t *testing.T) {
	fh := newFuzzHub(t)
	const device = "reachable-dev"
	c, nc, peer := fakeSession(t, fh)
	// The test's reads time out, so a LOGIN_ACK that is not there shows as
	// EAGAIN instead of a hang.
	if err := syscall.SetsockoptTimeval(peer, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Usec: 100_000}); err != nil {
		t.Fatal(err)
	}

	shard := fh.h.reg.device(device)
	shard.mu.Lock()
	nc.in = loginFrame(t, device)
	fed := make(chan error, 1)
	go func() {
		_, err := nc.data(fh.h, c)
		fed <- err
	}()
	var buf [4096]byte
	if n, err := syscall.Read(peer, buf[:]); n > 0 {
		shard.mu.Unlock()
		t.Fatalf("%d bytes written before the device could enter the registry", n)
	} else if err != syscall.EAGAIN {
		shard.mu.Unlock()
		t.Fatalf("read while the registry is held: %d, %v; want a timeout", n, err)
	}
	shard.mu.Unlock()

	var out []byte
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, _ := syscall.Read(peer, buf[:])
		out = append(out, buf[:max(n, 0)]...)
		if f, k, _ := codec.Decode(out, 1<<16); k > 0 {
			if f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
				t.Fatalf("first frame %v %v; want LOGIN_ACK OK", f.Op, f.Status)
			}
			if got := fh.h.Lookup(device); got != c {
				t.Fatalf("after LOGIN_ACK the registry has %p for the device, want its connection %p", got, c)
			}
			if err := <-fed; err != nil {
				t.Fatalf("data: %v", err)
			}
			c.kick(codec.StatusShuttingDown, "test over")
			<-nc.closed
			return
		}
	}
	t.Fatal("no LOGIN_ACK within 5s of the registry being free")
}

// TestCloseDuringLogin: a TLS login runs on the handshake goroutine
// (tlsConn.pump), outside netpoll's promise that a connection's close
// hook waits for its handler, so the hook can run while the login is half
// done. Wherever it lands, the device's events are exactly those of how
// far the login got: none when the close comes while the route binds the
// device (it never was logged in), Connected then Disconnected when it
// comes at the move to logged-in. The logged-in count comes back to 0,
// and neither the registry nor the route keeps the device.
func TestCloseDuringLogin(t *testing.T) {
	for _, tc := range []struct {
		at     string
		events []string
	}{
		{"bind", nil},
		{"logged-in", []string{"connected", "disconnected"}},
	} {
		at := tc.at
		t.Run(at, func(t *testing.T) {
			const device = "closing-dev"
			var closeNow func()
			rt := &hookRoute{Route: route.NewMemory()}
			ev := &eventLog{}
			fh := newFuzzHub(t, func(o *Options) {
				o.Route, o.Events = rt, ev
				check := o.OnTransition
				o.OnTransition = func(c *Conn, from, to State) {
					check(c, from, to)
					if at == "logged-in" && to == StateLoggedIn {
						closeNow()
					}
				}
			})
			if at == "bind" {
				rt.onBind = func() { closeNow() }
			}
			c, nc, _ := fakeSession(t, fh)
			closeNow = func() { _ = nc.Close() } // not inside data: the callbacks run at once

			f, _, err := codec.Decode(loginFrame(t, device), fuzzMaxFrame)
			if err != nil {
				t.Fatal(err)
			}
			c.handle(&f, false) // as the TLS handshake goroutine does
			<-nc.closed

			if got := ev.get(); !slices.Equal(got, tc.events) {
				t.Fatalf("events %q; want %q", got, tc.events)
			}
			if n := fh.h.Counters().LoggedIn; n != 0 {
				t.Fatalf("logged in: %d after the connection closed", n)
			}
			if got := fh.h.Lookup(device); got != nil {
				t.Fatal("the registry keeps the closed connection")
			}
			if _, online, _ := rt.Lookup(context.Background(), device); online {
				t.Fatal("the route keeps the device bound to the closed connection")
			}
		})
	}
}

// hookRoute runs onBind before a Bind.
type hookRoute struct {
	route.Route
	onBind func()
}

func (r *hookRoute) Bind(ctx context.Context, device string, loc route.Location) (route.Location, bool, error) {
	if r.onBind != nil {
		r.onBind()
	}
	return r.Route.Bind(ctx, device, loc)
}

// eventLog records the device events in order.
type eventLog struct {
	mu  sync.Mutex
	evs []string
}

func (e *eventLog) Connected(string, *Conn) { e.add("connected") }
func (e *eventLog) Disconnected(string, *Conn) {
	e.add("disconnected")
}
func (e *eventLog) add(s string) { e.mu.Lock(); e.evs = append(e.evs, s); e.mu.Unlock() }
func (e *eventLog) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.evs)
}

// fakeSession accepts a connection on fh's hub over one end of a socket
// pair (non-blocking, as netpoll's are) and returns it, its fakeConn and
// the other end, which the test reads and which is closed when it ends.
func fakeSession(t *testing.T, fh *fuzzHub) (c *Conn, nc *fakeConn, peer int) {
	t.Helper()
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(pair[1]) })
	if err := syscall.SetNonblock(pair[0], true); err != nil {
		t.Fatal(err)
	}
	nc = &fakeConn{fd: pair[0], closed: make(chan struct{})}
	c, _ = fh.h.prepare(nc, TCP).(*Conn)
	if c == nil {
		t.Fatal("prepare refused the connection")
	}
	return c, nc, pair[1]
}

// loginFrame is a LOGIN for device with a token the fuzz hub accepts.
func loginFrame(t *testing.T, device string) []byte {
	t.Helper()
	tok, err := auth.Mint([]byte(fuzzSecret), auth.Claims{Device: device, Expires: time.Unix(4102444800, 0)})
	if err != nil {
		t.Fatal(err)
	}
	return codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1}, codec.AppendMetaString(nil, "token", tok), nil)
}

// readFrames reads frames from peer until it has n of them or the
// deadline passes.
func readFrames(t *testing.T, peer int, n int, within time.Duration) []codec.Frame {
	t.Helper()
	if err := syscall.SetsockoptTimeval(peer, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Usec: 50_000}); err != nil {
		t.Fatal(err)
	}
	var out []byte
	var frames []codec.Frame
	var buf [16 << 10]byte
	deadline := time.Now().Add(within)
	for len(frames) < n && time.Now().Before(deadline) {
		k, _ := syscall.Read(peer, buf[:])
		out = append(out, buf[:max(k, 0)]...)
		for {
			f, used, err := codec.Decode(out, 1<<20)
			if err != nil {
				t.Fatalf("server output: %v", err)
			}
			if used == 0 {
				break
			}
			frames = append(frames, f)
			out = out[used:]
		}
	}
	if len(frames) < n {
		t.Fatalf("got %d frames within %v, want %d", len(frames), within, n)
	}
	return frames
}

// TestLoginOffReactor: with a shared route, a login's route work runs on
// a login worker, so a route call that hangs does not hold the reactor's
// goroutine: data returns while Bind is stuck. The PING sent right behind
// the LOGIN waits for the login and is answered after its LOGIN_ACK.
func TestLoginOffReactor(t *testing.T) {
	const device = "off-reactor-dev"
	rt := &hookRoute{Route: route.NewMemory()}
	binding, unblock := make(chan struct{}), make(chan struct{})
	rt.onBind = func() { close(binding); <-unblock }
	fh := newFuzzHub(t, func(o *Options) { o.Route, o.SharedRoute = rt, true })
	c, nc, peer := fakeSession(t, fh)

	ping := codec.AppendFrame(nil, codec.Header{Op: codec.OpPing, Seq: 7}, nil, nil)
	nc.in = append(loginFrame(t, device), ping...)
	returned := make(chan error, 1)
	go func() { _, err := nc.data(fh.h, c); returned <- err }()
	select {
	case <-binding:
	case <-time.After(5 * time.Second):
		t.Fatal("the login worker never bound the device")
	}
	select {
	case err := <-returned: // although Bind has not
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		close(unblock)
		t.Fatal("data did not return while the login's Bind hangs: the reactor's goroutine is pinned")
	}
	if c.State() != StateAccepted {
		t.Fatalf("state %v while Bind hangs, want accepted", c.State())
	}
	close(unblock)
	fs := readFrames(t, peer, 2, 5*time.Second)
	if fs[0].Op != codec.OpLoginAck || fs[0].Status != codec.StatusOK || fs[1].Op != codec.OpPong || fs[1].Seq != 7 {
		t.Fatalf("frames %v %v, %v seq %d; want LOGIN_ACK OK, then PONG seq 7", fs[0].Op, fs[0].Status, fs[1].Op, fs[1].Seq)
	}
	if fh.h.Lookup(device) != c {
		t.Fatal("the device is not registered after its LOGIN_ACK")
	}
	c.kick(codec.StatusShuttingDown, "test over")
	<-nc.closed
}

// TestLoginHeldInputBounded: the frames a client sends while its login is
// on a worker wait, at most MaxLoginInput bytes of them; past that the
// connection is kicked with OVERLOADED and the login does not complete.
func TestLoginHeldInputBounded(t *testing.T) {
	rt := &hookRoute{Route: route.NewMemory()}
	binding, unblock := make(chan struct{}), make(chan struct{})
	rt.onBind = func() { close(binding); <-unblock }
	fh := newFuzzHub(t, func(o *Options) { o.Route, o.SharedRoute = rt, true })
	c, nc, peer := fakeSession(t, fh)

	nc.in = loginFrame(t, "held-dev")
	if _, err := nc.data(fh.h, c); err != nil {
		t.Fatal(err)
	}
	<-binding
	ping := codec.AppendFrame(nil, codec.Header{Op: codec.OpPing, Seq: 7}, nil, nil)
	var flood []byte
	for len(flood) <= MaxLoginInput {
		flood = append(flood, ping...)
	}
	nc.in = flood
	if _, err := nc.data(fh.h, c); err != nil {
		t.Fatal(err)
	}
	close(unblock)
	fs := readFrames(t, peer, 1, 5*time.Second)
	if fs[0].Op != codec.OpKick || fs[0].Status != codec.StatusOverloaded {
		t.Fatalf("first frame %v %v, want KICK OVERLOADED", fs[0].Op, fs[0].Status)
	}
	<-nc.closed
	if n := fh.h.Counters().Logins; n != 0 {
		t.Fatalf("%d logins completed, want 0", n)
	}
}

// TestLoginQueueFull: a login that finds the login workers' queue full is
// answered LOGIN_ACK OVERLOADED at once, on the reactor.
func TestLoginQueueFull(t *testing.T) {
	fh := newFuzzHub(t, func(o *Options) { o.SharedRoute = true })
	fh.h.loginq.close()
	fh.h.loginq = &loginPool{jobs: make(chan loginJob), stop: make(chan struct{})} // no worker, no room
	c, nc, peer := fakeSession(t, fh)
	nc.in = loginFrame(t, "queued-dev")
	if _, err := nc.data(fh.h, c); err != nil {
		t.Fatal(err)
	}
	fs := readFrames(t, peer, 1, 5*time.Second)
	if fs[0].Op != codec.OpLoginAck || fs[0].Status != codec.StatusOverloaded {
		t.Fatalf("answer %v %v, want LOGIN_ACK OVERLOADED", fs[0].Op, fs[0].Status)
	}
	<-nc.closed
}

// TestCloseReasonWriteError: a connection the downstream worker ended
// after a failed write closes with CloseWriteError, not as a client that
// left.
func TestCloseReasonWriteError(t *testing.T) {
	fh := newFuzzHub(t)
	c, nc, _ := fakeSession(t, fh)
	c.Terminate(codec.StatusOK, syscall.EPIPE)
	<-nc.closed
	if r, s := c.CloseReason(); r != CloseWriteError || s != codec.StatusOK {
		t.Fatalf("close reason %v, status %v; want write_error, OK", r, s)
	}
	if n := fh.h.Counters().Closes[CloseWriteError]; n != 1 {
		t.Fatalf("closes[write_error] = %d, want 1", n)
	}
}
