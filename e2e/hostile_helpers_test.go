package e2e

// The frame of the attack suite (hostile_test.go): the bounds every
// attack is held to, the gateway binaries, and the attack environment: a
// monitor connection that pings every 100ms from 127.0.0.1 and a sampler
// of the gateway's RSS, both judged when the attack ends, and a fresh
// login that must still work then. The attacking clients themselves are
// in internal/hostile, shared with bench/hostile.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/internal/gatewaytest"
	"github.com/longlink/longlink/internal/hostile"
)

// The contract's bounds and defaults.
const (
	rssBound     = 64 << 20               // the most an attack may grow the node's RSS over its idle level
	rssEvery     = 50 * time.Millisecond  // how often RSS is sampled during an attack
	monitorEvery = 100 * time.Millisecond // the monitor's PING interval
	maxPongGap   = time.Second            // the longest the monitor may go without a PONG
	floodFor     = 5 * time.Second        // how long a flood writes at most

	// Floods stop once the node is this far over its idle level: the
	// bound is broken by then, and a gateway without the limits would go
	// on to take gigabytes of the machine's memory.
	rssAbort = 4 * rssBound

	defaultFrameRate  = 1000 // -frame-rate
	defaultFrameBurst = 1000 // -frame-burst (= -frame-rate)
	defaultRate       = 100  // -rate
	defaultRateBurst  = 200  // -rate-burst (2 x -rate)

	frameRateReason = "frame rate exceeded"
	perIPReason     = "too many connections from this address"
)

// attackerIP is the i-th attacking address, 127.0.0.2 up (the monitor
// and the legitimate clients use 127.0.0.1).
func attackerIP(i int) string { return "127.0.0." + strconv.Itoa(2+i) }

var plainBin struct {
	once sync.Once
	path string
	err  error
}

// plainGateway is the gateway built without the race detector, for the
// attacks whose RSS bound covers thousands of connections: under the
// race detector every connection costs about five times its memory (an
// idle TCP connection 17 KiB instead of 3 KiB, measured), so 4,200 idle
// sockets alone would break the bound there. It is built once, next to
// the race-enabled binary (TestMain removes both).
func plainGateway(t *testing.T) string {
	t.Helper()
	plainBin.once.Do(func() {
		dir := filepath.Join(filepath.Dir(gatewayBin), "plain")
		if plainBin.err = os.MkdirAll(dir, 0o755); plainBin.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		plainBin.path, plainBin.err = gatewaytest.BuildBinary(ctx, dir, false)
	})
	if plainBin.err != nil {
		t.Fatalf("building the gateway without the race detector: %v", plainBin.err)
	}
	return plainBin.path
}

// startServerBin runs the gateway binary bin with the test secrets on free
// loopback ports; extra flags are appended (later flags win).
func startServerBin(t *testing.T, bin string, extra ...string) *server {
	t.Helper()
	node := "e2e-" + strings.ReplaceAll(t.Name(), "/", "-")
	args := []string{
		"-listen", "127.0.0.1:0", "-ws-listen", "", "-api-listen", "127.0.0.1:0",
		"-node", node, "-api-key", testAPIKey, "-jwt-secret", testSecret, "-biz", "1=echo",
	}
	args = append(args, extra...)
	want := gatewaytest.Listeners{TCP: true, API: true}
	for i, a := range extra {
		if i+1 < len(extra) && extra[i+1] != "" {
			want.WS = want.WS || a == "-ws-listen"
			want.TLS = want.TLS || a == "-tls-listen"
		}
	}
	p, err := gatewaytest.Start(bin, args, want)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{Process: p, t: t, Node: node}
	t.Cleanup(func() { s.stop() })
	return s
}

// attack is the environment of one attack on s.
type attack struct {
	t     *testing.T
	s     *server
	mon   *hostile.Monitor
	rss   *hostile.Sampler
	begun time.Time
	// stop closes when the node's RSS is rssAbort over idle; every flood
	// stops there (nil until begin).
	stop <-chan struct{}
}

// newAttack starts the monitor on s. Set up the attackers next, then
// call begin right before the flood and end after it.
func newAttack(t *testing.T, s *server) *attack {
	t.Helper()
	mon, err := hostile.StartMonitor(hostile.From("127.0.0.1"), s.TCP, token(t, "dev-monitor", time.Hour), monitorEvery)
	if err != nil {
		t.Fatal(err)
	}
	a := &attack{t: t, s: s, mon: mon}
	t.Cleanup(func() {
		a.mon.Stop()
		if a.rss != nil {
			a.rss.Stop()
		}
	})
	return a
}

// begin reads the node's idle RSS and starts sampling it.
func (a *attack) begin() {
	a.t.Helper()
	rss, err := hostile.StartSampler(a.s.RSS, rssEvery, rssAbort)
	if err != nil {
		a.t.Fatal(err)
	}
	a.rss, a.stop, a.begun = rss, rss.Over(), time.Now()
}

// aborted reports whether the floods were stopped by the RSS abort.
func (a *attack) aborted() bool {
	select {
	case <-a.stop:
		return true
	default:
		return false
	}
}

// end stops the sampler and the monitor and checks the bounds: RSS at
// most rssBound over idle throughout, the monitor answered all along
// with no gap over maxPongGap; then a new device logs in and its echo
// request is answered.
func (a *attack) end() {
	a.t.Helper()
	t := a.t
	// The monitor's next PING is answered too: it was answered after the
	// attack, and a short attack still has its PONGs measured.
	answered := a.mon.AwaitNext(monitorEvery + 2*maxPongGap)
	mem := a.rss.Stop()
	mon := a.mon.Stop()
	t.Logf("node RSS idle %d MiB, max %d MiB (+%d MiB) over %v, %d samples, longest between two %v",
		mem.Idle>>20, mem.Max>>20, mem.Growth()>>20, time.Since(a.begun).Round(time.Millisecond), mem.Samples, mem.MaxInterval.Round(time.Millisecond))
	t.Logf("monitor: %v", mon)
	if mem.Err != nil {
		t.Errorf("sampling the node's RSS: %v (did the gateway exit?)\n%s", mem.Err, a.s.Logs())
	}
	if mem.Growth() > rssBound {
		t.Errorf("the node's RSS grew by %d MiB over its idle %d MiB, want at most %d MiB", mem.Growth()>>20, mem.Idle>>20, rssBound>>20)
	}
	if a.aborted() {
		t.Errorf("the floods were stopped early: the node's RSS passed idle + %d MiB", rssAbort>>20)
	}
	if mem.MaxInterval > time.Second {
		t.Errorf("the RSS sampler went %v without a sample: the bound was not watched", mem.MaxInterval)
	}
	if mon.Err != nil {
		t.Errorf("monitor: %v", mon.Err)
	}
	if mon.MaxGap > maxPongGap {
		t.Errorf("the monitor went %v without a PONG, want at most %v", mon.MaxGap, maxPongGap)
	}
	if !answered {
		t.Errorf("the monitor's PING after the attack was not answered within %v", monitorEvery+2*maxPongGap)
	}
	servesAfter(t, a.s)
}

// servesAfter checks that a new device logs in and gets its echo.
func servesAfter(t *testing.T, s *server) {
	t.Helper()
	dev := fmt.Sprintf("dev-after-%d", time.Now().UnixNano())
	nc, r, err := hostile.Dial(hostile.From("127.0.0.1"), s.TCP, token(t, dev, time.Hour))
	if err != nil {
		t.Errorf("after the attack, a new login failed: %v", err)
		return
	}
	defer nc.Close()
	if err := hostile.Echo(nc, r, 1, 7, []byte("still serving")); err != nil {
		t.Errorf("after the attack, an echo request failed: %v", err)
	}
}

// loggedInFrom dials s's TCP listener with d and logs device in.
func loggedInFrom(t *testing.T, d *net.Dialer, s *server, device string) (net.Conn, *hostile.Reader) {
	t.Helper()
	nc, r, err := hostile.Dial(d, s.TCP, token(t, device, time.Hour))
	if err != nil {
		t.Fatalf("%s: %v", device, err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc, r
}

// dialFrom is dial from the local address ip.
func dialFrom(t *testing.T, ip, addr string) *client {
	t.Helper()
	nc, err := hostile.From(ip).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ip, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc}
}

// each runs fn(i) for i in 0..n-1 concurrently and returns the results.
func each[T any](n int, fn func(i int) T) []T {
	out := make([]T, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = fn(i)
		}()
	}
	wg.Wait()
	return out
}

// checkKicked checks a flooder got KICK(status) with reason (any reason
// when empty), nothing after it, and the close.
func checkKicked(t *testing.T, who string, k *hostile.Kick, closed bool, afterKick int, status codec.Status, reason string) {
	t.Helper()
	switch {
	case k == nil:
		t.Errorf("%s: not kicked, want KICK %v", who, status)
		return
	case k.Status != status || (reason != "" && k.Reason != reason):
		t.Errorf("%s: KICK %v %q, want KICK %v %q", who, k.Status, k.Reason, status, reason)
	case reason == "" && k.Reason == "":
		t.Errorf("%s: KICK %v without a reason", who, k.Status)
	}
	if afterKick > 0 {
		t.Errorf("%s: %d frames after the KICK", who, afterKick)
	}
	if !closed {
		t.Errorf("%s: the connection was not closed after the KICK", who)
	}
}

// withinBucket is the most a token bucket of rate and burst can let
// through in elapsed, with a margin for the clocks of two processes.
func withinBucket(rate, burst float64, elapsed time.Duration) int {
	return int(burst + rate*elapsed.Seconds()*1.1 + 0.05*rate + 10)
}

// tcpRmemMax is the largest receive buffer the kernel's autotuning gives
// a TCP socket (the third field of net.ipv4.tcp_rmem).
func tcpRmemMax(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_rmem")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		t.Fatalf("tcp_rmem %q", b)
	}
	n, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
