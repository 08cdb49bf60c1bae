package e2e

import (
	"encoding/json"
	"fmt"
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
