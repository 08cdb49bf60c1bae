// Package rediserr counts the commands a go-redis client sent that failed,
// so that an operator sees a Redis in trouble (down, failing over, out of
// memory, refusing scripts) as one counter rising, whichever part of the
// gateway (route, recovery, registry, bus) met the failure and however it
// fell back.
//
// A nil reply (redis.Nil, "no such key") is an answer, not a failure; a
// command cancelled by its caller's context is not Redis's failure
// either; nor are the extras go-redis tries when it opens a connection
// (CLIENT SETINFO, CLIENT MAINT_NOTIFICATIONS, HELLO), which an older
// Redis refuses and go-redis does without. A pipeline counts each failed
// command once.
package rediserr

import (
	"context"
	"errors"
	"net"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Counter is a redis.Hook that counts failed commands.
type Counter struct{ n atomic.Uint64 }

// Load returns how many commands failed so far.
func (c *Counter) Load() uint64 { return c.n.Load() }

// failed reports whether err is Redis failing cmd.
func failed(cmd redis.Cmder, err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	name := cmd.Name()
	return name != "client" && name != "hello"
}

// DialHook implements redis.Hook: dials are counted by the commands that
// needed them.
func (c *Counter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

// ProcessHook implements redis.Hook.
func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if failed(cmd, err) {
			c.n.Add(1)
		}
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if failed(cmd, cmd.Err()) {
				c.n.Add(1)
			}
		}
		return err
	}
}
