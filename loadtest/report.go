package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/longlink/longlink/metrics"
)

// Summary is the outcome of a run: the JSON written by -json and what the
// text report and the HTML report show.
type Summary struct {
	Scenario          string    `json:"scenario"`
	Started           time.Time `json:"started"`
	Addr              string    `json:"addr"`      // the address dialed
	Transport         string    `json:"transport"` // tcp, ws or tls
	TLS               *TLSInfo  `json:"tls,omitempty"`
	TargetConnections int       `json:"target_connections"`
	// Connections is the number logged in when the connect phase ended.
	Connections     int64   `json:"connections"`
	PeakConnections int64   `json:"peak_connections"`
	ConnectSeconds  float64 `json:"connect_seconds"` // first dial to last successful login
	LoginsPerSec    float64 `json:"logins_per_sec"`  // connect phase logins / ConnectSeconds
	Logins          int64   `json:"logins"`          // all successful logins (with reconnects)
	Reconnects      int64   `json:"reconnects"`
	Resumed         int64   `json:"resumed"` // reconnects whose LOGIN_ACK said resumed=1
	LoadSeconds     float64 `json:"load_seconds"`
	DrainSeconds    float64 `json:"drain_seconds"`

	Requests  int64 `json:"requests"`  // REQUEST frames sent
	Responses int64 `json:"responses"` // RESPONSE frames with status OK
	Pings     int64 `json:"pings"`
	Pongs     int64 `json:"pongs"`

	PushCalls          int64   `json:"push_calls"` // push API calls made
	Deliveries         int64   `json:"deliveries"` // stamped PUSH frames received
	ExpectedDeliveries int64   `json:"expected_deliveries"`
	MissingDeliveries  int64   `json:"missing_deliveries"`
	APIDelivered       int64   `json:"api_delivered"` // sum of the API's "delivered"
	Offline            int64   `json:"offline"`       // devices the API reported offline
	GroupMembers       int64   `json:"group_members,omitempty"`
	DeliveriesPerSec   float64 `json:"deliveries_per_sec"`

	// ThroughputPerSec is the scenario's main rate: hold PONGs, request
	// answered REQUESTs, push and group deliveries, mixed answers plus
	// deliveries; per second of the load phase (push and group: first push
	// to last delivery).
	ThroughputPerSec float64 `json:"throughput_per_sec"`

	Errors      int64            `json:"errors"`
	MaxErrors   int64            `json:"max_errors"`
	ErrorDetail map[string]int64 `json:"error_detail"`
	ErrorSample []string         `json:"error_sample,omitempty"`

	// LatencyMs is the scenario's main latency (LatencyKind): hold ping RTT,
	// request and mixed REQUEST→RESPONSE from the intended send time, push
	// and group API call (intended time) → PUSH received.
	LatencyKind string                 `json:"latency_kind"`
	LatencyMs   Percentiles            `json:"latency_ms"`
	Latencies   map[string]Percentiles `json:"latencies_ms"`

	// SDK is the SDK clients' own counters, summed, with -sdk.
	SDK *SDKStats `json:"sdk,omitempty"`

	Server    ServerStats    `json:"server"`
	Generator GeneratorStats `json:"generator"`
	Config    ConfigEcho     `json:"config"`
	Series    []Point        `json:"timeseries"`
}

// ServerStats is what /v1/stats said: after the load (connections still
// held), compared with before the first connection.
type ServerStats struct {
	Available   bool    `json:"available"`
	Error       string  `json:"error,omitempty"`
	Node        string  `json:"node,omitempty"`
	Connections int64   `json:"connections"`  // server-reported, after
	RSSBytes    int64   `json:"rss_bytes"`    // after
	RSSBefore   int64   `json:"rss_before"`   // before connecting
	RSSPerConn  float64 `json:"rss_per_conn"` // (rss after - rss before) / connections, bytes
	HeapInuse   int64   `json:"heap_inuse"`
	HeapPerConn float64 `json:"heap_per_conn"` // likewise from heap_inuse, bytes
	Goroutines  int64   `json:"goroutines"`    // after
	// GoroutinesBefore and GoroutinesConnected show whether goroutines grow
	// with connections.
	GoroutinesBefore    int64   `json:"goroutines_before"`
	GoroutinesConnected int64   `json:"goroutines_connected"`
	CPUSeconds          float64 `json:"cpu_seconds"`      // after - before: the whole run
	CPUSecondsLoad      float64 `json:"cpu_seconds_load"` // after - connected: load and drain
	// CPUPerMillionDeliveries is CPUSecondsLoad per million deliveries.
	CPUPerMillionDeliveries float64 `json:"cpu_per_million_deliveries,omitempty"`
	PushDeliveries          uint64  `json:"push_deliveries"` // server push.deliveries delta

	Before    *metrics.Snapshot `json:"before,omitempty"`
	Connected *metrics.Snapshot `json:"connected,omitempty"`
	After     *metrics.Snapshot `json:"after,omitempty"`
}

// GeneratorStats is the generator process's own cost, next to the server's.
type GeneratorStats struct {
	Goroutines int     `json:"goroutines"`
	HeapInuse  uint64  `json:"heap_inuse"`
	RSSBytes   int64   `json:"rss_bytes"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUSecondsConnect is the part of CPUSeconds spent in the connect
	// phase: dials, TLS handshakes or WebSocket upgrades, and logins.
	CPUSecondsConnect float64 `json:"cpu_seconds_connect"`
	GOMAXPROCS        int     `json:"gomaxprocs"`
}

// ConfigEcho is the run's settings, so a JSON file says how it was made.
type ConfigEcho struct {
	Conns           int     `json:"conns"`
	DialConcurrency int     `json:"dial_concurrency"`
	SourceIPs       int     `json:"source_ips"`
	Rate            float64 `json:"rate"`
	Size            int     `json:"size"`
	Biz             int     `json:"biz"`
	Duration        string  `json:"duration"`
	Ramp            string  `json:"ramp"`
	Pushes          int     `json:"pushes,omitempty"`
	Group           string  `json:"group,omitempty"`
	PushRate        float64 `json:"push_rate,omitempty"`
	Churn           float64 `json:"churn,omitempty"`
	HB              string  `json:"hb"`
	Ack             bool    `json:"ack"`
	Batch           int     `json:"batch"`
	Pipeline        int     `json:"pipeline"`
	APIConcurrency  int     `json:"api_concurrency"`
	LocalTokens     bool    `json:"local_tokens"`
	SDK             bool    `json:"sdk"` // every device a client.Client of the Go SDK
}

// generatorStats reads this process's goroutines, heap, RSS and CPU.
func generatorStats() GeneratorStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	g := GeneratorStats{Goroutines: runtime.NumGoroutine(), HeapInuse: ms.HeapInuse, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	g.CPUSeconds = selfCPU()
	g.RSSBytes = selfRSS()
	return g
}

// selfCPU is this process's user+system CPU time, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// selfRSS is the resident set size from /proc/self/statm (0 elsewhere).
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// errorDetail counts every kind of error, including those only known at the
// end (lost responses, missing deliveries).
func (r *runner) errorDetail() map[string]int64 {
	c := &r.c
	d := map[string]int64{
		"dial":                c.dialErrors.Load(),
		"login":               c.loginErrors.Load(),
		"disconnect":          c.disconnects.Load(),
		"protocol":            c.protoErrors.Load(),
		"write":               c.writeErrors.Load(),
		"unmatched_responses": c.unmatched.Load(),
		"unsent":              c.unsent.Load(),
		"request_failed":      c.reqFailed.Load(),
		"push_api":            c.pushErrors.Load(),
		"not_attempted":       r.unattempted,
	}
	for i := range c.kicks {
		if n := c.kicks[i].Load(); n > 0 {
			d["kick_"+statusName(i)] = n
		}
	}
	for i := range c.respErrors {
		if n := c.respErrors[i].Load(); n > 0 {
			d["response_"+statusName(i)] = n
		}
	}
	if r.cfg.Scenario != "mixed" {
		d["offline"] = c.pushOffline.Load()
	}
	lost, missing := r.outstanding()
	d["lost_responses"] = lost
	d["missing_deliveries"] = missing
	for k, v := range d {
		if v == 0 {
			delete(d, k)
		}
	}
	return d
}

// summary builds the Summary once the run is over.
func (r *runner) summary() *Summary {
	cfg := r.cfg
	c := &r.c
	s := &Summary{
		Scenario:           cfg.Scenario,
		Started:            r.t0,
		Addr:               cfg.target,
		Transport:          cfg.transport,
		TLS:                r.tlsInfo.Load(),
		TargetConnections:  cfg.Conns,
		Connections:        r.connectedUp,
		PeakConnections:    c.peakUp.Load(),
		ConnectSeconds:     r.connectDur.Seconds(),
		Logins:             c.logins.Load(),
		Reconnects:         c.reconnects.Load(),
		Resumed:            c.resumed.Load(),
		LoadSeconds:        r.loadEnd.Sub(r.loadStart).Seconds(),
		DrainSeconds:       r.drainDur.Seconds(),
		Requests:           c.requests.Load(),
		Responses:          c.responses.Load(),
		Pings:              c.pings.Load(),
		Pongs:              c.pongs.Load(),
		PushCalls:          c.pushCalls.Load(),
		Deliveries:         c.deliveries.Load(),
		ExpectedDeliveries: c.expected.Load(),
		APIDelivered:       c.pushDelivered.Load(),
		Offline:            c.pushOffline.Load(),
		GroupMembers:       r.members,
		MaxErrors:          cfg.MaxErrors,
		ErrorDetail:        r.errorDetail(),
		Latencies:          map[string]Percentiles{},
		Generator:          r.gen,
		Series:             r.series,
	}
	if s.Series == nil {
		s.Series = []Point{}
	}
	if st := r.sdkStats; st != nil {
		// The SDK's own reconnects (churn cuts, and any other loss) and
		// complete resumes; the cuts alone are in sdk.churn_cuts.
		s.SDK = st
		s.Reconnects = int64(st.Reconnects)
		s.Resumed = int64(st.Resumed)
	}
	if s.ConnectSeconds > 0 {
		s.LoginsPerSec = float64(r.connectedUp) / s.ConnectSeconds
	}
	_, s.MissingDeliveries = r.outstanding()
	if first, last := c.firstPush.Load(), c.lastDelivery.Load(); first > 0 && last > first {
		s.DeliveriesPerSec = float64(s.Deliveries) / (float64(last-first) / 1e9)
	}
	for _, v := range s.ErrorDetail {
		s.Errors += v
	}
	r.errMu.Lock()
	s.ErrorSample = append([]string(nil), r.errSample...)
	r.errMu.Unlock()

	for k := range numKinds {
		if p := percentiles(r.lat[k].snapshot()); p.Count > 0 {
			s.Latencies[k.String()] = p
		}
	}
	main := r.mainKind()
	if main == kindPing && s.Latencies[main.String()].Count == 0 {
		main = kindLogin // a hold shorter than one heartbeat
	}
	s.LatencyKind = main.String()
	s.LatencyMs = s.Latencies[main.String()]

	load := s.LoadSeconds
	switch cfg.Scenario {
	case "hold":
		if load > 0 {
			s.ThroughputPerSec = float64(s.Pongs) / load
		}
	case "request":
		if load > 0 {
			s.ThroughputPerSec = float64(s.Responses+c.respErrorTotal()) / load
		}
	case "push", "group":
		s.ThroughputPerSec = s.DeliveriesPerSec
	case "mixed":
		if load > 0 {
			s.ThroughputPerSec = float64(s.Responses+c.respErrorTotal()+s.Deliveries) / load
		}
	}

	s.Server = r.serverStats(s)
	s.Config = ConfigEcho{
		Conns: cfg.Conns, DialConcurrency: cfg.DialConcurrency, SourceIPs: len(cfg.sources),
		Rate: cfg.Rate, Size: cfg.Size, Biz: cfg.Biz, Duration: cfg.Duration.String(), Ramp: cfg.Ramp.String(),
		HB: r.hb().String(), Ack: cfg.Ack, Batch: cfg.Batch, Pipeline: cfg.Pipeline, APIConcurrency: cfg.APIConcurrency,
		LocalTokens: r.secret != nil, SDK: cfg.SDK,
	}
	switch cfg.Scenario {
	case "group":
		s.Config.Pushes, s.Config.Group = cfg.Pushes, cfg.Group
	case "mixed":
		s.Config.PushRate, s.Config.Churn = cfg.PushRate, cfg.Churn
	}
	return s
}

// serverStats compares the /v1/stats snapshots.
func (r *runner) serverStats(s *Summary) ServerStats {
	ss := ServerStats{Before: r.before, Connected: r.connected, After: r.after, Error: r.statsErr}
	a := r.after
	if a == nil {
		return ss
	}
	ss.Available = true
	ss.Node = a.Node
	ss.Connections = a.Connections
	ss.RSSBytes = a.RSS
	ss.HeapInuse = a.HeapInuse
	ss.Goroutines = a.Goroutines
	if r.connected != nil {
		ss.GoroutinesConnected = r.connected.Goroutines
		ss.CPUSecondsLoad = a.CPUSeconds - r.connected.CPUSeconds
	}
	if b := r.before; b != nil {
		ss.RSSBefore = b.RSS
		ss.GoroutinesBefore = b.Goroutines
		ss.CPUSeconds = a.CPUSeconds - b.CPUSeconds
		ss.PushDeliveries = a.Push.Deliveries - b.Push.Deliveries
		// Per connection: the connections we held when the after snapshot
		// was taken (the server's own count could include strangers).
		if n := float64(r.afterUp); n > 0 {
			ss.RSSPerConn = float64(a.RSS-b.RSS) / n
			ss.HeapPerConn = float64(a.HeapInuse-b.HeapInuse) / n
		}
	}
	if (s.Scenario == "push" || s.Scenario == "group") && s.Deliveries > 0 && ss.CPUSecondsLoad > 0 {
		ss.CPUPerMillionDeliveries = ss.CPUSecondsLoad / float64(s.Deliveries) * 1e6
	}
	return ss
}

// writeJSON writes s, indented, to path ("-" = w).
func writeJSON(s *Summary, path string, w io.Writer) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = w.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// bytesIEC formats a byte count.
func bytesIEC(n float64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	s := strconv.FormatFloat(n, 'f', 1, 64) + " " + units[i]
	if i == 0 {
		s = strconv.FormatFloat(n, 'f', 0, 64) + " B"
	}
	if neg {
		s = "-" + s
	}
	return s
}

func fmtPct(p Percentiles) string {
	if p.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms  (n=%d)", p.P50, p.P90, p.P99, p.P999, p.Max, p.Count)
}

// writeText prints the human report.
func writeText(w io.Writer, s *Summary) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	via := ""
	if s.Config.SDK {
		via = ", every device a client.Client (-sdk)"
	}
	p("Longlink load test: scenario %s against %s (%s)%s", s.Scenario, s.Addr, s.Transport, via)
	if t := s.TLS; t != nil {
		p("  tls          %s, %s, key exchange %s, resumed %v", t.Version, t.CipherSuite, t.KeyExchange, t.Resumed)
	}
	p("  connections  %d of %d logged in in %.2fs: %.0f logins/s (peak %d, %d logins in all, %d reconnects, %d resumed)",
		s.Connections, s.TargetConnections, s.ConnectSeconds, s.LoginsPerSec, s.PeakConnections, s.Logins, s.Reconnects, s.Resumed)
	if s.Config.SourceIPs == 0 && s.TargetConnections > 10000 {
		p("               (hint: with this many connections from one source address the kernel's ephemeral")
		p("               port search slows connect(); -source-ips 127.0.0.2-127.0.0.11 measures logins/s better)")
	}
	p("  load         %.1fs (+%.1fs drain)", s.LoadSeconds, s.DrainSeconds)
	if s.Requests > 0 || s.Scenario == "request" || s.Scenario == "mixed" {
		p("  requests     %d sent, %d OK", s.Requests, s.Responses)
	}
	if s.PushCalls > 0 {
		p("  pushes       %d API calls; deliveries %d of %d expected (%d missing), %.0f/s; API delivered %d, offline %d",
			s.PushCalls, s.Deliveries, s.ExpectedDeliveries, s.MissingDeliveries, s.DeliveriesPerSec, s.APIDelivered, s.Offline)
	}
	p("  heartbeats   %d PING, %d PONG", s.Pings, s.Pongs)
	if st := s.SDK; st != nil {
		p("  sdk          %d clients: %d logins (%d reconnects, %d after a churn cut), %d resumed, %d gaps, %d kicks, %d heartbeat timeouts",
			st.Clients, st.Connects, st.Reconnects, st.ChurnCuts, st.Resumed, st.Gaps, st.Kicks, st.HeartbeatTimeouts)
		p("               pushes %d handled, %d duplicates dropped, %d unhandled, %d PUSH_ACKs; requests %d sent, %d retried, %d failed",
			st.PushesReceived, st.DuplicatesDropped, st.Unhandled, st.AcksSent, st.RequestsSent, st.RequestsRetried, st.RequestsFailed)
	}
	p("  throughput   %.0f/s", s.ThroughputPerSec)
	p("  latency      %s: %s", s.LatencyKind, fmtPct(s.LatencyMs))
	kinds := make([]string, 0, len(s.Latencies))
	for k := range s.Latencies {
		if k != s.LatencyKind {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		p("               %s: %s", k, fmtPct(s.Latencies[k]))
	}
	sv := s.Server
	if sv.Available {
		p("  server       node %s: %d connections, rss %s (before %s, %s/conn), heap %s (%s/conn)",
			sv.Node, sv.Connections, bytesIEC(float64(sv.RSSBytes)), bytesIEC(float64(sv.RSSBefore)), bytesIEC(sv.RSSPerConn),
			bytesIEC(float64(sv.HeapInuse)), bytesIEC(sv.HeapPerConn))
		p("               goroutines %d (before %d, connected %d); cpu %.2fs (load %.2fs)",
			sv.Goroutines, sv.GoroutinesBefore, sv.GoroutinesConnected, sv.CPUSeconds, sv.CPUSecondsLoad)
		if sv.CPUPerMillionDeliveries > 0 {
			p("               %.2f cpu-seconds per million deliveries", sv.CPUPerMillionDeliveries)
		}
	} else {
		p("  server       /v1/stats unavailable: %s", sv.Error)
	}
	g := s.Generator
	p("  generator    goroutines %d, rss %s, heap %s, cpu %.2fs (connect %.2fs), GOMAXPROCS %d",
		g.Goroutines, bytesIEC(float64(g.RSSBytes)), bytesIEC(float64(g.HeapInuse)), g.CPUSeconds, g.CPUSecondsConnect, g.GOMAXPROCS)
	if s.Errors == 0 {
		p("  errors       0")
		return
	}
	keys := make([]string, 0, len(s.ErrorDetail))
	for k := range s.ErrorDetail {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, s.ErrorDetail[k])
	}
	p("  errors       %d (max %d): %s", s.Errors, s.MaxErrors, strings.Join(parts, ", "))
	for _, e := range s.ErrorSample {
		p("               %s", e)
	}
}
