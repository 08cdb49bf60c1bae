package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// recorder collects callbacks; they all run on the client's one
// dispatcher goroutine, but the test reads from another.
type recorder struct {
	mu     sync.Mutex
	pushes []Push
	states []string
	gaps   []uint32
	events []string // pushes, gaps and states in callback order
}

func (r *recorder) push(p Push) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes = append(r.pushes, p)
	r.events = append(r.events, fmt.Sprintf("push %d", p.Seq))
}

func (r *recorder) state(s State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, s.String())
	r.events = append(r.events, "state "+s.String())
}

func (r *recorder) gap(last uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gaps = append(r.gaps, last)
	r.events = append(r.events, fmt.Sprintf("gap %d", last))
}

func (r *recorder) nPushes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pushes)
}

func (r *recorder) seqs() []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []uint32
	for _, p := range r.pushes {
		s = append(s, p.Seq)
	}
	return s
}

func (r *recorder) lastState() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.states) == 0 {
		return ""
	}
	return r.states[len(r.states)-1]
}

// fastConfig is a Config with test-sized timers.
func fastConfig(r *recorder, eps ...Endpoint) Config {
	return Config{
		Endpoints:   eps,
		Token:       func(context.Context) (string, error) { return "good", nil },
		Heartbeat:   50 * time.Millisecond,
		MissedPongs: 2,
		DialTimeout: time.Second,
		Backoff:     Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		AckDelay:    5 * time.Millisecond,
		Handlers:    map[uint16]func(Push){1: r.push},
		OnState:     r.state,
		OnGap:       r.gap,
	}
}

func dial(t *testing.T, cfg Config) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFakeRequestPushAck(t *testing.T) {
	g := newFakeGW(t, "n1")
	r := &recorder{}
	c := dial(t, fastConfig(r, g.endpoint()))

	resp, err := c.Request(context.Background(), 1, map[string]string{"k": "v"}, []byte("hello"))
	if err != nil || string(resp.Body) != "hello" {
		t.Fatalf("Request = %v, %v", resp, err)
	}

	// Many in flight at once, answered out of order.
	g.mu.Lock()
	g.onRequest = func(fc *fakeConn, f codec.Frame) (codec.Status, []byte) {
		body := append([]byte(nil), f.Body...)
		seq, biz := f.Seq, f.Biz
		go func() {
			time.Sleep(time.Duration(len(body)%7) * time.Millisecond) // a slow backend: answers out of order
			fc.send(codec.Header{Op: codec.OpResponse, Biz: biz, Seq: seq}, nil, body)
		}()
		return 0xFFFF, nil
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			want := fmt.Sprint("req-", i)
			resp, err := c.Request(context.Background(), 1, nil, []byte(want))
			if err != nil || string(resp.Body) != want {
				t.Errorf("Request %d = %v, %v", i, resp, err)
			}
		})
	}
	wg.Wait()

	// Pushes with duplicates by seq and by id.
	for i := 1; i <= 40; i++ {
		g.push(1, fmt.Sprint("m", i), true, "x")
	}
	g.pushSeq(1, 40, "m40", true, "dup seq")
	g.push(1, "m3", true, "dup id") // seq 41
	g.push(1, "m42", true, "x")     // seq 42
	waitFor(t, 2*time.Second, "42 pushes acked", func() bool { return g.acked.Load() == 42 })
	waitFor(t, time.Second, "41 pushes handled", func() bool { return r.nPushes() == 41 })
	if got := c.Stats().DroppedDuplicates; got != 2 {
		t.Errorf("DroppedDuplicates = %d, want 2", got)
	}
	want := make([]uint32, 0, 41)
	for i := uint32(1); i <= 40; i++ {
		want = append(want, i)
	}
	want = append(want, 42)
	if got := r.seqs(); !slices.Equal(got, want) {
		t.Errorf("handled seqs = %v, want %v", got, want)
	}
	if n := g.ackFrames.Load(); n > 10 {
		t.Errorf("%d PUSH_ACK frames for 43 pushes: not batched", n)
	}

	// A business error is a *StatusError with the body as message.
	g.mu.Lock()
	g.onRequest = func(*fakeConn, codec.Frame) (codec.Status, []byte) { return codec.StatusBizError, []byte("boom") }
	g.mu.Unlock()
	_, err = c.Request(context.Background(), 1, nil, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != codec.StatusBizError || se.Message != "boom" {
		t.Fatalf("Request with BIZ_ERROR = %v", err)
	}

	// A request over MaxFrame fails before it costs the connection.
	if _, err := c.Request(context.Background(), 1, nil, make([]byte, codec.DefaultMaxFrame)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Request = %v, want ErrTooLarge", err)
	}
}

func TestFakeUnauthorized(t *testing.T) {
	g := newFakeGW(t, "n1")
	r := &recorder{}
	cfg := fastConfig(r, g.endpoint())
	cfg.Token = func(context.Context) (string, error) { return "bad", nil }
	_, err := Dial(context.Background(), cfg)
	var le *LoginError
	if !errors.As(err, &le) || le.Status != codec.StatusUnauthorized {
		t.Fatalf("Dial with a bad token = %v, want *LoginError UNAUTHORIZED", err)
	}
	if got := len(g.loginsCopy()); got != 1 {
		t.Fatalf("%d logins, want 1: UNAUTHORIZED must not be retried", got)
	}
	if r.lastState() != "closed" {
		t.Fatalf("last state %q, want closed", r.lastState())
	}
}

// TestFakeTokenRefresh: the token provider is asked again on reconnect,
// and its errors are retried.
func TestFakeTokenRefresh(t *testing.T) {
	g := newFakeGW(t, "n1")
	r := &recorder{}
	var calls atomic.Int32
	cfg := fastConfig(r, g.endpoint())
	cfg.Token = func(context.Context) (string, error) {
		n := calls.Add(1)
		if n == 2 {
			return "", errors.New("token service down")
		}
		return fmt.Sprint("tok", n), nil
	}
	g.mu.Lock()
	g.tokenOK = func(string) bool { return true }
	g.mu.Unlock()
	c := dial(t, cfg)
	g.kick(codec.StatusIdleTimeout, "idle", "")
	waitFor(t, 2*time.Second, "reconnect", func() bool { return c.Stats().Reconnects == 1 })
	logins := g.loginsCopy()
	if len(logins) != 2 || logins[0].token != "tok1" || logins[1].token != "tok3" {
		t.Fatalf("logins = %+v, want tok1 then tok3", logins)
	}
}

func TestFakeKickTerminal(t *testing.T) {
	for _, status := range []codec.Status{codec.StatusUnauthorized, codec.StatusDuplicateLogin} {
		t.Run(status.String(), func(t *testing.T) {
			g := newFakeGW(t, "n1")
			r := &recorder{}
			c := dial(t, fastConfig(r, g.endpoint()))
			g.kick(status, "go away", "")
			select {
			case <-c.Done():
			case <-time.After(2 * time.Second):
				t.Fatal("client did not stop")
			}
			var ke *KickError
			if !errors.As(c.Err(), &ke) || ke.Status != status || ke.Reason != "go away" {
				t.Fatalf("Err() = %v", c.Err())
			}
			if _, err := c.Request(context.Background(), 1, nil, nil); !errors.As(err, &ke) {
				t.Fatalf("Request after a terminal kick = %v, want the *KickError", err)
			}
			// Done: the supervisor has stopped (finish was its last step),
			// so no attempt can follow, and g recorded every login it made
			// before answering it.
			if n := len(g.loginsCopy()); n != 1 {
				t.Fatalf("%d logins: a terminal kick must not reconnect", n)
			}
			c.Close()
			if r.lastState() != "closed" {
				t.Fatalf("last state %q, want closed", r.lastState())
			}
		})
	}
}

// TestFakeShuttingDown: KICK(SHUTTING_DOWN) reconnects at once to the
// redirect, or else to the next endpoint, with no backoff.
func TestFakeShuttingDown(t *testing.T) {
	g1, g2, g3 := newFakeGW(t, "n1"), newFakeGW(t, "n2"), newFakeGW(t, "n3")
	r := &recorder{}
	cfg := fastConfig(r, g1.endpoint(), g2.endpoint())
	cfg.Backoff = Backoff{Initial: 10 * time.Second, Max: 10 * time.Second} // any backoff would show
	c := dial(t, cfg)

	start := time.Now()
	g1.kick(codec.StatusShuttingDown, "draining", g3.addr())
	waitFor(t, time.Second, "reconnect to the redirect", func() bool { return c.Stats().Node == "n3" })
	g3.kick(codec.StatusShuttingDown, "draining", "")
	waitFor(t, time.Second, "reconnect to the next endpoint", func() bool { return c.Stats().Node == "n2" })
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v: SHUTTING_DOWN must not back off", d)
	}
	if st := c.Stats(); st.Reconnects != 2 || st.Kicks != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestFakeRedirect: another kick with a redirect goes there first (after
// the backoff).
func TestFakeRedirect(t *testing.T) {
	g1, g2 := newFakeGW(t, "n1"), newFakeGW(t, "n2")
	r := &recorder{}
	c := dial(t, fastConfig(r, g1.endpoint()))
	g1.kick(codec.StatusSlowConsumer, "slow", "tcp://"+g2.addr())
	waitFor(t, 2*time.Second, "reconnect to the redirect", func() bool { return c.Stats().Node == "n2" })
}

// TestFakeHeartbeatTimeout: a gateway that stops answering PINGs (the
// socket itself stays open) is detected and left.
func TestFakeHeartbeatTimeout(t *testing.T) {
	g := newFakeGW(t, "n1")
	r := &recorder{}
	c := dial(t, fastConfig(r, g.endpoint()))
	waitFor(t, time.Second, "pings", func() bool { return g.pings.Load() >= 2 })
	g.noPong.Store(true)
	start := time.Now()
	waitFor(t, 2*time.Second, "heartbeat timeout", func() bool { return c.Stats().HeartbeatTimeouts == 1 })
	// 2 missed PONGs at 50ms: between 100ms and ~150ms plus scheduling.
	if d := time.Since(start); d > time.Second {
		t.Fatalf("dead connection detected after %v", d)
	}
	g.noPong.Store(false)
	waitFor(t, 2*time.Second, "reconnect", func() bool { return c.Stats().Reconnects >= 1 && c.State() == StateConnected })
}

// TestFakeRTTReports: once a PONG came back, each PING carries the last
// round trip (rtt, whole milliseconds) and the network kind (net), which
// SetNetwork changes; Stats has the round trip.
func TestFakeRTTReports(t *testing.T) {
	g := newFakeGW(t, "n1")
	r := &recorder{}
	cfg := fastConfig(r, g.endpoint())
	cfg.Network = "cell"
	c := dial(t, cfg)
	waitFor(t, 2*time.Second, "a PING with rtt", func() bool {
		m := g.pingMeta.Load()
		return m != nil && m[0] != ""
	})
	m := g.pingMeta.Load()
	if ms, err := strconv.Atoi(m[0]); err != nil || ms < 1 || m[1] != "cell" {
		t.Fatalf("PING meta rtt %q net %q, want a positive number of ms and cell", m[0], m[1])
	}
	if c.Stats().RTT <= 0 {
		t.Fatalf("Stats().RTT = %v after a PONG", c.Stats().RTT)
	}
	c.SetNetwork("wifi")
	waitFor(t, 2*time.Second, "a PING with net wifi", func() bool { return g.pingMeta.Load()[1] == "wifi" })
}

// TestFakeInFlightOnDisconnect: a lost connection fails plain requests in
// flight with ErrDisconnected and retries idempotent ones.
func TestFakeInFlightOnDisconnect(t *testing.T) {
	g := newFakeGW(t, "n1")
	r := &recorder{}
	c := dial(t, fastConfig(r, g.endpoint()))
	var held atomic.Int32
	g.mu.Lock()
	g.onRequest = func(fc *fakeConn, f codec.Frame) (codec.Status, []byte) {
		if string(f.Body) == "hold" {
			held.Add(1)
			return 0xFFFF, nil
		}
		return codec.StatusOK, append([]byte("re:"), f.Body...)
	}
	g.mu.Unlock()

	var plainErr error
	var idemResp *Response
	var idemErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, plainErr = c.Request(context.Background(), 1, nil, []byte("hold")) })
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		idemResp, idemErr = c.Request(ctx, 1, nil, []byte("hold"), Idempotent())
	})
	waitFor(t, time.Second, "both requests at the gateway", func() bool { return held.Load() == 2 })
	g.mu.Lock()
	g.onRequest = nil // echo from now on
	g.mu.Unlock()
	g.current().nc.Close()
	wg.Wait()
	if !errors.Is(plainErr, ErrDisconnected) {
		t.Errorf("plain request = %v, want ErrDisconnected", plainErr)
	}
	if idemErr != nil || string(idemResp.Body) != "hold" {
		t.Errorf("idempotent request = %v, %v, want answered after the reconnect", idemResp, idemErr)
	}
	if st := c.Stats(); st.RequestsRetried != 1 {
		t.Errorf("RequestsRetried = %d, want 1", st.RequestsRetried)
	}
}

// TestFakeQueue: requests made while disconnected wait (bounded), fail when
// their context ends, and go out after the reconnect.
func TestFakeQueue(t *testing.T) {
	g := newFakeGW(t, "n1")
	r := &recorder{}
	cfg := fastConfig(r, g.endpoint())
	cfg.QueueSize = 3
	var refuse atomic.Bool
	cfg.Token = func(context.Context) (string, error) {
		if refuse.Load() {
			return "", errors.New("offline")
		}
		return "good", nil
	}
	c := dial(t, cfg)
	refuse.Store(true)
	g.current().nc.Close()
	waitFor(t, time.Second, "disconnected", func() bool { return c.State() != StateConnected })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Request(ctx, 1, nil, []byte("expires")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued request whose ctx ends = %v", err)
	}
	results := make(chan error, 3)
	for i := range 3 {
		go func() {
			resp, err := c.Request(context.Background(), 1, nil, []byte(fmt.Sprint(i)))
			if err == nil && string(resp.Body) != fmt.Sprint(i) {
				err = fmt.Errorf("answer %q to request %d", resp.Body, i)
			}
			results <- err
		}()
	}
	waitFor(t, time.Second, "3 queued", func() bool { return c.Stats().Queued == 3 })
	if _, err := c.Request(context.Background(), 1, nil, nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("4th queued request = %v, want ErrQueueFull", err)
	}
	refuse.Store(false)
	for range 3 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
}

// TestFakeResume: reconnects log in with resume=<last seq>; resumed=0 is
// reported to OnGap before the new connection's pushes, and a gateway that
// lost its state (seq restarted at 1) is followed.
func TestFakeResume(t *testing.T) {
	g := newFakeGW(t, "n1")
	r := &recorder{}
	c := dial(t, fastConfig(r, g.endpoint()))
	if l := g.loginsCopy(); l[0].hasResume {
		t.Fatal("first login sent resume")
	}
	for range 5 {
		g.push(1, "", false, "x")
	}
	waitFor(t, time.Second, "5 pushes", func() bool { return r.nPushes() == 5 })

	g.current().nc.Close()
	waitFor(t, 2*time.Second, "reconnect", func() bool { return c.Stats().Reconnects == 1 })
	if l := g.loginsCopy(); !l[1].hasResume || l[1].resume != "5" {
		t.Fatalf("second login: %+v, want resume=5", l[1])
	}
	if c.Stats().Resumed != 1 {
		t.Fatal("Resumed not counted")
	}

	// The gateway restarts: it lost everything, says resumed=0, counts from 1.
	g.mu.Lock()
	g.resumed = "0"
	g.seq = 0
	g.mu.Unlock()
	g.current().nc.Close()
	waitFor(t, 2*time.Second, "reconnect", func() bool { return c.Stats().Reconnects == 2 })
	g.push(1, "", false, "after restart")
	g.push(1, "", false, "after restart")
	waitFor(t, time.Second, "7 pushes", func() bool { return r.nPushes() == 7 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.gaps, []uint32{5}) {
		t.Fatalf("gaps %v, want [5]", r.gaps)
	}
	i := slices.Index(r.events, "gap 5")
	if i < 0 || r.events[i+1] != "push 1" {
		t.Fatalf("events %v: want the gap before the next pushes", r.events)
	}
}

// TestFakeCloseNoLeak: Close ends every goroutine of the client, whatever
// it was doing.
func TestFakeCloseNoLeak(t *testing.T) {
	g := newFakeGW(t, "n1")
	before := runtime.NumGoroutine()
	for range 5 {
		r := &recorder{}
		c := dial(t, fastConfig(r, g.endpoint()))
		g.push(1, "", true, "x")
		// A request that waits forever, and one queued while disconnected.
		g.mu.Lock()
		g.onRequest = func(*fakeConn, codec.Frame) (codec.Status, []byte) { return 0xFFFF, nil }
		g.mu.Unlock()
		errc := make(chan error, 1)
		go func() { _, err := c.Request(context.Background(), 1, nil, nil); errc <- err }()
		waitFor(t, 2*time.Second, "the request in flight", func() bool { return c.Stats().InFlight == 1 })
		c.Close()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("request at Close = %v, want ErrClosed", err)
		}
		if r.lastState() != "closed" {
			t.Fatalf("last state %q", r.lastState())
		}
		c.Close() // idempotent
	}
	// A client closed while it cannot connect at all.
	r := &recorder{}
	cfg := fastConfig(r, Endpoint{Proto: "tcp", Addr: "127.0.0.1:1"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := Dial(ctx, cfg)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to nowhere = %v", err)
	}
	g.close()
	checkNoLeak(t, before)
}

func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
