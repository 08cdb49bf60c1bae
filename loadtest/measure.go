package main

import (
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/longlink/longlink/codec"
)

// kind is what a latency measures.
type kind int

const (
	kindRequest  kind = iota // REQUEST intended send time -> RESPONSE received
	kindDelivery             // push intended send time (API call) -> PUSH received
	kindPing                 // PING sent -> PONG received
	kindLogin                // dial start -> LOGIN_ACK received
	kindArrival              // push intended send time -> PUSH reached the socket (kernel receive time; plain TCP on Linux)
	numKinds
)

var kindNames = [numKinds]string{"request", "delivery", "ping", "login", "arrival"}

func (k kind) String() string { return kindNames[k] }

// Histogram range, in microseconds: 1 µs to 5 minutes, 3 significant
// digits. Larger values are clamped to the maximum (and still counted).
const (
	histMinUS  = 1
	histMaxUS  = int64(5 * time.Minute / time.Microsecond)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMinUS, histMaxUS, histDigits) }

// histShards spreads recording over several locks: many reader goroutines
// record at once (a million deliveries per second in the group scenario).
const histShards = 16

// latencyRecorder records one kind of latency. record is safe for
// concurrent use; collect belongs to the sampler.
type latencyRecorder struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram // values since the last collect
		_  [40]byte                // keep shards on separate cache lines
	}
	mu    sync.Mutex
	total *hdrhistogram.Histogram // everything collected so far
}

func newLatencyRecorder() *latencyRecorder {
	l := &latencyRecorder{total: newHist()}
	for i := range l.shards {
		l.shards[i].h = newHist()
	}
	return l
}

// record adds one latency; shard is any number (the connection index), it
// picks the lock.
func (l *latencyRecorder) record(shard int, d time.Duration) {
	s := &l.shards[uint(shard)%histShards]
	s.mu.Lock()
	_ = s.h.RecordValue(histValue(d)) // cannot fail: within range
	s.mu.Unlock()
}

// recordAll adds several latencies under one lock (the deliveries that
// one read brought in).
func (l *latencyRecorder) recordAll(shard int, ds []time.Duration) {
	s := &l.shards[uint(shard)%histShards]
	s.mu.Lock()
	for _, d := range ds {
		_ = s.h.RecordValue(histValue(d)) // cannot fail: within range
	}
	s.mu.Unlock()
}

// histValue is d in the histograms' unit, clamped to their range.
func histValue(d time.Duration) int64 {
	return min(max(int64(d/time.Microsecond), 0), histMaxUS)
}

// collect moves everything recorded since the last call into the total and
// returns it as a new histogram (the interval's latencies).
func (l *latencyRecorder) collect() *hdrhistogram.Histogram {
	iv := newHist()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		if s.h.TotalCount() > 0 {
			iv.Merge(s.h)
			s.h.Reset()
		}
		s.mu.Unlock()
	}
	l.mu.Lock()
	l.total.Merge(iv)
	l.mu.Unlock()
	return iv
}

// snapshot returns a copy of the total (call collect first to include the
// latest values).
func (l *latencyRecorder) snapshot() *hdrhistogram.Histogram {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total.Clone()
}

// Percentiles summarises a histogram, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// percentiles reads h, whose values are microseconds.
func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	v := h.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(v[50]),
		P90:   ms(v[90]),
		P99:   ms(v[99]),
		P999:  ms(v[99.9]),
		Max:   ms(h.Max()),
	}
}

// counters are the generator's own counts. Every field is updated
// atomically from any goroutine.
type counters struct {
	dials       atomic.Int64 // dial attempts
	dialErrors  atomic.Int64 // dial failed
	logins      atomic.Int64 // LOGIN_ACK OK
	loginErrors atomic.Int64 // LOGIN failed: bad LOGIN_ACK, timeout, closed
	up          atomic.Int64 // logged-in connections now (gauge)
	peakUp      atomic.Int64 // highest value of up
	reconnects  atomic.Int64 // mixed: deliberate close + new login
	resumed     atomic.Int64 // reconnects whose LOGIN_ACK said resumed=1
	disconnects atomic.Int64 // connections the server closed without a KICK
	kicks       [codec.NumStatus + 1]atomic.Int64
	protoErrors atomic.Int64 // undecodable or unexpected frames
	writeErrors atomic.Int64 // failed writes

	requests   atomic.Int64 // REQUEST frames sent
	responses  atomic.Int64 // RESPONSE frames with status OK
	respErrors [codec.NumStatus + 1]atomic.Int64
	unmatched  atomic.Int64 // RESPONSE with a seq we did not wait for (or gave up on)
	unsent     atomic.Int64 // scheduled requests or pushes with no connection to use
	reqFailed  atomic.Int64 // -sdk: Request calls that failed other than by a status (ErrDisconnected, ErrQueueFull...)

	pings atomic.Int64 // PING sent
	pongs atomic.Int64 // PONG received

	pushCalls     atomic.Int64 // push API calls made
	pushErrors    atomic.Int64 // push API calls that failed
	pushDelivered atomic.Int64 // deliveries the API reported
	pushOffline   atomic.Int64 // devices the API reported offline
	expected      atomic.Int64 // deliveries we wait for
	deliveries    atomic.Int64 // stamped PUSH frames of this run received
	foreign       atomic.Int64 // PUSH frames without our stamp (not counted)
	acks          atomic.Int64 // PUSH_ACK sent

	firstPush    atomic.Int64 // Unix nanos of the first push API call, 0 = none yet
	lastDelivery atomic.Int64 // Unix nanos of the last delivery
}

// kickErrors is the number of KICKs received, by any status.
func (c *counters) kickTotal() int64 {
	var n int64
	for i := range c.kicks {
		n += c.kicks[i].Load()
	}
	return n
}

func (c *counters) respErrorTotal() int64 {
	var n int64
	for i := range c.respErrors {
		n += c.respErrors[i].Load()
	}
	return n
}

// addUp moves the connection gauge and keeps its peak.
func (c *counters) addUp(d int64) {
	v := c.up.Add(d)
	for {
		p := c.peakUp.Load()
		if v <= p || c.peakUp.CompareAndSwap(p, v) {
			return
		}
	}
}

// statusIndex maps a status to its slot in the per-status arrays; unknown
// codes share the last one.
func statusIndex(s codec.Status) int {
	if s < codec.NumStatus {
		return int(s)
	}
	return codec.NumStatus
}

func statusName(i int) string {
	if i < codec.NumStatus {
		return codec.Status(i).String()
	}
	return "UNKNOWN"
}

// Point is one second of the run, for the HTML charts.
type Point struct {
	T          float64                `json:"t"`     // seconds since the start of the run
	Phase      string                 `json:"phase"` // connect, load, drain
	Conns      int64                  `json:"conns"` // logged-in connections at the end of the second
	Logins     int64                  `json:"logins_per_sec"`
	Requests   int64                  `json:"requests_per_sec"`
	Responses  int64                  `json:"responses_per_sec"`
	Deliveries int64                  `json:"deliveries_per_sec"`
	Pongs      int64                  `json:"pongs_per_sec"`
	Errors     int64                  `json:"errors_per_sec"`
	Latency    map[string]Percentiles `json:"latency_ms,omitempty"` // by kind, this second only
}
