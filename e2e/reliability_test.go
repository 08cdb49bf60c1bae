package e2e

// Fault-injection tests of docs/reliability.md, part 1: helpers, business
// isolation, the circuit breaker, business errors and admission control.
// Each test injects one fault against the real gateway process and checks
// the documented outcome with numbers that can fail: statuses, exact
// counts, and bounded timings. Run them all with -run TestReliability.

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/upstream"
	"github.com/longlink/longlink/metrics"
)

// Bounds used by several tests. The gateway runs under the race detector
// on a small machine, so "at once" is measured in tens of milliseconds.
const (
	fastBound = 150 * time.Millisecond // an answer that must not wait for anything
	slack     = 400 * time.Millisecond // allowed past a configured timeout
)

// backend is a business backend for the gateway to forward to: an
// httptest server that counts its requests. Handlers that hang must
// return when hang is closed or the gateway gives up on the request.
type backend struct {
	*httptest.Server
	hits atomic.Int64
	hang chan struct{} // closed at cleanup: every hanging handler returns
}

func newBackend(t *testing.T, h func(b *backend, w http.ResponseWriter, r *http.Request)) *backend {
	t.Helper()
	b := &backend{hang: make(chan struct{})}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(b, w, r)
	}))
	t.Cleanup(func() {
		close(b.hang)
		b.Server.Close()
	})
	return b
}

// hangingBackend never answers: each request waits until the gateway
// cancels it (its timeout) or the test ends.
func hangingBackend(t *testing.T) *backend {
	return newBackend(t, func(b *backend, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-b.hang:
		}
	})
}

// echoBackend answers 200 with the request body.
func echoBackend(t *testing.T) *backend {
	return newBackend(t, func(_ *backend, w http.ResponseWriter, r *http.Request) {
		body := make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		_, _ = w.Write(body)
	})
}

// snap is /v1/stats decoded into the gateway's own type.
type snap struct{ metrics.Snapshot }

// snapshot fetches /v1/stats.
func (s *server) snapshot() snap {
	s.t.Helper()
	var st snap
	if code := s.api("GET", "/v1/stats", nil, &st); code != 200 {
		s.t.Fatalf("stats: status %d", code)
	}
	return st
}

// biz returns the stats of business id.
func (st snap) biz(id uint16) metrics.BizStats {
	for _, b := range st.Businesses {
		if b.ID == id {
			return b
		}
	}
	return metrics.BizStats{}
}

// queue returns the stats of the named queue and whether it exists.
func (st snap) queue(name string) (metrics.QueueStats, bool) {
	for _, q := range st.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return metrics.QueueStats{}, false
}

// timed is a frame and when it was read.
type timed struct {
	codec.Frame
	at time.Time
}

// roundTrip sends one frame and reads until the answer with op and seq
// arrives; every other frame read meanwhile is appended to *others with
// its arrival time. It returns the answer and the round-trip time.
func (c *client) roundTrip(h codec.Header, m, body []byte, op codec.Op, others *[]timed) (codec.Frame, time.Duration) {
	c.t.Helper()
	start := time.Now()
	c.send(h, m, body)
	for {
		f := c.read(5 * time.Second)
		if f.Op == op && f.Seq == h.Seq {
			return f, time.Since(start)
		}
		if others == nil {
			c.t.Fatalf("waiting for %v seq %d, got %v seq %d status %v", op, h.Seq, f.Op, f.Seq, f.Status)
		}
		*others = append(*others, timed{f, time.Now()})
	}
}

// ping checks one PING/PONG and returns its round-trip time.
func (c *client) ping(seq uint32) time.Duration {
	c.t.Helper()
	_, rtt := c.roundTrip(codec.Header{Op: codec.OpPing, Seq: seq}, nil, nil, codec.OpPong, nil)
	return rtt
}

// request sends one REQUEST and returns its RESPONSE and round-trip time;
// no other frame may arrive meanwhile.
func (c *client) request(biz uint16, seq uint32, m, body []byte) (codec.Frame, time.Duration) {
	c.t.Helper()
	return c.roundTrip(codec.Header{Op: codec.OpRequest, Biz: biz, Seq: seq}, m, body, codec.OpResponse, nil)
}

// mint signs claims with method and key (the test secret for HMAC).
func mint(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// freePort returns a loopback address nothing listens on (for a moment).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// pct is the p-th percentile of ds (sorted in place).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[int(float64(len(ds)-1)*p)]
}

// TestReliabilityBusinessIsolation: business 2 hangs, business 3 is fast.
// Requests to 2 are answered TIMEOUT after its 200ms timeout, while
// business 3, on the same connection and on another one, and heartbeats
// keep answering at once.
func TestReliabilityBusinessIsolation(t *testing.T) {
	slow, fast := hangingBackend(t), echoBackend(t)
	const timeout = 200 * time.Millisecond
	s := startServer(t, "-rate", "0", "-drain-timeout", "2s",
		"-biz", "2="+slow.URL+",timeout="+timeout.String(),
		"-biz", "3="+fast.URL)
	a, _ := loggedIn(t, s, "dev-iso-a")
	b, _ := loggedIn(t, s, "dev-iso-b")

	// 100 requests to the hanging business: more than its 64 workers, so
	// some wait in its queue, and all must still end by its timeout.
	const hung = 100
	var burst []byte
	for i := range hung {
		burst = codec.AppendFrame(burst, codec.Header{Op: codec.OpRequest, Biz: 2, Seq: uint32(1000 + i)}, nil, []byte("hang"))
	}
	sent := time.Now()
	a.write(burst)

	var pongs, fastA, fastB []time.Duration
	var others []timed
	seq := uint32(1)
	for time.Since(sent) < 3*timeout {
		seq++
		_, rtt := a.roundTrip(codec.Header{Op: codec.OpPing, Seq: seq}, nil, nil, codec.OpPong, &others)
		pongs = append(pongs, rtt)
		f, rtt := a.roundTrip(codec.Header{Op: codec.OpRequest, Biz: 3, Seq: seq}, nil, []byte("quick"), codec.OpResponse, &others)
		if f.Status != codec.StatusOK || f.Biz != 3 || string(f.Body) != "quick" {
			t.Fatalf("biz 3 on the busy connection: status %v biz %d body %q", f.Status, f.Biz, f.Body)
		}
		fastA = append(fastA, rtt)
		f, rtt = b.request(3, seq, nil, []byte("other"))
		if f.Status != codec.StatusOK || string(f.Body) != "other" {
			t.Fatalf("biz 3 on another connection: status %v body %q", f.Status, f.Body)
		}
		fastB = append(fastB, rtt)
		pongs = append(pongs, b.ping(seq))
	}
	for len(others) < hung {
		f := a.read(5 * time.Second)
		others = append(others, timed{f, time.Now()})
	}
	// Each hung request ends in TIMEOUT, except that once 5 have timed out
	// the business's circuit is open (docs/reliability.md), and a request
	// that was still queued, with some of its budget left, then gets
	// BIZ_UNAVAILABLE at once. Which requests are still queued then
	// depends on scheduling; a BIZ_UNAVAILABLE before the fifth TIMEOUT
	// would be a bug.
	var late []time.Duration
	timeouts := 0
	for _, o := range others {
		if o.Op != codec.OpResponse || o.Biz != 2 {
			t.Fatalf("hanging business answered %v biz %d status %v seq %d, want a RESPONSE for biz 2", o.Op, o.Biz, o.Status, o.Seq)
		}
		switch {
		case o.Status == codec.StatusTimeout:
			timeouts++
		case o.Status == codec.StatusBizUnavailable && timeouts >= upstream.DefaultFailureThreshold:
		default:
			t.Fatalf("hanging business answered %v seq %d after %d TIMEOUTs, want TIMEOUT (or BIZ_UNAVAILABLE once %d have timed out)", o.Status, o.Seq, timeouts, upstream.DefaultFailureThreshold)
		}
		late = append(late, o.at.Sub(sent))
	}
	t.Logf("%d PINGs p50 %v max %v; biz 3 same conn p50 %v max %v, other conn p50 %v max %v; biz 2 TIMEOUT after %v..%v",
		len(pongs), pct(pongs, .5), maxOf(pongs), pct(fastA, .5), maxOf(fastA), pct(fastB, .5), maxOf(fastB), pct(late, 0), maxOf(late))
	if len(fastA) < 5 {
		t.Errorf("only %d fast round trips during the hang", len(fastA))
	}
	if m := maxOf(pongs); m > fastBound {
		t.Errorf("a PONG took %v during the hang, want < %v", m, fastBound)
	}
	if m := max(maxOf(fastA), maxOf(fastB)); m > fastBound {
		t.Errorf("a business 3 request took %v during the hang, want < %v", m, fastBound)
	}
	if first := pct(late, 0); first < timeout-10*time.Millisecond {
		t.Errorf("a TIMEOUT came after %v, before the %v timeout", first, timeout)
	}
	if last := maxOf(late); last > timeout+slack {
		t.Errorf("the last TIMEOUT came after %v, want <= %v + %v", last, timeout, slack)
	}
	st := s.snapshot()
	if got, unavail := st.biz(2).Results["TIMEOUT"], st.biz(2).Results["BIZ_UNAVAILABLE"]; got != uint64(timeouts) || got+unavail != hung {
		t.Errorf("biz 2 counted %d TIMEOUT and %d BIZ_UNAVAILABLE; the client got %d TIMEOUT of %d", got, unavail, timeouts, hung)
	}
	if got, want := st.biz(3).Results["OK"], uint64(len(fastA)+len(fastB)); got != want {
		t.Errorf("biz 3 OK count %d, want %d", got, want)
	}
	if st.biz(2).Breaker != "open" {
		// 100 timeouts in a row are failures: the breaker must have opened.
		t.Errorf("biz 2 breaker %q after %d timeouts, want open", st.biz(2).Breaker, hung)
	}
}

// TestReliabilityDeadBusiness: a business whose port is closed answers
// BIZ_UNAVAILABLE; after 5 consecutive failures its circuit opens and
// answers come at once without a connection attempt; once the backend is
// back, the first request after the open timeout (5s, not a flag) is a
// half-open probe that closes the circuit.
func TestReliabilityDeadBusiness(t *testing.T) {
	addr := freePort(t)
	s := startServer(t, "-rate", "0", "-biz", "4=http://"+addr+"/rpc,timeout=1s")
	c, _ := loggedIn(t, s, "dev-dead")

	const threshold = 5
	seq := uint32(0)
	for i := 0; i < threshold; i++ {
		seq++
		f, rtt := c.request(4, seq, nil, []byte("x"))
		if f.Status != codec.StatusBizUnavailable {
			t.Fatalf("request %d to a closed port: %v, want BIZ_UNAVAILABLE", i, f.Status)
		}
		if rtt > time.Second {
			t.Fatalf("refused connection answered after %v", rtt)
		}
		if i < threshold-1 && s.snapshot().biz(4).Breaker != "closed" {
			t.Fatalf("breaker opened after %d failures, want %d", i+1, threshold)
		}
	}
	opened := time.Now()
	if br := s.snapshot().biz(4).Breaker; br != "open" {
		t.Fatalf("breaker %q after %d failures, want open", br, threshold)
	}

	// The business comes back on the same port. The open circuit must not
	// let anything through to it before the open timeout.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	var hits atomic.Int64
	back := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("back"))
	})}
	go back.Serve(ln)
	t.Cleanup(func() { back.Close() })

	var open []time.Duration
	for i := 0; i < 20; i++ {
		seq++
		f, rtt := c.request(4, seq, nil, []byte("x"))
		if f.Status != codec.StatusBizUnavailable {
			t.Fatalf("open circuit answered %v, want BIZ_UNAVAILABLE", f.Status)
		}
		open = append(open, rtt)
	}
	if m := maxOf(open); m > fastBound {
		t.Errorf("an open-circuit answer took %v, want < %v", m, fastBound)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("backend received %d requests while the circuit was open", n)
	}
	if got := s.snapshot().biz(4).Results["BIZ_UNAVAILABLE"]; got != threshold+20 {
		t.Errorf("BIZ_UNAVAILABLE count %d, want %d", got, threshold+20)
	}

	// Probe until the circuit lets a request through: not before the open
	// timeout, and soon after it.
	const openTimeout = 5 * time.Second
	var closedAt time.Duration
	for {
		seq++
		f, _ := c.request(4, seq, nil, []byte("probe"))
		if f.Status == codec.StatusOK {
			closedAt = time.Since(opened)
			if string(f.Body) != "back" {
				t.Fatalf("probe answer %q", f.Body)
			}
			break
		}
		if f.Status != codec.StatusBizUnavailable {
			t.Fatalf("while open: %v", f.Status)
		}
		if time.Since(opened) > openTimeout+3*time.Second {
			t.Fatalf("circuit still open %v after it opened", time.Since(opened))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("open-circuit answers max %v; circuit closed %v after opening", maxOf(open), closedAt)
	if closedAt < openTimeout-100*time.Millisecond {
		t.Errorf("a request got through %v after the circuit opened, before the %v open timeout", closedAt, openTimeout)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("backend received %d requests by the first OK, want exactly the one probe", n)
	}
	if br := s.snapshot().biz(4).Breaker; br != "closed" {
		t.Errorf("breaker %q after a successful probe, want closed", br)
	}
	for i := 0; i < 5; i++ {
		seq++
		if f, _ := c.request(4, seq, nil, nil); f.Status != codec.StatusOK {
			t.Fatalf("after the circuit closed: %v", f.Status)
		}
	}
	if n := hits.Load(); n != 6 {
		t.Errorf("backend hits %d, want 6", n)
	}
}

// TestReliabilityBusinessContract: a business answering non-2xx gives
// BIZ_ERROR with its body as the message; the X-Longlink-* headers reach
// the business; meta goes there as X-Longlink-Meta-<key> and comes back
// from X-Longlink-Meta-* answer headers.
func TestReliabilityBusinessContract(t *testing.T) {
	type seen struct{ h http.Header }
	var mu sync.Mutex
	var got []seen
	be := newBackend(t, func(_ *backend, w http.ResponseWriter, r *http.Request) {
		body := make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		mu.Lock()
		got = append(got, seen{r.Header.Clone()})
		mu.Unlock()
		switch string(body) {
		case "teapot":
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte("short and stout"))
		case "fail":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("backend says no"))
		default:
			w.Header().Set("X-Longlink-Meta-Reply", "r:"+r.Header.Get("X-Longlink-Meta-TraceId"))
			_, _ = w.Write(append([]byte("ok:"), body...))
		}
	})
	s := startServer(t, "-biz", "5="+be.URL+",timeout=2s")
	c := dial(t, s.TCP)
	ack := c.login(mint(t, jwt.SigningMethodHS256, []byte(testSecret),
		jwt.MapClaims{"sub": "dev-contract", "app": "app-7", "exp": time.Now().Add(time.Hour).Unix()}))
	if ack.Status != codec.StatusOK {
		t.Fatalf("login: %v", ack.Status)
	}

	f, _ := c.request(5, 41, meta("TraceId", "abc-123", "k2", "v2"), []byte("hello"))
	if f.Status != codec.StatusOK || string(f.Body) != "ok:hello" || f.Biz != 5 {
		t.Fatalf("2xx: status %v biz %d body %q", f.Status, f.Biz, f.Body)
	}
	if v := metaString(f, "reply"); v != "r:abc-123" {
		t.Errorf("answer meta reply=%q, want r:abc-123 (X-Longlink-Meta-Reply)", v)
	}
	f, _ = c.request(5, 42, nil, []byte("teapot"))
	if f.Status != codec.StatusBizError || string(f.Body) != "short and stout" {
		t.Errorf("418: status %v body %q, want BIZ_ERROR with the body", f.Status, f.Body)
	}
	f, _ = c.request(5, 43, nil, []byte("fail"))
	if f.Status != codec.StatusBizError || string(f.Body) != "backend says no" {
		t.Errorf("503: status %v body %q, want BIZ_ERROR with the body", f.Status, f.Body)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("backend saw %d requests, want 3", len(got))
	}
	h := got[0].h
	want := map[string]string{
		"X-Longlink-Device":       "dev-contract",
		"X-Longlink-App":          "app-7",
		"X-Longlink-Conn":         metaString(ack, "conn"),
		"X-Longlink-Node":         s.Node,
		"X-Longlink-Biz":          "5",
		"X-Longlink-Seq":          "41",
		"X-Longlink-Meta-TraceId": "abc-123",
		"X-Longlink-Meta-k2":      "v2",
	}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	if st := s.snapshot().biz(5); st.Results["BIZ_ERROR"] != 2 || st.Results["OK"] != 1 || st.Breaker != "closed" {
		t.Errorf("biz 5 stats: results %v breaker %s", st.Results, st.Breaker)
	}
}

// TestReliabilityQueueFull: business 6 hangs with one worker and a queue
// of one; with one request in flight and one queued, every further
// request is answered OVERLOADED at once and never reaches the business.
func TestReliabilityQueueFull(t *testing.T) {
	be := hangingBackend(t)
	s := startServer(t, "-rate", "0", "-drain-timeout", "2s", "-biz", "6="+be.URL+",workers=1,queue=1,timeout=1s")
	c, _ := loggedIn(t, s, "dev-queue")
	c.send(codec.Header{Op: codec.OpRequest, Biz: 6, Seq: 1}, nil, []byte("first"))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := s.snapshot().biz(6); st.InFlight != 1 || be.hits.Load() != 1 {
			return fmt.Errorf("in flight %d, backend hits %d", st.InFlight, be.hits.Load())
		}
		return nil
	})
	c.send(codec.Header{Op: codec.OpRequest, Biz: 6, Seq: 2}, nil, []byte("queued"))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := s.snapshot().biz(6); st.Queued != 1 {
			return fmt.Errorf("queued %d", st.Queued)
		}
		return nil
	})
	const extra = 20
	var burst []byte
	for i := range extra {
		burst = codec.AppendFrame(burst, codec.Header{Op: codec.OpRequest, Biz: 6, Seq: uint32(100 + i)}, nil, []byte("extra"))
	}
	start := time.Now()
	c.write(burst)
	for i := range extra {
		f := c.read(5 * time.Second)
		if f.Op != codec.OpResponse || f.Status != codec.StatusOverloaded || f.Seq != uint32(100+i) {
			t.Fatalf("extra request %d: %v status %v seq %d, want OVERLOADED in order", i, f.Op, f.Status, f.Seq)
		}
	}
	el := time.Since(start)
	t.Logf("%d OVERLOADED answers in %v", extra, el)
	if el > fastBound {
		t.Errorf("%d OVERLOADED answers took %v, want < %v", extra, el, fastBound)
	}
	if n := be.hits.Load(); n != 1 {
		t.Errorf("backend received %d requests while full, want 1", n)
	}
	if st := s.snapshot().biz(6); st.Results["OVERLOADED"] != extra || st.Requests != extra+2 {
		t.Errorf("biz 6 results %v requests %d, want %d OVERLOADED of %d", st.Results, st.Requests, extra, extra+2)
	}
	// The two admitted requests end by the timeout.
	for i := 0; i < 2; i++ {
		f := c.read(5 * time.Second)
		if f.Status != codec.StatusTimeout || f.Seq > 2 {
			t.Errorf("admitted request: seq %d status %v, want TIMEOUT", f.Seq, f.Status)
		}
	}
}

// TestReliabilityRateLimit: with -rate 10 -rate-burst 5 a burst of 30
// requests gets exactly the burst forwarded and the rest OVERLOADED at
// once; the OVERLOADED ones never reach the business or its queue, and
// the bucket refills at the configured rate.
func TestReliabilityRateLimit(t *testing.T) {
	const delay = 300 * time.Millisecond // the business is slow but healthy
	be := newBackend(t, func(b *backend, w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
		case <-b.hang:
		}
		_, _ = w.Write([]byte("done"))
	})
	s := startServer(t, "-rate", "10", "-rate-burst", "5", "-drain-timeout", "2s", "-biz", "7="+be.URL+",timeout=2s")
	c, _ := loggedIn(t, s, "dev-rl")
	other, _ := loggedIn(t, s, "dev-rl-other")
	const n, burstSize = 30, 5
	var burst []byte
	for i := range n {
		burst = codec.AppendFrame(burst, codec.Header{Op: codec.OpRequest, Biz: 7, Seq: uint32(i)}, nil, []byte("r"))
	}
	start := time.Now()
	c.write(burst)
	over := 0
	var overAt time.Duration
	for over < n-burstSize {
		f := c.read(5 * time.Second)
		if f.Status != codec.StatusOverloaded {
			t.Fatalf("seq %d: %v before the OVERLOADED answers, want OVERLOADED", f.Seq, f.Status)
		}
		if f.Seq < burstSize {
			t.Errorf("seq %d within the burst answered OVERLOADED", f.Seq)
		}
		over++
		overAt = time.Since(start)
	}
	t.Logf("%d OVERLOADED within %v", over, overAt)
	if overAt > fastBound {
		t.Errorf("OVERLOADED answers took %v, want < %v", overAt, fastBound)
	}
	if st := s.snapshot().biz(7); st.Requests != burstSize {
		t.Errorf("biz 7 requests %d, want %d: the excess must not be submitted", st.Requests, burstSize)
	}
	// Another connection has its own bucket: its request is forwarded.
	other.send(codec.Header{Op: codec.OpRequest, Biz: 7, Seq: 99}, nil, nil)
	if rtt := other.ping(100); rtt > fastBound {
		t.Errorf("other connection PONG after %v", rtt)
	}
	for i := 0; i < burstSize; i++ {
		if f := c.read(3 * time.Second); f.Status != codec.StatusOK || f.Seq >= burstSize {
			t.Errorf("admitted request seq %d: %v, want OK", f.Seq, f.Status)
		}
	}
	if f := other.read(3 * time.Second); f.Seq != 99 || f.Status != codec.StatusOK {
		t.Errorf("other connection's request: seq %d %v, want OK", f.Seq, f.Status)
	}
	if h := be.hits.Load(); h != burstSize+1 {
		t.Errorf("backend hits %d, want %d", h, burstSize+1)
	}
	// Half a second after the burst the bucket has refilled by about 5
	// tokens (10/s, capped at the burst): that many of a new burst pass.
	time.Sleep(time.Until(start.Add(delay + 200*time.Millisecond)))
	elapsed := time.Since(start)
	burst = burst[:0]
	for i := range 8 {
		burst = codec.AppendFrame(burst, codec.Header{Op: codec.OpRequest, Biz: 7, Seq: uint32(200 + i)}, nil, []byte("r"))
	}
	c.write(burst)
	ok, overloaded := 0, 0
	for ok+overloaded < 8 {
		switch f := c.read(3 * time.Second); f.Status {
		case codec.StatusOK:
			ok++
		case codec.StatusOverloaded:
			overloaded++
		default:
			t.Fatalf("refill request: %v", f.Status)
		}
	}
	refill := int(elapsed.Seconds() * 10)
	t.Logf("%v after the burst: %d of 8 passed (refill ~%d)", elapsed, ok, refill)
	if ok < refill-1 || ok > min(refill+1, burstSize) {
		t.Errorf("%d requests passed %v after the burst, want about %d at 10/s", ok, elapsed, refill)
	}
}

// TestReliabilityMaxConns: with -max-conns 3, connections beyond three
// (logged in or not) get KICK(OVERLOADED) and are closed, counted as
// refused; admitted ones are unaffected, and a freed slot is reusable.
func TestReliabilityMaxConns(t *testing.T) {
	s := startServer(t, "-max-conns", "3")
	a, _ := loggedIn(t, s, "dev-mc-a")
	dial(t, s.TCP)
	last := dial(t, s.TCP)
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := s.snapshot().Connections; n != 3 {
			return fmt.Errorf("connections %d", n)
		}
		return nil
	})
	const excess = 4
	for i := 0; i < excess; i++ {
		c := dial(t, s.TCP)
		f := c.read(5 * time.Second)
		if f.Op != codec.OpKick || f.Status != codec.StatusOverloaded || !strings.Contains(metaString(f, "reason"), "connections") {
			t.Fatalf("excess connection %d: %v %v reason %q, want KICK OVERLOADED", i, f.Op, f.Status, metaString(f, "reason"))
		}
		c.expectClosed(2 * time.Second)
	}
	if rtt := a.ping(1); rtt > fastBound {
		t.Errorf("admitted connection PONG after %v", rtt)
	}
	st := s.snapshot()
	if st.Refused != excess || st.Kicks["OVERLOADED"] != excess || st.Connections != 3 || st.Accepted != 3+excess {
		t.Errorf("refused %d kicks %v connections %d accepted %d, want %d refused of %d", st.Refused, st.Kicks, st.Connections, st.Accepted, excess, 3+excess)
	}
	last.nc.Close()
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := s.snapshot().Connections; n != 2 {
			return fmt.Errorf("connections %d after a close", n)
		}
		return nil
	})
	if _, ack := loggedIn(t, s, "dev-mc-new"); ack.Status != codec.StatusOK {
		t.Fatal("freed slot not reusable")
	}
}
