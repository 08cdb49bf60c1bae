package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/client/internal/faultproxy"
	"github.com/longlink/longlink/codec"
)

// These tests run the client against the real gateway, through a proxy
// that injects faults, and check after each fault that the client
// reconnected, resumed, handed every push to its handler exactly once and
// in seq order, and answered requests or failed them clearly.

// pushLog is a push handler that checks exactly-once, in-order delivery.
type pushLog struct {
	t       *testing.T
	mu      sync.Mutex
	seen    map[string]int
	lastSeq uint32
	restart bool // after a gap, seq may start again from 1
	n       int
	gaps    []uint32
	states  []string
}

func newPushLog(t *testing.T) *pushLog { return &pushLog{t: t, seen: make(map[string]int)} }

func (l *pushLog) handle(p client.Push) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if l.seen[p.ID]++; l.seen[p.ID] > 1 {
		l.t.Errorf("push %s (seq %d) handled %d times", p.ID, p.Seq, l.seen[p.ID])
	}
	if p.Seq <= l.lastSeq && !l.restart {
		l.t.Errorf("push %s: seq %d after seq %d", p.ID, p.Seq, l.lastSeq)
	}
	l.lastSeq, l.restart = p.Seq, false
}

// handled is how many pushes the handler was given.
func (l *pushLog) handled() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *pushLog) gap(last uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gaps = append(l.gaps, last)
	l.restart = true
}

func (l *pushLog) state(s client.State, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.states = append(l.states, s.String()+": "+err.Error())
	} else {
		l.states = append(l.states, s.String())
	}
}

// waitAll waits until every id was handled (exactly once is checked on the
// way).
func (l *pushLog) waitAll(t *testing.T, ids []string) {
	t.Helper()
	waitFor(t, 15*time.Second, fmt.Sprintf("%d pushes handled", len(ids)), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, id := range ids {
			if l.seen[id] == 0 {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pusher sends pushes with unique ids through the gateway's API.
type pusher struct {
	t      *testing.T
	api    string
	device string
	mu     sync.Mutex
	n      int
	sent   []string
}

func (p *pusher) send(k int) {
	p.t.Helper()
	for range k {
		p.one()
	}
}

func (p *pusher) one() {
	p.mu.Lock()
	p.n++
	id := fmt.Sprintf("%s-%04d", p.device, p.n)
	api := p.api
	p.mu.Unlock()
	if _, err := push(api, p.device, id, "data of "+id); err != nil {
		p.t.Errorf("push %s: %v", id, err)
		return
	}
	p.mu.Lock()
	p.sent = append(p.sent, id)
	p.mu.Unlock()
}

// stream pushes every interval until the returned stop is called.
func (p *pusher) stream(every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.one()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (p *pusher) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.sent...)
}

// requester keeps requests going: plain ones must be answered or fail with
// ErrDisconnected, idempotent ones must be answered.
type requester struct {
	ok, disconnected, idem atomic.Int64
	stop                   chan struct{}
	wg                     sync.WaitGroup
	mu                     sync.Mutex
	errs                   []error
}

// requesters is how many goroutines startRequests runs, each with one
// request at a time.
const requesters = 4

func startRequests(c *client.Client) *requester {
	r := &requester{stop: make(chan struct{})}
	for g := range requesters {
		idem := g%2 == 1
		r.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-r.stop:
					return
				default:
				}
				body := fmt.Sprintf("g%d-%d", g, i)
				var opts []client.RequestOption
				if idem {
					opts = append(opts, client.Idempotent())
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				resp, err := c.Request(ctx, 1, nil, []byte(body), opts...)
				cancel()
				switch {
				case err == nil && string(resp.Body) == body:
					if idem {
						r.idem.Add(1)
					} else {
						r.ok.Add(1)
					}
				case err == nil:
					r.fail(fmt.Errorf("request %s answered %q", body, resp.Body))
				case !idem && errors.Is(err, client.ErrDisconnected):
					r.disconnected.Add(1)
				default:
					r.fail(fmt.Errorf("request %s (idempotent %v): %w", body, idem, err))
				}
				time.Sleep(2 * time.Millisecond) // pacing: the load, not a wait for anything
			}
		})
	}
	return r
}

// answered is how many requests were answered so far.
func (r *requester) answered() int64 { return r.ok.Load() + r.idem.Load() }

func (r *requester) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *requester) finish(t *testing.T) {
	t.Helper()
	close(r.stop)
	r.wg.Wait()
	for _, err := range r.errs {
		t.Error(err)
	}
	if r.ok.Load() == 0 || r.idem.Load() == 0 {
		t.Errorf("requests answered: %d plain, %d idempotent; want some of each", r.ok.Load(), r.idem.Load())
	}
	t.Logf("requests: %d answered, %d idempotent answered, %d failed with ErrDisconnected", r.ok.Load(), r.idem.Load(), r.disconnected.Load())
}

// testConfig is a Config with short timers for device.
func testConfig(device string, log *pushLog, eps ...client.Endpoint) client.Config {
	return client.Config{
		Endpoints:   eps,
		Token:       func(context.Context) (string, error) { return mintToken(device, time.Hour) },
		Heartbeat:   100 * time.Millisecond,
		MissedPongs: 3,
		DialTimeout: time.Second,
		Backoff:     client.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Handlers:    map[uint16]func(client.Push){1: log.handle},
		OnGap:       log.gap,
		OnState:     log.state,
	}
}

func dialT(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tcp(addr string) client.Endpoint { return client.Endpoint{Proto: "tcp", Addr: addr} }

func echo(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Request(ctx, 1, nil, []byte("ping"))
	if err != nil || string(resp.Body) != "ping" {
		t.Fatalf("echo request: %v, %v", resp, err)
	}
}

func TestFaults(t *testing.T) {
	gw := startGateway(t, "faults")
	px, err := faultproxy.New(gw.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	const device = "dev-faults"
	log := newPushLog(t)
	c := dialT(t, testConfig(device, log, tcp(px.Addr())))
	p := &pusher{t: t, api: gw.api, device: device}
	p.send(5)
	log.waitAll(t, p.ids())
	echo(t, c)

	reconnected := func(t *testing.T, before uint64) {
		t.Helper()
		waitFor(t, 10*time.Second, "a reconnect", func() bool {
			st := c.Stats()
			return st.Reconnects > before && st.State == client.StateConnected
		})
	}

	t.Run("cut", func(t *testing.T) {
		before := c.Stats().Reconnects
		reqs := startRequests(c)
		handled := log.handled()
		stop := p.stream(3 * time.Millisecond)
		waitFor(t, 5*time.Second, "pushes and answers flowing before the cut", func() bool {
			return log.handled() > handled && reqs.answered() > 0
		})
		if n := px.CutAll(); n != 1 {
			t.Fatalf("cut %d connections, want 1", n)
		}
		// The stream goes on through the outage and past the reconnect.
		reconnected(t, before)
		sent := len(p.ids())
		waitFor(t, 5*time.Second, "a push sent after the reconnect", func() bool { return len(p.ids()) > sent })
		stop()
		log.waitAll(t, p.ids())
		reqs.finish(t)
		echo(t, c)
	})

	t.Run("short stall", func(t *testing.T) {
		// Shorter than the dead-connection detection: everything is late,
		// nothing is lost.
		reqs := startRequests(c)
		px.Stall()
		handled := log.handled()
		p.send(5)
		// The stall's length is the input: 100 ms, well under the 300 ms
		// (3 missed PONGs at 100 ms) that would declare the connection dead.
		time.Sleep(100 * time.Millisecond)
		if n := log.handled() - handled; n != 0 {
			t.Fatalf("%d pushes handled during the stall: the proxy did not hold them", n)
		}
		px.Unstall()
		p.send(5)
		log.waitAll(t, p.ids())
		reqs.finish(t)
	})

	t.Run("long stall", func(t *testing.T) {
		// The socket stays open but nothing moves: only missed PONGs can
		// tell. While stalled, new connections stall too.
		st := c.Stats()
		reqs := startRequests(c)
		waitFor(t, 5*time.Second, "requests answered before the stall", func() bool { return reqs.answered() > 0 })
		px.Stall()
		p.send(10)
		waitFor(t, 5*time.Second, "heartbeat timeout", func() bool {
			return c.Stats().HeartbeatTimeouts > st.HeartbeatTimeouts
		})
		px.Unstall()
		reconnected(t, st.Reconnects)
		p.send(5)
		log.waitAll(t, p.ids())
		reqs.finish(t)
	})

	t.Run("delay", func(t *testing.T) {
		before := c.Stats().Reconnects
		px.SetDelay(30 * time.Millisecond)
		start := time.Now()
		echo(t, c)
		if rtt := time.Since(start); rtt < 60*time.Millisecond {
			t.Fatalf("echo answered in %v through 30 ms each way: the delay is not applied", rtt)
		}
		reqs := startRequests(c)
		stop := p.stream(5 * time.Millisecond)
		// Time under the delay is the input: 500 ms is five heartbeats, each
		// of which must be answered in time.
		time.Sleep(500 * time.Millisecond)
		stop()
		log.waitAll(t, p.ids())
		reqs.finish(t)
		px.SetDelay(0)
		if n := c.Stats().Reconnects; n != before {
			t.Errorf("reconnected %d times under a 30ms delay with 300ms of heartbeat margin", n-before)
		}
	})

	t.Run("push cut mid-frame", func(t *testing.T) {
		before := c.Stats().Reconnects
		cut := px.CutMidFrame(faultproxy.Downstream, codec.OpPush)
		p.send(10)
		select {
		case <-cut:
		case <-time.After(5 * time.Second):
			t.Fatal("the proxy never cut a PUSH")
		}
		reconnected(t, before)
		log.waitAll(t, p.ids())
	})

	t.Run("request cut mid-frame", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		before := c.Stats().Reconnects
		px.CutMidFrame(faultproxy.Upstream, codec.OpRequest)
		_, err := c.Request(ctx, 1, nil, []byte("half"))
		if !errors.Is(err, client.ErrDisconnected) {
			t.Fatalf("request cut halfway = %v, want ErrDisconnected", err)
		}
		reconnected(t, before)
		px.CutMidFrame(faultproxy.Upstream, codec.OpRequest)
		resp, err := c.Request(ctx, 1, nil, []byte("half again"), client.Idempotent())
		if err != nil || string(resp.Body) != "half again" {
			t.Fatalf("idempotent request cut halfway = %v, %v, want answered after the reconnect", resp, err)
		}
		reconnected(t, before+1)
	})

	t.Run("gateway unreachable", func(t *testing.T) {
		// Requests made while disconnected wait in the queue; pushes sent
		// meanwhile are kept by the gateway and resumed.
		before := c.Stats().Reconnects
		px.SetRefuse(true)
		px.CutAll()
		waitFor(t, 5*time.Second, "disconnected", func() bool { return c.State() != client.StateConnected })
		p.send(10)
		results := make(chan error, 5)
		for i := range 5 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				body := fmt.Sprint("queued-", i)
				resp, err := c.Request(ctx, 1, nil, []byte(body))
				if err == nil && string(resp.Body) != body {
					err = fmt.Errorf("answer %q to %q", resp.Body, body)
				}
				results <- err
			}()
		}
		waitFor(t, 5*time.Second, "5 requests queued", func() bool { return c.Stats().Queued == 5 })
		refused := px.Accepts()
		waitFor(t, 5*time.Second, "two reconnects refused while the requests wait", func() bool { return px.Accepts() >= refused+2 })
		px.SetRefuse(false)
		for range 5 {
			if err := <-results; err != nil {
				t.Error(err)
			}
		}
		reconnected(t, before)
		log.waitAll(t, p.ids())
	})

	st := c.Stats()
	t.Logf("stats: %+v", st)
	if len(log.gaps) != 0 {
		t.Errorf("gaps reported %v: the gateway kept everything, resume should have been complete", log.gaps)
	}
	if st.Resumed < 5 {
		t.Errorf("Resumed = %d, want one per reconnect", st.Resumed)
	}
	if got, want := log.n, len(p.ids()); got != want {
		t.Errorf("handled %d pushes, sent %d", got, want)
	}
}

// TestGatewayRestart kills the gateway (no drain, state lost) and starts
// it again on the same ports: the client comes back, reports the gap,
// follows the restarted seq, and sends the requests made meanwhile.
func TestGatewayRestart(t *testing.T) {
	gw := startGateway(t, "restart")
	const device = "dev-restart"
	log := newPushLog(t)
	c := dialT(t, testConfig(device, log, tcp(gw.tcp)))
	p := &pusher{t: t, api: gw.api, device: device}
	p.send(10)
	log.waitAll(t, p.ids())

	gw.kill()
	waitFor(t, 5*time.Second, "disconnected", func() bool { return c.State() != client.StateConnected })
	results := make(chan error, 3)
	for i := range 3 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := c.Request(ctx, 1, nil, []byte(fmt.Sprint("while down ", i)))
			results <- err
		}()
	}
	waitFor(t, 5*time.Second, "3 requests queued", func() bool { return c.Stats().Queued == 3 })
	gw.restart(t)
	for range 3 {
		if err := <-results; err != nil {
			t.Errorf("request made while the gateway was down: %v", err)
		}
	}
	waitFor(t, 10*time.Second, "reconnect", func() bool { return c.Stats().Reconnects >= 1 })
	p.send(10)
	log.waitAll(t, p.ids())
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.gaps) != 1 || log.gaps[0] != 10 {
		t.Errorf("gaps %v, want [10]: the restarted gateway lost the device's pushes", log.gaps)
	}
	if log.lastSeq != 10 || log.n != 20 {
		t.Errorf("last seq %d after %d pushes, want 10 after 20 (seq restarted at 1)", log.lastSeq, log.n)
	}
	if st := c.Stats(); st.Gaps != 1 || st.DroppedDuplicates != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestDrain: on SIGTERM the gateway sends KICK(SHUTTING_DOWN); the client
// moves to the next endpoint at once, without backing off.
func TestDrain(t *testing.T) {
	gw1 := startGateway(t, "drain1")
	gw2 := startGateway(t, "drain2")
	const device = "dev-drain"
	log := newPushLog(t)
	cfg := testConfig(device, log, tcp(gw1.tcp), tcp(gw2.tcp))
	cfg.Backoff = client.Backoff{Initial: 10 * time.Second, Max: 10 * time.Second} // any backoff would show
	c := dialT(t, cfg)
	if st := c.Stats(); st.Node != "drain1" {
		t.Fatalf("connected to %q, want drain1", st.Node)
	}
	p := &pusher{t: t, api: gw1.api, device: device}
	p.send(5)
	log.waitAll(t, p.ids())

	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- gw1.terminate() }()
	waitFor(t, 5*time.Second, "reconnected to drain2", func() bool {
		st := c.Stats()
		return st.Node == "drain2" && st.State == client.StateConnected
	})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("moving to the next endpoint took %v", d)
	}
	if err := <-errc; err != nil {
		t.Errorf("gateway drain1 exit: %v", err)
	}
	log.mu.Lock()
	var kicked bool
	for _, s := range log.states {
		if strings.HasPrefix(s, "disconnected: client: kicked: SHUTTING_DOWN") {
			kicked = true
		}
	}
	states := log.states
	log.mu.Unlock()
	if !kicked {
		t.Errorf("states %q: want a disconnection by KICK(SHUTTING_DOWN)", states)
	}
	echo(t, c)
	p.mu.Lock()
	p.api = gw2.api
	p.mu.Unlock()
	p.send(5)
	log.waitAll(t, p.ids())
}

// TestCloseNoLeak: after faults and Close, every goroutine the client
// started has exited.
func TestCloseNoLeak(t *testing.T) {
	gw := startGateway(t, "leak")
	px, err := faultproxy.New(gw.tcp)
	if err != nil {
		t.Fatal(err)
	}
	const device = "dev-leak"
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	before := runtime.NumGoroutine()

	log := newPushLog(t)
	c := dialT(t, testConfig(device, log, tcp(px.Addr())))
	p := &pusher{t: t, api: gw.api, device: device}
	p.send(5)
	reqs := startRequests(c)
	px.CutAll()
	p.send(5)
	log.waitAll(t, p.ids())
	px.Stall()
	waitFor(t, 5*time.Second, "every requester stuck on the stalled connection", func() bool {
		return c.Stats().InFlight == requesters
	})
	close(reqs.stop)
	c.Close() // requests stuck on the stalled connection end with ErrClosed
	reqs.wg.Wait()
	px.Close()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := c.State(); st != client.StateClosed {
		t.Errorf("state after Close: %v", st)
	}
}
