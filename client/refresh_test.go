package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
)

// TestRefresh: the first token lives 2 s, so the gateway would end the
// session 7 s after login (exp plus its 5 s leeway). The client refreshes
// through Config.Token on the same connection and is still there, with
// one login, after that time.
func TestRefresh(t *testing.T) {
	gw := startGateway(t, "refresh")
	const device = "dev-refresh"
	log := newPushLog(t)
	cfg := testConfig(device, log, tcp(gw.tcp))
	var calls atomic.Int32
	cfg.Token = func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			return mintToken(device, 2*time.Second)
		}
		return mintToken(device, time.Hour)
	}
	start := time.Now()
	c := dialT(t, cfg)
	waitFor(t, 5*time.Second, "a refresh", func() bool { return c.Stats().Refreshes == 1 })
	// Past the first token's end: a session that was not refreshed is
	// kicked by then.
	time.Sleep(time.Until(start.Add(2*time.Second + 5*time.Second + 1500*time.Millisecond)))
	p := &pusher{t: t, api: gw.api, device: device}
	p.send(3)
	log.waitAll(t, p.ids())
	st := c.Stats()
	if st.Connects != 1 || st.Kicks != 0 || st.RefreshFailures != 0 {
		t.Errorf("stats %+v: want one login, no kick, no failed refresh", st)
	}
}

// TestExpiredReconnects: a session whose refresh is refused (the token
// service hands out tokens for another device) is kicked with "token
// expired" at its end, and the client logs in again with a fresh token
// rather than stopping.
func TestExpiredReconnects(t *testing.T) {
	gw := startGateway(t, "expired")
	const device = "dev-expired"
	log := newPushLog(t)
	cfg := testConfig(device, log, tcp(gw.tcp))
	var calls atomic.Int32
	cfg.Token = func(context.Context) (string, error) {
		switch calls.Add(1) {
		case 1:
			return mintToken(device, -3*time.Second) // 2 s left within the leeway
		case 2:
			return mintToken("someone-else", time.Hour) // the refresh: refused
		}
		return mintToken(device, time.Hour)
	}
	c := dialT(t, cfg)
	waitFor(t, 15*time.Second, "a reconnect", func() bool { return c.Stats().Reconnects == 1 })
	st := c.Stats()
	if st.Kicks != 1 || st.RefreshFailures < 1 || c.Err() != nil {
		t.Errorf("stats %+v, err %v: want the expiry kick, a refused refresh, a running client", st, c.Err())
	}
	p := &pusher{t: t, api: gw.api, device: device}
	p.send(2)
	log.waitAll(t, p.ids())
	if c.State() != client.StateConnected {
		t.Errorf("state %v", c.State())
	}
}
