package metrics

import (
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a registry with the Go runtime collector, the process
// collector and a collector that calls snapshot once per scrape and exposes
// it as the longlink_* series listed in the package documentation.
func NewRegistry(snapshot func() Snapshot) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(snapshot),
	)
	return reg
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("longlink_"+name, help, labels, nil)
}

var (
	descConnections    = desc("connections", "Open connections, logged in or not.")
	descLoggedIn       = desc("logged_in", "Connections past LOGIN.")
	descAccepted       = desc("accepted_total", "Connections accepted.")
	descRefused        = desc("refused_total", "Connections refused at accept: at the connection limit, draining, per-source limits, or too many TLS handshakes.")
	descRefusedSource  = desc("refused_source_total", "Connections refused at accept by a per-source limit.")
	descThrottled      = desc("throttled_frames_total", "Frames over their connection's frame rate: answered OVERLOADED or ignored.")
	descRateLimited    = desc("rate_limited_total", "REQUESTs answered OVERLOADED by the per-connection rate limit.")
	descLogins         = desc("logins_total", "Successful logins.")
	descLoginFailures  = desc("login_failures_total", "Failed logins.")
	descRefreshes      = desc("refreshes_total", "REFRESHes that renewed a session's token.")
	descRefreshFails   = desc("refresh_failures_total", "REFRESHes refused; the session went on with its old expiry.")
	descFramesIn       = desc("frames_in_total", "Frames read from clients.")
	descFramesOut      = desc("frames_out_total", "Frames written to clients.")
	descBytesIn        = desc("bytes_in_total", "Bytes read from clients.")
	descBytesOut       = desc("bytes_out_total", "Bytes written to clients.")
	descWrites         = desc("writes_total", "Write system calls to client sockets; frames_out_total / writes_total is the coalescing ratio.")
	descKicks          = desc("kicks_total", "KICK frames sent, by status.", "status")
	descCloses         = desc("closes_total", "Connections closed, by reason: client_closed, read_error, write_error, idle, kicked, slow_consumer, shutdown.", "reason")
	descPushRequests   = desc("push_requests_total", "Push API calls accepted (unicast, group and broadcast).")
	descPushDeliveries = desc("push_deliveries_total", "PUSH frames handed to connections.")
	descPushOffline    = desc("push_offline_total", "Unicast push targets that were not connected.")
	descPushRecovered  = desc("push_recovered_total", "Pushes redelivered by resume.")
	descPushAcks       = desc("push_acks_total", "PUSH_ACK frames received.")
	descPushUnrouted   = desc("push_unrouted_total", "Unicast push targets on other nodes that could not be reached (with -redis).")
	descPushNoReply    = desc("push_no_reply_total", "Unicast deliveries another node received but did not confirm in time, counted as delivered (with -redis).")
	descPushCached     = desc("push_route_cached_total", "Unicast push targets on other nodes delivered where the route cache said, without a route lookup (with -redis).")
	descPushStale      = desc("push_route_stale_total", "Unicast push targets whose cached node no longer held them, looked up anew (with -redis).")
	descLinkRequests   = desc("cluster_link_requests_total", "Requests (unicast pushes, kicks) sent to another node on its direct link (with -redis).")
	descLinkFallbacks  = desc("cluster_link_fallbacks_total", "Requests to another node that could not use a link and went through Redis (with -redis).")
	descClientRTT      = desc("client_rtt_seconds", "Round trips clients report in PING meta rtt, by the network they say they are on (PING meta net).", "net")
	descHeartbeats     = desc("heartbeat_interval_seconds", "Heartbeat intervals granted at login (LOGIN_ACK hb).")
	descRTTDropped     = desc("client_rtt_dropped_total", "Round-trip reports dropped as malformed (rtt not a number of milliseconds up to 10 minutes).")
	descRedisErrors    = desc("redis_errors_total", "Redis commands that failed: Redis down, failing over or refusing them (with -redis; a nil reply is not a failure).")
	descBizRequests    = desc("biz_requests_total", "Upstream requests to a business.", "biz")
	descBizResults     = desc("biz_results_total", "Upstream answers by RESPONSE status.", "biz", "status")
	descBizQueued      = desc("biz_queued", "Upstream requests waiting in the business's queue.", "biz")
	descBizInFlight    = desc("biz_in_flight", "Upstream requests being forwarded to the business.", "biz")
	descBizBreakerOpen = desc("biz_breaker_open", "1 while the business's circuit breaker is open, else 0.", "biz")
	descBizLatency     = desc("biz_latency_seconds", "Time the business took to answer.", "biz")
	descQueueLen       = desc("queue_len", "Items in a bounded queue.", "queue")
	descQueueCap       = desc("queue_cap", "Capacity of a bounded queue.", "queue")
	descQueueDropped   = desc("queue_dropped_total", "Items a bounded queue refused because it was full.", "queue")

	allDescs = []*prometheus.Desc{
		descConnections, descLoggedIn, descAccepted, descRefused, descRefusedSource, descThrottled, descRateLimited, descLogins,
		descLoginFailures, descRefreshes, descRefreshFails, descFramesIn, descFramesOut, descBytesIn, descBytesOut, descWrites,
		descKicks, descCloses, descPushRequests, descPushDeliveries, descPushOffline,
		descPushRecovered, descPushAcks, descPushUnrouted, descPushNoReply, descPushCached, descPushStale, descLinkRequests, descLinkFallbacks, descRedisErrors, descClientRTT, descRTTDropped, descHeartbeats, descBizRequests, descBizResults,
		descBizQueued, descBizInFlight, descBizBreakerOpen, descBizLatency,
		descQueueLen, descQueueCap, descQueueDropped,
	}
)

// collector is the prometheus.Collector over Snapshot.
type collector struct {
	snapshot func() Snapshot

	mu sync.Mutex // guards high and serialises Collect
	// high is the highest value emitted per counter series, so that
	// counters never go backwards. Its size is bounded by the number of
	// series the gateway has (businesses × statuses, queues, kick statuses).
	high map[series]float64
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(snapshot func() Snapshot) *collector {
	return &collector{snapshot: snapshot, high: make(map[series]float64)}
}

// Describe sends every descriptor, which makes this a checked collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect takes one snapshot and emits it.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()

	c.mu.Lock()
	defer c.mu.Unlock()

	gauge(ch, descConnections, float64(s.Connections))
	gauge(ch, descLoggedIn, float64(s.LoggedIn))
	c.counter(ch, descAccepted, s.Accepted)
	c.counter(ch, descRefused, s.Refused)
	c.counter(ch, descRefusedSource, s.RefusedSource)
	c.counter(ch, descThrottled, s.Throttled)
	c.counter(ch, descRateLimited, s.RateLimited)
	c.counter(ch, descLogins, s.Logins)
	c.counter(ch, descLoginFailures, s.LoginFail)
	c.counter(ch, descRefreshes, s.Refreshes)
	c.counter(ch, descRefreshFails, s.RefreshFail)
	c.counter(ch, descFramesIn, s.FramesIn)
	c.counter(ch, descFramesOut, s.FramesOut)
	c.counter(ch, descBytesIn, s.BytesIn)
	c.counter(ch, descBytesOut, s.BytesOut)
	c.counter(ch, descWrites, s.Writes)
	for status, n := range s.Kicks {
		c.counter(ch, descKicks, n, status)
	}
	for reason, n := range s.Closes {
		c.counter(ch, descCloses, n, reason)
	}

	c.counter(ch, descPushRequests, s.Push.Requests)
	c.counter(ch, descPushDeliveries, s.Push.Deliveries)
	c.counter(ch, descPushOffline, s.Push.Offline)
	c.counter(ch, descPushRecovered, s.Push.Recovered)
	c.counter(ch, descPushAcks, s.Push.Acks)
	c.counter(ch, descPushUnrouted, s.Push.Unrouted)
	c.counter(ch, descPushNoReply, s.Push.NoReply)
	c.counter(ch, descPushCached, s.Push.RouteCached)
	c.counter(ch, descPushStale, s.Push.RouteStale)
	c.counter(ch, descLinkRequests, s.Cluster.LinkRequests)
	c.counter(ch, descLinkFallbacks, s.Cluster.LinkFallbacks)
	c.counter(ch, descRedisErrors, s.Cluster.RedisErrors)

	for _, r := range s.ClientRTT {
		histogram(ch, descClientRTT, r, r.Net)
	}
	c.counter(ch, descRTTDropped, s.RTTDropped)
	if len(s.Heartbeats.Bounds) > 0 {
		histogram(ch, descHeartbeats, s.Heartbeats)
	}

	for _, b := range s.Businesses {
		biz := strconv.FormatUint(uint64(b.ID), 10)
		c.counter(ch, descBizRequests, b.Requests, biz)
		for status, n := range b.Results {
			c.counter(ch, descBizResults, n, biz, status)
		}
		gauge(ch, descBizQueued, float64(b.Queued), biz)
		gauge(ch, descBizInFlight, float64(b.InFlight), biz)
		open := 0.0
		if b.Breaker == "open" {
			open = 1
		}
		gauge(ch, descBizBreakerOpen, open, biz)
		// A summary without quantiles is exactly the _sum and _count pair;
		// both halves are counters and get the same clamp.
		count := c.monotonic(newSeries(descBizLatency, "count", biz), float64(b.LatencyCount))
		sum := c.monotonic(newSeries(descBizLatency, "sum", biz), b.LatencySeconds)
		m, err := prometheus.NewConstSummary(descBizLatency, uint64(count), sum, nil, biz)
		emit(ch, descBizLatency, m, err)
	}

	for _, q := range s.Queues {
		gauge(ch, descQueueLen, float64(q.Len), q.Name)
		gauge(ch, descQueueCap, float64(q.Cap), q.Name)
		c.counter(ch, descQueueDropped, q.Dropped, q.Name)
	}
}

// histogram emits h as a histogram series. Its counts come from atomic
// counters that only grow, read once per scrape.
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, h Histogram, labels ...string) {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, le := range h.Bounds {
		buckets[le] = h.Cumulative[i]
	}
	m, err := prometheus.NewConstHistogram(d, h.Count, h.Sum, buckets, labels...)
	emit(ch, d, m, err)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
	emit(ch, d, m, err)
}

// counter emits a counter series, never lower than it was last emitted.
// c.mu must be held.
func (c *collector) counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	f := c.monotonic(newSeries(d, "", labels...), float64(v))
	m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, f, labels...)
	emit(ch, d, m, err)
}

// monotonic returns the larger of v and the highest value seen for key, and
// remembers it. c.mu must be held.
func (c *collector) monotonic(key series, v float64) float64 {
	if hi, ok := c.high[key]; ok && hi > v {
		return hi
	}
	c.high[key] = v
	return v
}

// series identifies one value of one series: its descriptor, a part (for
// metrics with several values, like a summary's sum and count) and its
// label values joined by 0xff, a byte valid UTF-8 never contains.
type series struct {
	desc   *prometheus.Desc
	part   string
	labels string
}

func newSeries(d *prometheus.Desc, part string, labels ...string) series {
	return series{desc: d, part: part, labels: strings.Join(labels, "\xff")}
}

// emit sends m, or, when building m failed (a label value that is not valid
// UTF-8), an invalid metric: the registry reports that one series as an
// error and the collection goes on. (A Must* constructor would panic, and
// the registry's recovery would drop every series after it.)
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, m prometheus.Metric, err error) {
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}
