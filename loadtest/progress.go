package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress shows a bar per phase on stderr: the connect phase counts
// connections up against -conns, the load phase counts seconds (group:
// pushes); the description carries the live rates and errors. It reads the
// counters on its own ticker, so connections never touch the bar.
type progress struct {
	mu       sync.Mutex // update runs on the ticker and at phase changes
	r        *runner
	w        io.Writer
	bar      *progressbar.ProgressBar
	phase    string    // the phase update saw last
	barPhase string    // the phase bar belongs to
	since    time.Time // start of the phase
}

func newProgress(r *runner, w io.Writer) *progress { return &progress{r: r, w: w} }

// newBar replaces the bar with one for p.phase.
func (p *progress) newBar(max int64, unit string) {
	p.barPhase = p.phase
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
	p.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionShowDescriptionAtLineEnd(),
	)
}

// loop refreshes the bar until ctx is done.
func (p *progress) loop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.update()
		}
	}
}

func (p *progress) update() {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, c := p.r, &p.r.c
	phase := r.getPhase()
	if phase == "tokens" {
		phase = "connect" // one bar for both
	}
	if phase != p.phase {
		p.phase = phase
		p.since = time.Now()
		switch phase {
		case "connect":
			p.newBar(int64(r.cfg.Conns), "conns")
		case "load":
			if r.cfg.Scenario == "group" {
				p.newBar(int64(r.cfg.Pushes), "pushes")
			} else {
				p.newBar(max(1, int64(r.cfg.Duration/time.Second)), "s")
			}
		case "drain":
			if lost, missing := r.outstanding(); lost+missing > 0 {
				p.newBar(-1, "")
			}
		}
	}
	if p.bar == nil || p.barPhase != phase {
		return
	}
	last := r.lastPoint()
	errs := r.liveErrors()
	var p99 float64
	if l, ok := last.Latency[r.mainKind().String()]; ok {
		p99 = l.P99
	}
	switch phase {
	case "connect":
		if r.getPhase() == "tokens" {
			p.bar.Describe("preparing tokens")
			break
		}
		logins := c.logins.Load()
		_ = p.bar.Set64(logins + c.dialErrors.Load() + c.loginErrors.Load())
		rate := float64(logins) / max(time.Since(p.since).Seconds(), 0.001)
		p.bar.Describe(fmt.Sprintf("connect: up %d, %.0f logins/s, errors %d", c.up.Load(), rate, errs))
	case "load":
		if r.cfg.Scenario == "group" {
			_ = p.bar.Set64(c.pushCalls.Load())
		} else {
			_ = p.bar.Set64(int64(time.Since(r.loadStart) / time.Second))
		}
		var rates string
		switch r.cfg.Scenario {
		case "hold":
			rates = fmt.Sprintf("PONG %d/s, ping", last.Pongs)
		case "request":
			rates = fmt.Sprintf("req %d/s, resp %d/s, request", last.Requests, last.Responses)
		case "push", "group":
			rates = fmt.Sprintf("deliveries %d/s, delivery", last.Deliveries)
		default:
			rates = fmt.Sprintf("req %d/s, resp %d/s, deliveries %d/s, request", last.Requests, last.Responses, last.Deliveries)
		}
		p.bar.Describe(fmt.Sprintf("load: up %d, %s p99 %.1fms, errors %d", c.up.Load(), rates, p99, errs))
	case "drain":
		lost, missing := r.outstanding()
		p.bar.Describe(fmt.Sprintf("drain: waiting for %d responses, %d deliveries", lost, missing))
	}
}

// finish ends the last bar.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
