package netquality

import (
	"testing"
	"time"
)

// TestReport: reports land in their net's bucket (unknown nets in
// "other"), the histogram is cumulative with the sum in seconds, and a
// round trip that is not a number of milliseconds up to MaxRTT is dropped.
func TestReport(t *testing.T) {
	var r RTT
	for _, c := range []struct{ rtt, net string }{
		{"8", "wifi"}, {"120", "wifi"}, {"30000", "wifi"}, // 10 ms bucket, 250 ms bucket, above every bound
		{"60", "cell"}, {"5", "5g"}, {"5", ""},
	} {
		if !r.Report([]byte(c.rtt), []byte(c.net)) {
			t.Fatalf("report %v refused", c)
		}
	}
	for _, bad := range []string{"", "-1", "1.5", "abc", "600001", "99999999999"} {
		if r.Report([]byte(bad), []byte("wifi")) {
			t.Errorf("rtt %q accepted", bad)
		}
	}
	if r.Dropped() != 6 {
		t.Errorf("dropped %d, want 6", r.Dropped())
	}
	s := r.Stats()
	wifi, cell, other := s[0], s[1], s[3]
	if wifi.Net != "wifi" || wifi.Count != 3 || wifi.Cumulative[0] != 1 || wifi.Cumulative[4] != 2 || wifi.Cumulative[len(Bounds)-1] != 2 || wifi.Sum != 30.128 {
		t.Errorf("wifi = %+v", wifi)
	}
	if cell.Count != 1 || cell.Cumulative[2] != 0 || cell.Cumulative[3] != 1 {
		t.Errorf("cell = %+v", cell)
	}
	if other.Net != "other" || other.Count != 2 || other.Cumulative[0] != 2 {
		t.Errorf("other = %+v", other)
	}
}

// BenchmarkReport: a report costs no allocation.
func BenchmarkReport(b *testing.B) {
	var r RTT
	rtt, net := []byte("87"), []byte("cell")
	b.ReportAllocs()
	for b.Loop() {
		r.Report(rtt, net)
	}
}

// TestIntervals: granted intervals land in their bucket, cumulative, with
// their sum.
func TestIntervals(t *testing.T) {
	var h Intervals
	h.Granted(30 * time.Second)
	h.Granted(30 * time.Second)
	h.Granted(270 * time.Second)
	h.Granted(time.Hour) // above every bound
	cum, n, sum := h.Stats()
	if n != 4 || sum != 3930 || cum[2] != 0 || cum[3] != 2 || cum[7] != 2 || cum[8] != 3 || cum[len(IntervalBounds)-1] != 3 {
		t.Errorf("Stats = %v, %d, %v", cum, n, sum)
	}
}
