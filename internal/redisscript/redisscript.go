// Package redisscript runs a Lua script many times in one Redis
// pipeline, surviving a Redis restart: the script cache is empty then, so
// the runs Redis answers NOSCRIPT are sent again as EVAL. The route and the
// recovery store both batch their writes this way.
package redisscript

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// Run runs script n times in one pipeline, with the keys and
// arguments args(i) gives for the i-th run. It sends EVALSHA, and the runs
// that Redis answers NOSCRIPT (its script cache is empty after a restart:
// nothing ran) again as EVAL. The error is the pipeline's, or nil when
// only some commands failed: each command carries its own.
func Run(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, n int, args func(i int) ([]string, []any)) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, n)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			k, a := args(i)
			cmds[i] = script.EvalSha(ctx, p, k, a...)
		}
		return nil
	})
	var again []int
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return cmds, pipelineErr(err)
	}
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, i := range again {
			k, a := args(i)
			cmds[i] = script.Eval(ctx, p, k, a...)
		}
		return nil
	})
	return cmds, pipelineErr(err)
}

// pipelineErr keeps a pipeline's error only when it is not a script's
// own error reply: redis.Nil from a command is no failure, and a Redis
// error reply is reported by its command.
func pipelineErr(err error) error {
	var re redis.Error
	if err == nil || errors.Is(err, redis.Nil) || errors.As(err, &re) {
		return nil
	}
	return err
}
