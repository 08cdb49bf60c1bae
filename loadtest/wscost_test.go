package main

import (
	"context"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	"github.com/longlink/longlink/codec"
	gws "github.com/longlink/longlink/websocket"
)

// TestWSClientCost measures what one idle, logged-in WebSocket connection
// costs the generator with its own framing (package websocket) and with
// github.com/coder/websocket, against the real gateway. It is how the
// generator's choice was made (docs/transports.md); it runs only when
// LONGLINK_WSCOST is set to the number of connections:
//
//	LONGLINK_WSCOST=5000 go test -run TestWSClientCost -v ./loadtest
//
// Both hold each connection with one reader goroutine waiting for the next
// message, as the generator does.
func TestWSClientCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("LONGLINK_WSCOST"))
	if n <= 0 {
		t.Skip("set LONGLINK_WSCOST=<connections> to measure")
	}
	g := startRealGateway(t)
	token := func(i int, prefix string) string {
		tok, err := mintToken([]byte(testSecret), prefix+strconv.Itoa(i), "cost", nil, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	type cost struct{ heap, stack, goroutines float64 }
	// measure runs open, which dials and logs in n connections, between two
	// readings of the test process's memory.
	measure := func(name string, open func() (closeAll func())) cost {
		before := memNow()
		closeAll := open()
		after := memNow()
		c := cost{
			heap:       (float64(after.heap) - float64(before.heap)) / float64(n),
			stack:      (float64(after.stack) - float64(before.stack)) / float64(n),
			goroutines: float64(after.goroutines-before.goroutines) / float64(n),
		}
		t.Logf("%-16s %d connections: live heap %6.0f B/conn, stacks %6.0f B/conn, %.2f goroutines/conn",
			name, n, c.heap, c.stack, c.goroutines)
		closeAll()
		return c
	}

	// The generator's own path: runner.connect over WebSocket. The runner
	// (slots, histograms) and the tokens are made before the first reading.
	cfg, err := parseFlags([]string{"-ws", "-ws-addr", g.ws, "-jwt-secret", testSecret, "-api", "http://" + g.api,
		"-api-key", testAPIKey, "-conns", strconv.Itoa(n), "-device-prefix", "cost-own-"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(cfg, io.Discard)
	r.t0 = time.Now()
	for _, s := range r.slots {
		s.token = token(s.idx, "cost-own-")
	}
	own := measure("own framing", func() func() {
		for _, s := range r.slots {
			if _, err := r.connect(context.Background(), s, false); err != nil {
				t.Fatal(err)
			}
		}
		return r.teardown
	})

	logins := make([][]byte, n)
	for i := range logins {
		logins[i] = codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1},
			codec.AppendMetaString(nil, "token", token(i, "cost-lib-")), nil)
	}
	lib := measure("coder/websocket", func() func() {
		conns := make([]*cws.Conn, n)
		var wg sync.WaitGroup
		for i := range conns {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c, _, err := cws.Dial(ctx, "ws://"+g.ws+"/", &cws.DialOptions{Subprotocols: []string{gws.Subprotocol}})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Write(ctx, cws.MessageBinary, logins[i]); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.Read(ctx); err != nil {
				t.Fatal(err)
			} else if f, _, err := codec.Decode(msg, codec.DefaultMaxFrame); err != nil || f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
				t.Fatalf("login: %v %v", f.Header, err)
			}
			cancel()
			logins[i] = nil
			conns[i] = c
			wg.Add(1)
			go func() { // the reader, one per connection as in the generator
				defer wg.Done()
				for {
					if _, _, err := c.Read(context.Background()); err != nil {
						return
					}
				}
			}()
		}
		return func() {
			for _, c := range conns {
				_ = c.CloseNow()
			}
			wg.Wait()
		}
	})
	t.Logf("coder/websocket: %.1fx the heap and stacks of the own framing per idle connection",
		(lib.heap+lib.stack)/(own.heap+own.stack))
}

type memPoint struct {
	heap, stack uint64
	goroutines  int
}

// memNow is the live heap and the stacks in use, after a GC.
func memNow() memPoint {
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memPoint{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}
