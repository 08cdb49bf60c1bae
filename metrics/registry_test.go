package metrics

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

func sampleSnapshot() Snapshot {
	return Snapshot{
		Node:          "n1",
		Connections:   3,
		LoggedIn:      2,
		Accepted:      10,
		Refused:       1,
		RefusedSource: 6,
		Throttled:     7,
		RateLimited:   4,
		Logins:        7,
		LoginFail:     2,
		Refreshes:     3,
		RefreshFail:   1,
		FramesIn:      100,
		FramesOut:     200,
		BytesIn:       1000,
		BytesOut:      2000,
		Writes:        30,
		Kicks:         map[string]uint64{"IDLE_TIMEOUT": 4, "BAD_FRAME": 1},
		Closes:        map[string]uint64{"client_closed": 3, "write_error": 2},
		Push:          PushStats{Requests: 5, Deliveries: 50, Offline: 3, Recovered: 2, Acks: 40, Unrouted: 6, NoReply: 7, RouteCached: 8, RouteStale: 9},
		Cluster:       ClusterStats{LinkRequests: 10, LinkFallbacks: 11, RedisErrors: 12},
		ClientRTT:     []Histogram{{Net: "cell", Bounds: []float64{0.1, 1}, Cumulative: []uint64{2, 3}, Count: 4, Sum: 7.5}},
		RTTDropped:    13,
		Heartbeats:    Histogram{Bounds: []float64{30, 60}, Cumulative: []uint64{5, 6}, Count: 6, Sum: 210},
		Businesses: []BizStats{
			{ID: 1, Target: "echo", Requests: 9, Results: map[string]uint64{"OK": 8, "TIMEOUT": 1},
				Queued: 2, InFlight: 1, Breaker: "closed", LatencySeconds: 0.5, LatencyCount: 9},
			{ID: 2, Target: "http://b", Requests: 3, Results: map[string]uint64{"BIZ_UNAVAILABLE": 3},
				Breaker: "open"},
			{ID: 3, Target: "http://c", Breaker: "half-open"},
		},
		Queues: []QueueStats{{Name: "downstream-0", Len: 5, Cap: 1024, Dropped: 7}},
	}
}

// sampleExposition is every longlink_ series sampleSnapshot gives.
const sampleExposition = `
# HELP longlink_connections Open connections, logged in or not.
# TYPE longlink_connections gauge
longlink_connections 3
# HELP longlink_logged_in Connections past LOGIN.
# TYPE longlink_logged_in gauge
longlink_logged_in 2
# HELP longlink_accepted_total Connections accepted.
# TYPE longlink_accepted_total counter
longlink_accepted_total 10
# HELP longlink_refused_total Connections refused at accept: at the connection limit, draining, per-source limits, or too many TLS handshakes.
# TYPE longlink_refused_total counter
longlink_refused_total 1
# HELP longlink_refused_source_total Connections refused at accept by a per-source limit.
# TYPE longlink_refused_source_total counter
longlink_refused_source_total 6
# HELP longlink_throttled_frames_total Frames over their connection's frame rate: answered OVERLOADED or ignored.
# TYPE longlink_throttled_frames_total counter
longlink_throttled_frames_total 7
# HELP longlink_rate_limited_total REQUESTs answered OVERLOADED by the per-connection rate limit.
# TYPE longlink_rate_limited_total counter
longlink_rate_limited_total 4
# HELP longlink_logins_total Successful logins.
# TYPE longlink_logins_total counter
longlink_logins_total 7
# HELP longlink_login_failures_total Failed logins.
# TYPE longlink_login_failures_total counter
longlink_login_failures_total 2
# HELP longlink_refreshes_total REFRESHes that renewed a session's token.
# TYPE longlink_refreshes_total counter
longlink_refreshes_total 3
# HELP longlink_refresh_failures_total REFRESHes refused; the session went on with its old expiry.
# TYPE longlink_refresh_failures_total counter
longlink_refresh_failures_total 1
# HELP longlink_frames_in_total Frames read from clients.
# TYPE longlink_frames_in_total counter
longlink_frames_in_total 100
# HELP longlink_frames_out_total Frames written to clients.
# TYPE longlink_frames_out_total counter
longlink_frames_out_total 200
# HELP longlink_bytes_in_total Bytes read from clients.
# TYPE longlink_bytes_in_total counter
longlink_bytes_in_total 1000
# HELP longlink_bytes_out_total Bytes written to clients.
# TYPE longlink_bytes_out_total counter
longlink_bytes_out_total 2000
# HELP longlink_writes_total Write system calls to client sockets; frames_out_total / writes_total is the coalescing ratio.
# TYPE longlink_writes_total counter
longlink_writes_total 30
# HELP longlink_kicks_total KICK frames sent, by status.
# TYPE longlink_kicks_total counter
longlink_kicks_total{status="BAD_FRAME"} 1
longlink_kicks_total{status="IDLE_TIMEOUT"} 4
# HELP longlink_closes_total Connections closed, by reason: client_closed, read_error, write_error, idle, kicked, slow_consumer, shutdown.
# TYPE longlink_closes_total counter
longlink_closes_total{reason="client_closed"} 3
longlink_closes_total{reason="write_error"} 2
# HELP longlink_push_requests_total Push API calls accepted (unicast, group and broadcast).
# TYPE longlink_push_requests_total counter
longlink_push_requests_total 5
# HELP longlink_push_deliveries_total PUSH frames handed to connections.
# TYPE longlink_push_deliveries_total counter
longlink_push_deliveries_total 50
# HELP longlink_push_offline_total Unicast push targets that were not connected.
# TYPE longlink_push_offline_total counter
longlink_push_offline_total 3
# HELP longlink_push_recovered_total Pushes redelivered by resume.
# TYPE longlink_push_recovered_total counter
longlink_push_recovered_total 2
# HELP longlink_push_acks_total PUSH_ACK frames received.
# TYPE longlink_push_acks_total counter
longlink_push_acks_total 40
# HELP longlink_push_unrouted_total Unicast push targets on other nodes that could not be reached (with -redis).
# TYPE longlink_push_unrouted_total counter
longlink_push_unrouted_total 6
# HELP longlink_push_no_reply_total Unicast deliveries another node received but did not confirm in time, counted as delivered (with -redis).
# TYPE longlink_push_no_reply_total counter
longlink_push_no_reply_total 7
# HELP longlink_push_route_cached_total Unicast push targets on other nodes delivered where the route cache said, without a route lookup (with -redis).
# TYPE longlink_push_route_cached_total counter
longlink_push_route_cached_total 8
# HELP longlink_push_route_stale_total Unicast push targets whose cached node no longer held them, looked up anew (with -redis).
# TYPE longlink_push_route_stale_total counter
longlink_push_route_stale_total 9
# HELP longlink_cluster_link_requests_total Requests (unicast pushes, kicks) sent to another node on its direct link (with -redis).
# TYPE longlink_cluster_link_requests_total counter
longlink_cluster_link_requests_total 10
# HELP longlink_cluster_link_fallbacks_total Requests to another node that could not use a link and went through Redis (with -redis).
# TYPE longlink_cluster_link_fallbacks_total counter
longlink_cluster_link_fallbacks_total 11
# HELP longlink_redis_errors_total Redis commands that failed: Redis down, failing over or refusing them (with -redis; a nil reply is not a failure).
# TYPE longlink_redis_errors_total counter
longlink_redis_errors_total 12
# HELP longlink_client_rtt_seconds Round trips clients report in PING meta rtt, by the network they say they are on (PING meta net).
# TYPE longlink_client_rtt_seconds histogram
longlink_client_rtt_seconds_bucket{net="cell",le="0.1"} 2
longlink_client_rtt_seconds_bucket{net="cell",le="1"} 3
longlink_client_rtt_seconds_bucket{net="cell",le="+Inf"} 4
longlink_client_rtt_seconds_sum{net="cell"} 7.5
longlink_client_rtt_seconds_count{net="cell"} 4
# HELP longlink_heartbeat_interval_seconds Heartbeat intervals granted at login (LOGIN_ACK hb).
# TYPE longlink_heartbeat_interval_seconds histogram
longlink_heartbeat_interval_seconds_bucket{le="30"} 5
longlink_heartbeat_interval_seconds_bucket{le="60"} 6
longlink_heartbeat_interval_seconds_bucket{le="+Inf"} 6
longlink_heartbeat_interval_seconds_sum 210
longlink_heartbeat_interval_seconds_count 6
# HELP longlink_client_rtt_dropped_total Round-trip reports dropped as malformed (rtt not a number of milliseconds up to 10 minutes).
# TYPE longlink_client_rtt_dropped_total counter
longlink_client_rtt_dropped_total 13
# HELP longlink_biz_requests_total Upstream requests to a business.
# TYPE longlink_biz_requests_total counter
longlink_biz_requests_total{biz="1"} 9
longlink_biz_requests_total{biz="2"} 3
longlink_biz_requests_total{biz="3"} 0
# HELP longlink_biz_results_total Upstream answers by RESPONSE status.
# TYPE longlink_biz_results_total counter
longlink_biz_results_total{biz="1",status="OK"} 8
longlink_biz_results_total{biz="1",status="TIMEOUT"} 1
longlink_biz_results_total{biz="2",status="BIZ_UNAVAILABLE"} 3
# HELP longlink_biz_queued Upstream requests waiting in the business's queue.
# TYPE longlink_biz_queued gauge
longlink_biz_queued{biz="1"} 2
longlink_biz_queued{biz="2"} 0
longlink_biz_queued{biz="3"} 0
# HELP longlink_biz_in_flight Upstream requests being forwarded to the business.
# TYPE longlink_biz_in_flight gauge
longlink_biz_in_flight{biz="1"} 1
longlink_biz_in_flight{biz="2"} 0
longlink_biz_in_flight{biz="3"} 0
# HELP longlink_biz_breaker_open 1 while the business's circuit breaker is open, else 0.
# TYPE longlink_biz_breaker_open gauge
longlink_biz_breaker_open{biz="1"} 0
longlink_biz_breaker_open{biz="2"} 1
longlink_biz_breaker_open{biz="3"} 0
# HELP longlink_biz_latency_seconds Time the business took to answer.
# TYPE longlink_biz_latency_seconds summary
longlink_biz_latency_seconds_sum{biz="1"} 0.5
longlink_biz_latency_seconds_count{biz="1"} 9
longlink_biz_latency_seconds_sum{biz="2"} 0
longlink_biz_latency_seconds_count{biz="2"} 0
longlink_biz_latency_seconds_sum{biz="3"} 0
longlink_biz_latency_seconds_count{biz="3"} 0
# HELP longlink_queue_len Items in a bounded queue.
# TYPE longlink_queue_len gauge
longlink_queue_len{queue="downstream-0"} 5
# HELP longlink_queue_cap Capacity of a bounded queue.
# TYPE longlink_queue_cap gauge
longlink_queue_cap{queue="downstream-0"} 1024
# HELP longlink_queue_dropped_total Items a bounded queue refused because it was full.
# TYPE longlink_queue_dropped_total counter
longlink_queue_dropped_total{queue="downstream-0"} 7
`

func TestRegistryExposesSnapshot(t *testing.T) {
	reg := NewRegistry(sampleSnapshot)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var ours []*dto.MetricFamily
	var text bytes.Buffer
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "longlink_") {
			ours = append(ours, f)
			if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The order of families and series is not part of the contract:
	// compare the sets of lines.
	got, want := sortedLines(text.String()), sortedLines(sampleExposition)
	if !slices.Equal(got, want) {
		for _, l := range want {
			if !slices.Contains(got, l) {
				t.Errorf("missing: %s", l)
			}
		}
		for _, l := range got {
			if !slices.Contains(want, l) {
				t.Errorf("unexpected: %s", l)
			}
		}
	}

	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return lines
}

func TestRegistryScrapeOverHTTP(t *testing.T) {
	srv := httptest.NewServer(promhttp.HandlerFor(NewRegistry(sampleSnapshot), promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		"\nlonglink_connections 3\n",
		"\nlonglink_biz_results_total{biz=\"1\",status=\"OK\"} 8\n",
		"\ngo_goroutines ",
		"\nprocess_resident_memory_bytes ",
		"\nprocess_cpu_seconds_total ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestSnapshotCalledOncePerScrape(t *testing.T) {
	var calls int
	reg := NewRegistry(func() Snapshot { calls++; return sampleSnapshot() })
	for i := 1; i <= 3; i++ {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
		if calls != i {
			t.Fatalf("after %d scrapes snapshot was called %d times", i, calls)
		}
	}
}

func TestCountersNeverGoBackwards(t *testing.T) {
	var mu sync.Mutex
	s := sampleSnapshot()
	reg := NewRegistry(func() Snapshot { mu.Lock(); defer mu.Unlock(); return s })
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	s = sampleSnapshot()
	s.Accepted = 4                     // counter dips
	s.Kicks["IDLE_TIMEOUT"] = 1        // labelled counter dips
	s.Businesses[0].LatencyCount = 2   // summary count dips
	s.Businesses[0].LatencySeconds = 0 // summary sum dips
	s.Connections = 1                  // gauge drops, as gauges may
	mu.Unlock()
	want := map[string]float64{
		"longlink_accepted_total":                     10,
		`longlink_kicks_total{status="IDLE_TIMEOUT"}`: 4,
		`longlink_biz_latency_seconds_count{biz="1"}`: 9,
		`longlink_biz_latency_seconds_sum{biz="1"}`:   0.5,
		"longlink_connections":                        1,
	}
	checkValues(t, reg, want)

	mu.Lock()
	s.Accepted = 11
	mu.Unlock()
	checkValues(t, reg, map[string]float64{"longlink_accepted_total": 11})
}

func TestInvalidLabelCostsOnlyItsSeries(t *testing.T) {
	s := sampleSnapshot()
	s.Kicks["\xff"] = 1
	reg := NewRegistry(func() Snapshot { return s })
	families, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("Gather error = %v, want one about UTF-8", err)
	}
	// Series emitted after the bad one are still there.
	var found bool
	for _, f := range families {
		found = found || f.GetName() == "longlink_queue_dropped_total"
	}
	if !found {
		t.Fatal("a bad label value cost the rest of the scrape")
	}
}

// checkValues gathers reg once and compares the series named in want
// (name{labels} as in the text format, labels sorted).
func checkValues(t *testing.T, reg prometheus.Gatherer, want map[string]float64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]float64)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := labelString(m)
			switch f.GetType() {
			case dto.MetricType_SUMMARY:
				got[f.GetName()+"_count"+labels] = float64(m.GetSummary().GetSampleCount())
				got[f.GetName()+"_sum"+labels] = m.GetSummary().GetSampleSum()
			case dto.MetricType_COUNTER:
				got[f.GetName()+labels] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				got[f.GetName()+labels] = m.GetGauge().GetValue()
			}
		}
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s missing", k)
		} else if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}

func labelString(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range m.GetLabel() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName() + `="` + l.GetValue() + `"`)
	}
	b.WriteByte('}')
	return b.String()
}
