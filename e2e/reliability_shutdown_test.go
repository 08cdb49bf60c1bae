package e2e

// Fault-injection tests of docs/reliability.md, part 4: the node going
// away (SIGTERM while a request is in flight) and the timing of the login
// timeout.

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// TestReliabilityGracefulShutdown: SIGTERM while a request to a slow
// business (500ms) is in flight. The node stops accepting at once
// (/readyz says draining, new connections are refused), lets the request
// finish and delivers its RESPONSE, then sends KICK(SHUTTING_DOWN),
// closes, and exits 0, well within -drain-timeout.
func TestReliabilityGracefulShutdown(t *testing.T) {
	const work = 500 * time.Millisecond
	started := make(chan struct{}, 1)
	be := newBackend(t, func(b *backend, w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-time.After(work):
		case <-b.hang:
		}
		_, _ = w.Write([]byte("finished"))
	})
	s := startServer(t, "-drain-timeout", "5s", "-biz", "8="+be.URL+",timeout=3s")
	busy, _ := loggedIn(t, s, "dev-sd-busy")
	idle, _ := loggedIn(t, s, "dev-sd-idle")
	busy.send(codec.Header{Op: codec.OpRequest, Biz: 8, Seq: 77}, nil, []byte("work"))
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the business")
	}
	term := time.Now()
	if err := s.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// While the request is in flight the node is draining: not ready, and
	// refusing new connections.
	checkFor(t, time.Second, 10*time.Millisecond, func() error {
		var st struct{ Status string }
		if code := s.api("GET", "/readyz", nil, &st); code != 503 || st.Status != "draining" {
			return errors.New("readyz still ready")
		}
		return nil
	})
	nc, err := net.DialTimeout("tcp", s.TCP, time.Second)
	if err == nil {
		// Accepted by the kernel before the listener closed: it must be
		// told to go away, not served.
		c := &client{t: t, nc: nc}
		f, rerr := c.tryRead(2 * time.Second)
		if rerr == nil && (f.Op != codec.OpKick || f.Status != codec.StatusShuttingDown) {
			t.Errorf("new connection during the drain got %v %v", f.Op, f.Status)
		}
		nc.Close()
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial during the drain: %v, want refused", err)
	}
	if el := time.Since(term); el >= work {
		t.Fatalf("the drain checks took %v, longer than the in-flight request", el)
	}

	// The in-flight request is answered, then the KICK, then the close.
	var frames []codec.Frame
	var respAt time.Duration
	for {
		f, err := busy.tryRead(5 * time.Second)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("busy connection still open %v after SIGTERM", time.Since(term))
			}
			break
		}
		if f.Op == codec.OpResponse {
			respAt = time.Since(term)
		}
		frames = append(frames, f)
	}
	ok := len(frames) == 2 &&
		frames[0].Op == codec.OpResponse && frames[0].Seq == 77 && frames[0].Status == codec.StatusOK && string(frames[0].Body) == "finished" &&
		frames[1].Op == codec.OpKick && frames[1].Status == codec.StatusShuttingDown && metaString(frames[1], "reason") != ""
	if !ok {
		var got []string
		for _, f := range frames {
			got = append(got, f.Op.String()+" "+f.Status.String())
		}
		t.Errorf("busy connection got %v, want [RESPONSE OK (seq 77, %q), KICK SHUTTING_DOWN] then the close", got, "finished")
	} else if respAt > work+slack {
		t.Errorf("RESPONSE %v after SIGTERM, want about %v", respAt, work)
	}
	idle.kickedWith(codec.StatusShuttingDown, 5*time.Second)
	select {
	case err := <-s.Exited():
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.Logs())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
	if el := time.Since(term); el > 5*time.Second {
		t.Errorf("exit %v after SIGTERM, over the 5s drain timeout", el)
	}
	if logs := s.Logs(); strings.Contains(logs, "DATA RACE") || strings.Contains(logs, "panic:") {
		t.Errorf("gateway reported a race or panic:\n%s", logs)
	}
}

// TestReliabilityLoginTimeoutNotEarly: docs/protocol.md closes a connection
// that has not logged in *within* the login timeout, so none may be
// kicked before it. Connections dialed at staggered moments, measured
// from the client's side (the server accepts a little later still).
func TestReliabilityLoginTimeoutNotEarly(t *testing.T) {
	const loginTimeout = time.Second
	s := startServer(t, "-login-timeout", loginTimeout.String())
	const n = 8
	type result struct {
		i  int
		el time.Duration
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		c := dial(t, s.TCP)
		start := time.Now()
		go func(i int) {
			f, err := c.tryRead(5 * time.Second)
			if err != nil || f.Op != codec.OpKick || f.Status != codec.StatusNotLoggedIn {
				results <- result{i, -1}
				return
			}
			results <- result{i, time.Since(start)}
		}(i)
		time.Sleep(loginTimeout / 8 / n * 3) // spread over three wheel ticks
	}
	early := 0
	var els []time.Duration
	for range n {
		r := <-results
		if r.el < 0 {
			t.Fatalf("connection %d: no KICK NOT_LOGGED_IN", r.i)
		}
		els = append(els, r.el)
		if r.el < loginTimeout {
			early++
		}
		if r.el > loginTimeout+slack {
			t.Errorf("connection %d kicked %v after dial, want about %v", r.i, r.el, loginTimeout)
		}
	}
	t.Logf("kicked after %v..%v", pct(els, 0), maxOf(els))
	if early > 0 {
		t.Errorf("%d of %d connections were kicked before the %v login timeout (earliest after %v)", early, n, loginTimeout, pct(els, 0))
	}
}
