package client

import (
	"testing"
	"time"
)

func TestBackoffCeiling(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		if got := b.Ceiling(i); got != w*time.Millisecond {
			t.Errorf("Ceiling(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	// Huge attempts must not overflow.
	if got := b.Ceiling(10000); got != time.Second {
		t.Errorf("Ceiling(10000) = %v, want the cap", got)
	}
}

func TestBackoffDefaults(t *testing.T) {
	var b Backoff
	if got := b.Ceiling(0); got != DefaultBackoffInitial {
		t.Errorf("Ceiling(0) = %v, want %v", got, DefaultBackoffInitial)
	}
	if got := b.Ceiling(100); got != DefaultBackoffMax {
		t.Errorf("Ceiling(100) = %v, want %v", got, DefaultBackoffMax)
	}
	// Max below Initial is raised to Initial.
	b = Backoff{Initial: time.Second, Max: time.Millisecond}
	if got := b.Ceiling(3); got != time.Second {
		t.Errorf("Ceiling with Max < Initial = %v, want 1s", got)
	}
}

// TestBackoffJitter checks that delays stay within [0, ceiling] and are
// spread over the whole range (full jitter), not clustered at the top.
func TestBackoffJitter(t *testing.T) {
	b := Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, Multiplier: 2}
	for attempt := 0; attempt < 8; attempt++ {
		ceil := b.Ceiling(attempt)
		var low, high int
		seen := make(map[time.Duration]bool)
		const n = 2000
		for range n {
			d := b.Delay(attempt)
			if d < 0 || d > ceil {
				t.Fatalf("Delay(%d) = %v outside [0, %v]", attempt, d, ceil)
			}
			if d < ceil/4 {
				low++
			}
			if d > ceil*3/4 {
				high++
			}
			seen[d] = true
		}
		// Uniform: about a quarter each; allow a wide margin.
		if low < n/8 || high < n/8 {
			t.Errorf("attempt %d: %d below a quarter, %d above three quarters of %v: not uniform", attempt, low, high, ceil)
		}
		if len(seen) < n/2 {
			t.Errorf("attempt %d: only %d distinct delays out of %d", attempt, len(seen), n)
		}
	}
}
