package reactor

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
)

// gateHandler sets an input limit on its connection and, until gate is
// closed, blocks in its first Data call as a busy handler would; then it
// consumes everything, counting the bytes.
type gateHandler struct {
	limit int
	conns chan netpoll.Connection
	gate  chan struct{}
	got   *atomic.Int64
}

func (h gateHandler) Prepare(nc netpoll.Connection) context.Context {
	nc.(netpoll.InputLimiter).SetInputLimit(h.limit)
	h.conns <- nc
	return context.Background()
}

func (h gateHandler) Data(_ context.Context, nc netpoll.Connection) error {
	<-h.gate
	r := nc.Reader()
	n := r.Len()
	if err := r.Skip(n); err != nil {
		return err
	}
	h.got.Add(int64(n))
	return r.Release()
}

// With an input limit, a handler that falls behind leaves the sender's
// bytes in the kernel: the buffered input stays within twice the limit
// and the sender's writes block, and once the handler catches up every
// byte still arrives.
func TestInputLimitPausesReading(t *testing.T) {
	const limit = 16 << 10
	const total = 64 << 20
	var got atomic.Int64
	h := gateHandler{limit: limit, conns: make(chan netpoll.Connection, 1), gate: make(chan struct{}), got: &got}
	l := listen(t, h, Options{})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nc := <-h.conns

	// The sender writes until its writes block for a second: the gateway
	// has stopped reading. Without the limit the poller would take all 64 MiB.
	chunk := make([]byte, 64<<10)
	sent := 0
	for sent < total {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := c.Write(chunk)
		sent += n
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if buffered := nc.Reader().Len(); buffered > 2*limit {
			t.Fatalf("%d bytes buffered, limit %d", buffered, limit)
		}
	}
	if sent >= total {
		t.Fatalf("all %d bytes were taken while the handler was blocked", sent)
	}
	if buffered := nc.Reader().Len(); buffered > 2*limit {
		t.Fatalf("%d bytes buffered, limit %d", buffered, limit)
	}
	t.Logf("writes blocked after %d bytes (kernel buffers included), %d buffered", sent, nc.Reader().Len())

	// The handler catches up: reading resumes and every byte arrives.
	close(h.gate)
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for sent < total {
		n, err := c.Write(chunk[:min(len(chunk), total-sent)])
		sent += n
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() < total {
		if time.Now().After(deadline) {
			t.Fatalf("handler got %d of %d bytes", got.Load(), total)
		}
		time.Sleep(time.Millisecond)
	}
}
