package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// openLoop fires events on a fixed schedule, open loop: event i is due at
// start + i/rate whatever happened to earlier events, and fire receives that
// intended time, so a latency measured from it includes any delay of the
// generator or the server (no coordinated omission).
//
// The events are dealt to lanes goroutines (event i to lane i % lanes); a
// lane sleeps until its next event is due and, when it is late, fires the
// overdue events back to back. fire may block (an HTTP call): that lane then
// falls behind and catches up, the others carry on.
//
// It stops after n events (n <= 0: no limit), at end (events due at or after
// end are not fired), or when ctx is done, and returns the number fired.
// With rate <= 0 the events are unpaced: each lane fires back to back and
// the intended time is the time of the call; n must then be positive or end
// set.
func openLoop(ctx context.Context, rate float64, n int64, lanes int, end time.Time, fire func(i int64, intended time.Time)) int64 {
	if lanes < 1 {
		lanes = 1
	}
	if n > 0 && int64(lanes) > n {
		lanes = int(n)
	}
	start := time.Now()
	var fired atomic.Int64
	var next atomic.Int64 // unpaced: the next event to take
	var wg sync.WaitGroup
	for k := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timer := time.NewTimer(time.Hour)
			timer.Stop()
			defer timer.Stop()
			for j := int64(0); ; j++ {
				if ctx.Err() != nil {
					return
				}
				var i int64
				var intended time.Time
				if rate > 0 {
					i = int64(k) + j*int64(lanes)
					intended = start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
				} else {
					i = next.Add(1) - 1
					intended = time.Now()
				}
				if n > 0 && i >= n {
					return
				}
				if !end.IsZero() && !intended.Before(end) {
					return
				}
				if d := time.Until(intended); d > 0 {
					timer.Reset(d)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				}
				fire(i, intended)
				fired.Add(1)
			}
		}()
	}
	wg.Wait()
	return fired.Load()
}
