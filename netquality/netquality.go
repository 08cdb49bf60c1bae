// Package netquality aggregates what clients report of their network, and
// the heartbeat intervals the node grants them (Intervals):
// PING meta rtt (the client's last PING→PONG round trip, in decimal
// milliseconds) and net (wifi, cell, eth, other). The reports go into one
// fixed-bucket histogram per network type, a handful of atomic counters
// for the whole node: no state per connection, and a report costs a few
// atomic adds, so an operator sees round trips by network without the
// gateway keeping anything for each device.
package netquality

import (
	"sync/atomic"
	"time"
)

// Nets are the network types, in the order of Stats; a report with
// another net, or none, counts as "other".
var Nets = [...]string{"wifi", "cell", "eth", "other"}

const other = len(Nets) - 1

// Bounds are the histogram's upper bounds, in seconds.
var Bounds = [...]float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// MaxRTT is the largest round trip a report may give: anything above is
// not a measurement (a client that was suspended) and is dropped.
const MaxRTT = 10 * time.Minute

// histogram is one network's: counts per bucket (the last is above every
// bound), the sum of the round trips in microseconds.
type histogram struct {
	buckets [len(Bounds) + 1]atomic.Uint64
	sumUS   atomic.Uint64
}

// RTT aggregates reports. The zero value is ready.
type RTT struct {
	nets    [len(Nets)]histogram
	dropped atomic.Uint64
}

// Report records one PING's meta values rtt and net (nil when absent).
// It reports false, recording nothing, when rtt is not a decimal number
// of milliseconds up to MaxRTT.
func (r *RTT) Report(rtt, net []byte) bool {
	ms, ok := parseMS(rtt)
	if !ok {
		r.dropped.Add(1)
		return false
	}
	h := &r.nets[netIndex(net)]
	h.buckets[bucket(Bounds[:], float64(ms)/1000)].Add(1)
	h.sumUS.Add(ms * 1000)
	return true
}

// Dropped counts the reports whose rtt was not a valid round trip.
func (r *RTT) Dropped() uint64 { return r.dropped.Load() }

func netIndex(net []byte) int {
	for i, n := range Nets[:other] {
		if string(net) == n {
			return i
		}
	}
	return other
}

// parseMS parses a decimal count of milliseconds up to MaxRTT.
func parseMS(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= uint64(MaxRTT/time.Millisecond)
}

// Stats is one network's histogram at one instant, in Prometheus' shape.
type Stats struct {
	Net        string
	Cumulative [len(Bounds)]uint64 // reports at or under each bound
	Count      uint64              // every report, the ones above the last bound included
	Sum        float64             // seconds
}

// Stats returns every network's histogram, in the order of Nets.
func (r *RTT) Stats() []Stats {
	out := make([]Stats, len(Nets))
	for i := range r.nets {
		h := &r.nets[i]
		s := Stats{Net: Nets[i], Sum: float64(h.sumUS.Load()) / 1e6}
		s.Count = cumulate(h.buckets[:], s.Cumulative[:])
		out[i] = s
	}
	return out
}

// IntervalBounds are the upper bounds, in seconds, of the histogram of
// heartbeat intervals granted at login.
var IntervalBounds = [...]float64{5, 10, 15, 30, 60, 120, 180, 240, 300, 600}

// Intervals counts the heartbeat intervals granted at login (LOGIN_ACK
// hb), for longlink_heartbeat_interval_seconds: how often the node's
// devices are asked to wake up. The zero value is ready.
type Intervals struct {
	buckets [len(IntervalBounds) + 1]atomic.Uint64
	sumS    atomic.Uint64
}

// Granted records one login's interval.
func (h *Intervals) Granted(d time.Duration) {
	secs := uint64(d / time.Second)
	h.buckets[bucket(IntervalBounds[:], float64(secs))].Add(1)
	h.sumS.Add(secs)
}

// Stats returns the histogram: reports at or under each bound of
// IntervalBounds, the count and the sum in seconds.
func (h *Intervals) Stats() (cumulative [len(IntervalBounds)]uint64, count uint64, sum float64) {
	count = cumulate(h.buckets[:], cumulative[:])
	return cumulative, count, float64(h.sumS.Load())
}

// bucket is the index of the first of bounds v is at or under, or
// len(bounds) when it is above them all.
func bucket(bounds []float64, v float64) int {
	for i, le := range bounds {
		if v <= le {
			return i
		}
	}
	return len(bounds)
}

// cumulate fills cumulative with the running totals of buckets (one more
// bucket than bounds: the last is above them all) and returns the total.
func cumulate(buckets []atomic.Uint64, cumulative []uint64) uint64 {
	var n uint64
	for b := range buckets {
		n += buckets[b].Load()
		if b < len(cumulative) {
			cumulative[b] = n
		}
	}
	return n
}
