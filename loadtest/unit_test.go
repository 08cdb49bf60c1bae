package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/codec"
)

// TestLatencyRecorderPercentiles records known data across shards and
// intervals and checks the counts and percentiles.
func TestLatencyRecorderPercentiles(t *testing.T) {
	l := newLatencyRecorder()
	// 1..10000 ms, half before the first collect, half after.
	for v := 1; v <= 5000; v++ {
		l.record(v, time.Duration(v)*time.Millisecond)
	}
	iv := l.collect()
	if got := iv.TotalCount(); got != 5000 {
		t.Fatalf("first interval count %d, want 5000", got)
	}
	if p := percentiles(iv); !near(p.P50, 2500, 0.002) || !near(p.Max, 5000, 0.002) {
		t.Fatalf("first interval p50 %.3f max %.3f, want 2500 and 5000", p.P50, p.Max)
	}
	for v := 5001; v <= 10000; v++ {
		l.record(v*7, time.Duration(v)*time.Millisecond)
	}
	iv = l.collect()
	if got := iv.TotalCount(); got != 5000 {
		t.Fatalf("second interval count %d, want 5000 (the first must have been reset)", got)
	}
	if got := l.collect().TotalCount(); got != 0 {
		t.Fatalf("empty interval count %d", got)
	}
	p := percentiles(l.snapshot())
	want := Percentiles{Count: 10000, Mean: 5000.5, P50: 5000, P90: 9000, P99: 9900, P999: 9990, Max: 10000}
	if p.Count != want.Count {
		t.Fatalf("count %d, want %d", p.Count, want.Count)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"mean", p.Mean, want.Mean}, {"p50", p.P50, want.P50}, {"p90", p.P90, want.P90}, {"p99", p.P99, want.P99}, {"p99.9", p.P999, want.P999}, {"max", p.Max, want.Max}} {
		// 3 significant digits: within 0.1% (plus rounding to a bucket).
		if !near(c.got, c.want, 0.002) {
			t.Errorf("%s = %.3f ms, want %.3f", c.name, c.got, c.want)
		}
	}
	// Out-of-range values are clamped, not dropped.
	l.record(0, -time.Second)
	l.record(0, time.Hour)
	l.collect()
	if got := l.snapshot().TotalCount(); got != 10002 {
		t.Fatalf("count after clamped values %d, want 10002", got)
	}
	if m := percentiles(l.snapshot()).Max; !near(m, float64(histMaxUS)/1000, 0.002) {
		t.Fatalf("max %.0f ms, want the clamp %d ms", m, histMaxUS/1000)
	}
	if got := percentiles(nil); got != (Percentiles{}) {
		t.Fatalf("percentiles(nil) = %+v", got)
	}
}

func near(got, want, rel float64) bool { return math.Abs(got-want) <= rel*math.Abs(want)+1e-9 }

// TestLatencyRecorderConcurrent records from many goroutines while the
// sampler collects; nothing may be lost (run with -race).
func TestLatencyRecorderConcurrent(t *testing.T) {
	l := newLatencyRecorder()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			default:
				l.collect()
			}
		}
	}()
	const workers, each = 8, 2000
	finished := make(chan struct{}, workers)
	for w := range workers {
		go func() {
			for i := range each {
				l.record(w, time.Duration(i+1)*time.Microsecond)
			}
			finished <- struct{}{}
		}()
	}
	for range workers {
		<-finished
	}
	close(done)
	<-stopped
	l.collect()
	if got := l.snapshot().TotalCount(); got != workers*each {
		t.Fatalf("count %d, want %d", got, workers*each)
	}
}

// TestOpenLoopSchedule checks that events are due at start + i/rate, that
// they fire close to that time, and the bounds (n, end, unpaced).
func TestOpenLoopSchedule(t *testing.T) {
	const rate = 2000.0
	const period = 300 * time.Millisecond
	var mu sync.Mutex
	var intended []time.Time
	var late []time.Duration
	start := time.Now()
	end := start.Add(period)
	n := openLoop(context.Background(), rate, 0, 3, end, func(i int64, at time.Time) {
		now := time.Now()
		mu.Lock()
		for int64(len(intended)) <= i {
			intended = append(intended, time.Time{})
		}
		intended[i] = at
		late = append(late, now.Sub(at))
		mu.Unlock()
	})
	want := int64(float64(period) / float64(time.Second) * rate)
	if n < want-2 || n > want+1 {
		t.Fatalf("fired %d events in %v at %v/s, want %d", n, period, rate, want)
	}
	if time.Since(start) > period+time.Second {
		t.Fatalf("took %v for a %v schedule", time.Since(start), period)
	}
	step := time.Duration(float64(time.Second) / rate)
	for i := 1; i < len(intended); i++ {
		if intended[i].IsZero() || intended[i-1].IsZero() {
			t.Fatalf("event %d not fired", i)
		}
		if d := intended[i].Sub(intended[i-1]); d < step-time.Microsecond || d > step+time.Microsecond {
			t.Fatalf("intended spacing of events %d,%d is %v, want %v", i-1, i, d, step)
		}
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	// Generous for a shared 2-core machine under -race; typically ~0.1ms.
	if p50 := late[len(late)/2]; p50 < 0 || p50 > 10*time.Millisecond {
		t.Fatalf("median lateness %v, want under 10ms", p50)
	}
	if late[0] < 0 {
		t.Fatalf("an event fired %v before its time", -late[0])
	}

	// Bounded by n.
	if got := openLoop(context.Background(), 10000, 50, 4, time.Time{}, func(int64, time.Time) {}); got != 50 {
		t.Fatalf("n=50 fired %d", got)
	}
	// Unpaced.
	if got := openLoop(context.Background(), 0, 100, 4, time.Time{}, func(int64, time.Time) {}); got != 100 {
		t.Fatalf("unpaced n=100 fired %d", got)
	}
	// Cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got := openLoop(ctx, 100, 0, 2, time.Time{}, func(int64, time.Time) {})
	if got < 1 || got > 7 {
		t.Fatalf("100/s for 50ms fired %d, want about 5", got)
	}
}

// TestOpenLoopOpen checks that a slow fire does not slow the schedule down
// (no coordinated omission): overdue events fire back to back with their
// original intended times.
func TestOpenLoopOpen(t *testing.T) {
	var maxLate time.Duration
	var count int
	openLoop(context.Background(), 1000, 100, 1, time.Time{}, func(i int64, at time.Time) {
		if i == 10 {
			time.Sleep(50 * time.Millisecond) // a stall
		}
		if d := time.Since(at); d > maxLate {
			maxLate = d
		}
		count++
	})
	if count != 100 {
		t.Fatalf("fired %d", count)
	}
	if maxLate < 30*time.Millisecond {
		t.Fatalf("the stall did not show in the lateness (max %v): the schedule moved", maxLate)
	}
}

func TestMintToken(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Now()
	tok, err := mintToken(secret, "dev-1", "app-x", []string{"room"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	var cl tokenClaims
	parsed, err := jwt.ParseWithClaims(tok, &cl, func(tk *jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil || !parsed.Valid {
		t.Fatalf("parse: %v", err)
	}
	if cl.Subject != "dev-1" || cl.App != "app-x" || len(cl.Groups) != 1 || cl.Groups[0] != "room" {
		t.Fatalf("claims %+v", cl)
	}
	if exp := cl.ExpiresAt.Time; exp.Before(now.Add(59*time.Minute)) || exp.After(now.Add(61*time.Minute)) {
		t.Fatalf("exp %v, want about now+1h", exp)
	}
	// The claims are plain JSON names the gateway reads: sub, app, exp, groups.
	m := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(tok, m, func(*jwt.Token) (any, error) { return secret, nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sub", "app", "exp", "groups"} {
		if _, ok := m[k]; !ok {
			t.Errorf("claim %q missing: %v", k, m)
		}
	}
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return []byte("wrong"), nil }); err == nil {
		t.Fatal("token verified with the wrong secret")
	}
	if _, err := mintToken(secret, "", "", nil, time.Hour, now); err == nil {
		t.Fatal("empty device accepted")
	}
	// An expired token is rejected by a verifier.
	old, _ := mintToken(secret, "d", "", nil, time.Minute, now.Add(-time.Hour))
	if _, err := jwt.Parse(old, func(*jwt.Token) (any, error) { return secret, nil }); err == nil {
		t.Fatal("expired token verified")
	}
}

func TestFlagDefaults(t *testing.T) {
	cfg, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"scenario", cfg.Scenario, "hold"},
		{"addr", cfg.Addr, "127.0.0.1:7000"},
		{"api", cfg.API, "http://127.0.0.1:7080"},
		{"api-key", cfg.APIKey, "longlink-dev-api-key"},
		{"jwt-secret", cfg.JWTSecret, "longlink-dev-jwt-secret-do-not-use-in-production"},
		{"conns", cfg.Conns, 1000},
		{"dial-concurrency", cfg.DialConcurrency, 200},
		{"size", cfg.Size, 64},
		{"biz", cfg.Biz, 1},
		{"duration", cfg.Duration, 10 * time.Second},
		{"ramp", cfg.Ramp, time.Duration(0)},
		{"rate", cfg.Rate, 0.0},
		{"pushes", cfg.Pushes, 100},
		{"max-errors", cfg.MaxErrors, int64(0)},
		{"hb", cfg.HB, time.Duration(0)},
		{"quiet", cfg.Quiet, false},
		{"json", cfg.JSONFile, ""},
		{"html", cfg.HTMLFile, ""},
		{"html-assets", cfg.HTMLAssets, "embed"},
		{"max-frame", cfg.MaxFrame, codec.DefaultMaxFrame},
		{"sources", len(cfg.sources), 0},
		{"ws", cfg.WS, false},
		{"ws-addr", cfg.WSAddr, "127.0.0.1:7001"},
		{"tls", cfg.TLS, false},
		{"tls-addr", cfg.TLSAddr, ""},
		{"transport", cfg.transport, "tcp"},
		{"target", cfg.target, "127.0.0.1:7000"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("-%s default %v, want %v", c.name, c.got, c.want)
		}
	}
	if !strings.HasPrefix(cfg.DevicePrefix, "lt") || cfg.Group != cfg.DevicePrefix+"group" {
		t.Errorf("device prefix %q, group %q", cfg.DevicePrefix, cfg.Group)
	}
	for scenario, rate := range map[string]float64{"request": 1000, "push": 1000, "group": 0, "mixed": 200, "hold": 0} {
		cfg, err := parseFlags([]string{"-scenario", scenario}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Rate != rate {
			t.Errorf("-scenario %s: rate %v, want %v", scenario, cfg.Rate, rate)
		}
	}
	for _, bad := range [][]string{{"-scenario", "nope"}, {"-source-ips", "1.2.3"}, {"-biz", "70000"}, {"-size", "70000"}, {"extra"}, {"-html-assets", "cdn"}} {
		if _, err := parseFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestTransportFlags: -ws and -tls pick the transport and the address
// dialed; bad combinations are refused.
func TestTransportFlags(t *testing.T) {
	dir := t.TempDir()
	certFile, _, _ := writeTestCert(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	all := []string{"-addr", "10.0.0.1:1", "-ws-addr", "10.0.0.1:2", "-tls-addr", "10.0.0.1:3"}
	cases := []struct {
		args              []string
		transport, target string
	}{
		{all, "tcp", "10.0.0.1:1"},
		{append([]string{"-ws"}, all...), "ws", "10.0.0.1:2"},
		{append([]string{"-tls", "-tls-ca", certFile}, all...), "tls", "10.0.0.1:3"},
		{[]string{"-ws"}, "ws", "127.0.0.1:7001"},
		{[]string{"-tls-insecure", "-tls-ca", notPEM}, "tcp", "127.0.0.1:7000"}, // ignored without -tls
	}
	for _, c := range cases {
		cfg, err := parseFlags(c.args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if cfg.transport != c.transport || cfg.target != c.target {
			t.Errorf("%q: transport %s target %s, want %s %s", c.args, cfg.transport, cfg.target, c.transport, c.target)
		}
	}
	cfg, err := parseFlags([]string{"-tls", "-tls-addr", "localhost:7443", "-tls-ca", certFile}, &bytes.Buffer{})
	if err != nil || cfg.tlsConf.ServerName != "localhost" || cfg.tlsConf.RootCAs == nil || cfg.tlsConf.InsecureSkipVerify {
		t.Fatalf("tls config %+v, %v", cfg.tlsConf, err)
	}
	cfg, err = parseFlags([]string{"-tls", "-tls-addr", "127.0.0.1:7443", "-tls-insecure", "-tls-server-name", "gw.example"}, &bytes.Buffer{})
	if err != nil || cfg.tlsConf.ServerName != "gw.example" || !cfg.tlsConf.InsecureSkipVerify {
		t.Fatalf("tls config %+v, %v", cfg.tlsConf, err)
	}
	for _, bad := range [][]string{
		{"-ws", "-tls", "-tls-addr", "127.0.0.1:1"},
		{"-tls"},
		{"-tls", "-tls-addr", "nohostport"},
		{"-tls", "-tls-addr", "127.0.0.1:1", "-tls-ca", filepath.Join(dir, "missing.pem")},
		{"-tls", "-tls-addr", "127.0.0.1:1", "-tls-ca", notPEM},
		{"-tls", "-tls-addr", "127.0.0.1:1", "-tls-ca", certFile, "-tls-insecure"},
		{"-ws", "-ws-addr", "nohostport"},
	} {
		if _, err := parseFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseSourceIPs(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		last string
	}{
		{"", 0, ""},
		{"127.0.0.2-127.0.0.50", 49, "127.0.0.50"},
		{"127.0.1.0/30", 4, "127.0.1.3"},
		{"127.0.0.2, 127.0.0.3,127.0.0.9-127.0.0.10", 4, "127.0.0.10"},
		{"::1", 1, "::1"},
	}
	for _, c := range cases {
		got, err := parseSourceIPs(c.in)
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if len(got) != c.n || (c.n > 0 && got[len(got)-1].String() != c.last) {
			t.Fatalf("%q: %v", c.in, got)
		}
	}
	for _, bad := range []string{"127.0.0.5-127.0.0.1", "10.0.0.0/8", "x", "127.0.0.1-::1"} {
		if _, err := parseSourceIPs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestStamp(t *testing.T) {
	b := make([]byte, 64)
	putStamp(b, 42, 1234567890123, 7)
	ns, idx, ok := readStamp(b, 42)
	if !ok || ns != 1234567890123 || idx != 7 {
		t.Fatalf("readStamp = %d %d %v", ns, idx, ok)
	}
	if _, _, ok := readStamp(b, 43); ok {
		t.Fatal("another run's stamp accepted")
	}
	if _, _, ok := readStamp(b[:10], 42); ok {
		t.Fatal("short data accepted")
	}
}

func TestReqTable(t *testing.T) {
	tb := newReqTable(0) // 1024 entries
	s1 := tb.start(100)
	s2 := tb.start(200)
	if at, ok := tb.finish(s2); !ok || at != 200 {
		t.Fatalf("finish(s2) = %d %v", at, ok)
	}
	if _, ok := tb.finish(s2); ok {
		t.Fatal("a second answer matched")
	}
	if at, ok := tb.finish(s1); !ok || at != 100 {
		t.Fatalf("finish(s1) = %d %v", at, ok)
	}
	s3 := tb.start(300)
	for range 1024 {
		tb.start(400) // wrap the ring over s3's entry
	}
	if _, ok := tb.finish(s3); ok {
		t.Fatal("an overwritten entry matched")
	}
	if _, ok := tb.finish(99999); ok {
		t.Fatal("an unknown seq matched")
	}
}

// sampleSummary is a Summary with a little of everything, for the output
// tests.
func sampleSummary() *Summary {
	p := Percentiles{Count: 10, Mean: 1, P50: 1, P90: 2, P99: 3, P999: 4, Max: 5}
	return &Summary{
		Scenario: "request", Connections: 10, TargetConnections: 10, LoginsPerSec: 1000,
		Requests: 100, Responses: 100, LatencyKind: "request", LatencyMs: p,
		Latencies:   map[string]Percentiles{"request": p, "login": p},
		ErrorDetail: map[string]int64{},
		Series: []Point{
			{T: 1, Phase: "connect", Conns: 10, Logins: 10, Latency: map[string]Percentiles{"login": p}},
			{T: 2, Phase: "load", Conns: 10, Requests: 50, Responses: 50, Latency: map[string]Percentiles{"request": p}},
			{T: 3, Phase: "load", Conns: 10, Requests: 50, Responses: 50, Latency: map[string]Percentiles{"request": p}},
		},
		Server: ServerStats{Available: true, Node: "n1", RSSBytes: 1 << 20, RSSPerConn: 5000, HeapPerConn: 3000, Goroutines: 20, CPUSeconds: 0.5},
	}
}

// TestSummaryJSONFields checks the JSON names the issue requires.
func TestSummaryJSONFields(t *testing.T) {
	var buf bytes.Buffer
	if err := writeJSON(sampleSummary(), "-", &buf); err != nil {
		t.Fatal(err)
	}
	checkSummaryJSON(t, buf.Bytes())
}

// checkSummaryJSON fails t unless b has every required field.
func checkSummaryJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("summary is not JSON: %v", err)
	}
	for _, k := range []string{"scenario", "connections", "logins_per_sec", "requests", "responses", "errors",
		"throughput_per_sec", "deliveries", "deliveries_per_sec", "latency_ms", "server", "timeseries"} {
		if _, ok := m[k]; !ok {
			t.Errorf("summary has no %q", k)
		}
	}
	lat, _ := m["latency_ms"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency_ms has no %q", k)
		}
	}
	srv, _ := m["server"].(map[string]any)
	for _, k := range []string{"rss_bytes", "rss_per_conn", "heap_per_conn", "goroutines", "cpu_seconds"} {
		if _, ok := srv[k]; !ok {
			t.Errorf("server has no %q", k)
		}
	}
	return m
}

// TestHTMLReport checks the report is one self-contained file with the
// charts the issue asks for.
func TestHTMLReport(t *testing.T) {
	if strings.Contains(strings.ToLower(echartsJS), "</script") {
		t.Fatal("echarts.min.js contains </script and cannot be inlined as is")
	}
	if len(echartsJS) < 500_000 || !strings.Contains(echartsJS, "echarts") {
		t.Fatalf("embedded echarts looks wrong (%d bytes)", len(echartsJS))
	}
	b, err := renderHTML(sampleSummary(), "embed")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"Connection ramp", "Throughput", "Latency percentiles over time: request",
		"Latency percentiles over time: login", "echarts.init(", "Longlink load test", "1000 logins/s"} {
		if !strings.Contains(s, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(s, "<script src=") || strings.Contains(s, "<link href=") {
		t.Error("HTML loads an external asset; it must be self-contained")
	}
	if n := strings.Count(s, "echarts.init("); n != 4 {
		t.Errorf("%d charts, want 4", n)
	}
	b, err = renderHTML(sampleSummary(), "http://assets.example/echarts/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `<script src="http://assets.example/echarts/echarts.min.js">`) || len(b) > 200_000 {
		t.Error("-html-assets URL not used")
	}
}

func TestBytesIEC(t *testing.T) {
	for in, want := range map[float64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", -2048: "-2.0 KiB"} {
		if got := bytesIEC(in); got != want {
			t.Errorf("bytesIEC(%v) = %q, want %q", in, got, want)
		}
	}
}
