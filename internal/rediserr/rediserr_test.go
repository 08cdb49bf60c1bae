package rediserr_test

import (
	"testing"
	"time"

	"github.com/longlink/longlink/cluster/redistest"
	"github.com/longlink/longlink/internal/rediserr"
	"github.com/redis/go-redis/v9"
)

// TestCounter: a nil reply is not a failure, a wrong command is one, a
// pipeline counts each failed command, and every command sent to a
// Redis that is down is one.
func TestCounter(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	var c rediserr.Counter
	rdb.AddHook(&c)
	ctx := t.Context()
	if err := rdb.Get(ctx, "missing").Err(); err != redis.Nil {
		t.Fatalf("GET of a missing key: %v", err)
	}
	rdb.Set(ctx, "k", "v", 0)
	if c.Load() != 0 {
		t.Fatalf("%d failures counted for a nil reply and a SET", c.Load())
	}
	rdb.LPush(ctx, "k", "x") // WRONGTYPE
	if c.Load() != 1 {
		t.Fatalf("%d failures after a WRONGTYPE, want 1", c.Load())
	}
	p := rdb.Pipeline()
	p.LPush(ctx, "k", "x")
	p.Get(ctx, "k")
	p.LPush(ctx, "k", "y")
	p.Exec(ctx)
	if c.Load() != 3 {
		t.Fatalf("%d failures after a pipeline with 2 failing commands, want 3", c.Load())
	}
	srv.Kill()
	rdb.Get(ctx, "k")
	if c.Load() != 4 {
		t.Fatalf("%d failures after a GET to a dead Redis, want 4", c.Load())
	}
}
