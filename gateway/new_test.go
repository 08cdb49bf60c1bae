package gateway

import (
	"bytes"
	"net"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/config"
	"github.com/longlink/longlink/dispatch/upstream"
)

// TestNewFailureLeaksNothing: when New fails after starting parts of the
// node (the downstream writers, the upstream workers, the events sink, a
// cluster node's Redis client and shared recovery appends), it closes
// them: none of their goroutines is left, and the goroutine count comes
// back to what it was before the call. Each failure is a real one: a
// certificate file that does not exist, an origin that is not one, a
// business configured twice.
func TestNewFailureLeaksNothing(t *testing.T) {
	// Nothing listens on closed: nothing may dial it, and nothing does (go-redis
	// dials on first use).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	base := func() config.Config {
		cfg := config.Default()
		cfg.Node = "leak-test"
		cfg.DownWorkers = 4
		// Workers of their own, started by upstream.New.
		cfg.Biz = append(cfg.Biz, upstream.Business{ID: 2, URL: "http://" + closed + "/rpc", Workers: 8})
		cfg.EventsURL = "http://" + closed + "/events"
		return cfg
	}
	badCert := func(cfg *config.Config) {
		cfg.TLSListen = "127.0.0.1:0"
		cfg.TLSCert = filepath.Join(t.TempDir(), "missing-cert.pem")
		cfg.TLSKey = filepath.Join(t.TempDir(), "missing-key.pem")
	}
	badOrigins := func(cfg *config.Config) { cfg.WSOrigins = []string{"https://app.example/path"} }
	badBiz := func(cfg *config.Config) { cfg.Biz = append(cfg.Biz, cfg.Biz[0]) } // twice
	cluster := func(cfg *config.Config) { cfg.Redis = closed }
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyLink := func(cfg *config.Config) { cfg.LinkListen = busy.Addr().String() }

	for _, tc := range []struct {
		name string
		mods []func(*config.Config)
		want string // in the error
	}{
		{"cert", []func(*config.Config){badCert}, "tls certificate"},
		{"ws-origins", []func(*config.Config){badOrigins}, "-ws-origins"},
		{"cluster/cert", []func(*config.Config){cluster, badCert}, "tls certificate"},
		{"cluster/ws-origins", []func(*config.Config){cluster, badOrigins}, "-ws-origins"},
		{"cluster/businesses", []func(*config.Config){cluster, badBiz}, "configured twice"},
		{"cluster/link-listen", []func(*config.Config){cluster, busyLink}, "-link-listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			for _, m := range tc.mods {
				m(&cfg)
			}
			// A first call starts what lives for the process (the reactor's
			// pollers, once); the second is counted as well.
			for i := range 2 {
				before := settledGoroutines()
				g, err := New(cfg, nil)
				if err == nil {
					_ = g.Shutdown(t.Context())
					t.Fatal("New succeeded")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("New: %v, want an error about %s", err, tc.want)
				}
				waitNoParts(t)
				if i == 1 {
					waitGoroutines(t, before)
				}
			}
		})
	}
}

// partsOfNew are where the goroutines of what New starts run: the
// downstream writers, the upstream workers, the events sink, the shared
// recovery store's appends, the bus and go-redis's own.
var partsOfNew = []string{
	"longlink/longlink/dispatch/downstream.",
	"longlink/longlink/dispatch/upstream.",
	"longlink/longlink/events.",
	"longlink/longlink/recovery.",
	"longlink/longlink/cluster.",
	"longlink/longlink/conn.",
	"github.com/redis/go-redis/",
}

// waitNoParts polls until no goroutine runs in partsOfNew, failing with
// the stacks of those that do after a few seconds.
func waitNoParts(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for _, g := range goroutineStacks() {
			for _, p := range partsOfNew {
				if strings.Contains(g, p) {
					left = append(left, g)
					break
				}
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the node New failed to build still run:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutineStacks returns the stack of every goroutine.
func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// settledGoroutines waits for goroutines that are ending (those of an
// earlier subtest) to be gone, and returns how many run then.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for stable := 0; stable < 10; {
		time.Sleep(5 * time.Millisecond)
		if m := runtime.NumGoroutine(); m < n {
			n, stable = m, 0
		} else {
			stable++
		}
	}
	return n
}

// waitGoroutines polls until at most n goroutines run, failing with their
// stacks after a few seconds.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines, %d before New: leaked\n%s", runtime.NumGoroutine(), n, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
