package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

type eventLog struct {
	mu  sync.Mutex
	evs []map[string]any
}

func (l *eventLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b struct{ Events []map[string]any }
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	l.mu.Lock()
	l.evs = append(l.evs, b.Events...)
	l.mu.Unlock()
}

func (l *eventLog) find(typ, device string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.evs {
		if e["type"] == typ && e["device"] == device {
			return e
		}
	}
	return nil
}

func TestConnectionEvents(t *testing.T) {
	log := &eventLog{}
	sink := httptest.NewServer(log)
	defer sink.Close()
	s := startServer(t, "-events-url", sink.URL)
	c, ack := loggedIn(t, s, "dev-ev")
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		e := log.find("connect", "dev-ev")
		if e == nil {
			return fmt.Errorf("no connect event")
		}
		if e["conn"] != metaString(ack, "conn") || e["node"] != s.Node {
			return fmt.Errorf("connect event %v", e)
		}
		return nil
	})
	// An idle kick is reported with its reason.
	var kicked struct{ Kicked bool }
	s.api("DELETE", "/v1/devices/dev-ev", nil, &kicked)
	if f := c.read(5 * time.Second); f.Op != codec.OpKick {
		t.Fatalf("got %v", f.Op)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		e := log.find("disconnect", "dev-ev")
		if e == nil {
			return fmt.Errorf("no disconnect event")
		}
		if e["reason"] != "UNAUTHORIZED" {
			return fmt.Errorf("disconnect reason %v", e["reason"])
		}
		return nil
	})
	// A client that just leaves is reported as CLOSED.
	c2, _ := loggedIn(t, s, "dev-ev2")
	c2.nc.Close()
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if e := log.find("disconnect", "dev-ev2"); e == nil || e["reason"] != "CLOSED" {
			return fmt.Errorf("disconnect event %v", e)
		}
		return nil
	})
}

// TestCloseReasons: a disconnect event and longlink_closes_total say why
// the connection closed, telling apart a client that leaves (FIN), a
// connection that fails (RST), the idle timeout, a kick and a drain.
func TestCloseReasons(t *testing.T) {
	log := &eventLog{}
	sink := httptest.NewServer(log)
	defer sink.Close()
	s := startServer(t, "-events-url", sink.URL, "-hb", "1s", "-idle-timeout", "1500ms")

	fin, _ := loggedIn(t, s, "dev-fin")
	fin.nc.Close()
	rst, _ := loggedIn(t, s, "dev-rst")
	if err := rst.nc.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	rst.nc.Close()
	kicked, _ := loggedIn(t, s, "dev-kicked")
	s.api("DELETE", "/v1/devices/dev-kicked", nil, nil)
	kicked.kickedWith(codec.StatusUnauthorized, 5*time.Second)
	idle, _ := loggedIn(t, s, "dev-idle")
	idle.kickedWith(codec.StatusIdleTimeout, 5*time.Second)

	want := map[string][2]string{
		"dev-fin":    {"client_closed", "CLOSED"},
		"dev-rst":    {"read_error", "CLOSED"},
		"dev-kicked": {"kicked", "UNAUTHORIZED"},
		"dev-idle":   {"idle", "IDLE_TIMEOUT"},
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		for device, w := range want {
			e := log.find("disconnect", device)
			if e == nil || e["close"] != w[0] || e["reason"] != w[1] {
				return fmt.Errorf("disconnect event of %s: %v, want close %s, reason %s", device, e, w[0], w[1])
			}
		}
		return nil
	})
	closes, _ := s.stats()["closes"].(map[string]any)
	for _, reason := range []string{"client_closed", "read_error", "kicked", "idle"} {
		if n, _ := closes[reason].(float64); n < 1 {
			t.Errorf("stats closes[%s] = %v, want at least 1 (closes: %v)", reason, closes[reason], closes)
		}
	}

	// A drain closes with shutdown.
	s2 := startServer(t, "-events-url", sink.URL)
	c, _ := loggedIn(t, s2, "dev-drained")
	s2.stop()
	c.kickedWith(codec.StatusShuttingDown, 5*time.Second)
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if e := log.find("disconnect", "dev-drained"); e == nil || e["close"] != "shutdown" || e["reason"] != "SHUTTING_DOWN" {
			return fmt.Errorf("disconnect event of the drained device: %v, want close shutdown", e)
		}
		return nil
	})
}
