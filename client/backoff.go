package client

import (
	"math"
	"math/rand/v2"
	"time"
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Multiplier < 1 {
		b.Multiplier = DefaultMultiplier
	}
	return b
}

// Ceiling is the largest delay of attempt n (counting from 0):
// min(Max, Initial*Multiplier^n), with zero fields at their defaults.
func (b Backoff) Ceiling(attempt int) time.Duration {
	b = b.withDefaults()
	if attempt < 0 {
		attempt = 0
	}
	c := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt))
	if c >= float64(b.Max) || math.IsInf(c, 0) || math.IsNaN(c) {
		return b.Max
	}
	return time.Duration(c)
}

// Delay is the wait before attempt n: uniformly random in [0, Ceiling(n)]
// ("full jitter"), so clients cut off together do not come back together.
func (b Backoff) Delay(attempt int) time.Duration {
	return time.Duration(rand.Int64N(int64(b.Ceiling(attempt)) + 1))
}
