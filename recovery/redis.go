package recovery

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/longlink/longlink/internal/redisscript"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix starts the keys of a Redis shared store whose config
// names no prefix.
const DefaultRedisPrefix = "longlink:"

// RedisConfig configures the Redis shared store.
type RedisConfig struct {
	Client redis.UniversalClient // required; Redis leaves it open
	Prefix string                // starts every key; "" means DefaultRedisPrefix
	Size   int                   // pushes kept per device, as the Store's size; at least 1
	TTL    time.Duration         // how long a state is kept after the device left; > 0
}

// Redis is the Shared store on Redis. Per device, with P the prefix:
//
//	P rs:<device>  STRING  the last seq assigned, expires TTL after the device left
//	P rb:<device>  LIST    the kept pushes, oldest first, at most Size, same expiry;
//	                       each a 4-byte big-endian seq, then the frame
//
// Save is one MULTI, Take and each Append one script, so every change of a
// device's state is atomic. Appends keep the expiry Save set: the TTL runs
// from when the device left, not from its last push, as on one node. Every
// error wraps ErrUnavailable.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
	size   int
	ttl    time.Duration
}

var _ Shared = (*Redis)(nil)

// ErrUnavailable wraps the errors of a shared store that cannot be
// reached.
var ErrUnavailable = errors.New("recovery: shared store unavailable")

// NewRedis returns a Redis shared store.
func NewRedis(cfg RedisConfig) *Redis {
	r := &Redis{rdb: cfg.Client, prefix: cfg.Prefix, size: max(1, cfg.Size), ttl: cfg.TTL}
	if r.prefix == "" {
		r.prefix = DefaultRedisPrefix
	}
	return r
}

func (r *Redis) keys(device string) []string {
	// One hash tag: both keys in the device's slot on Redis Cluster.
	return []string{r.prefix + "rs:{" + device + "}", r.prefix + "rb:{" + device + "}"}
}

func unavailable(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Save stores st for device, replacing any state it had.
func (r *Redis) Save(ctx context.Context, device string, st State) error {
	k := r.keys(device)
	items := st.Items
	if len(items) > r.size {
		items = items[len(items)-r.size:]
	}
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, k[1])
		p.Set(ctx, k[0], st.Seq, r.ttl)
		if len(items) > 0 {
			elems := make([]any, len(items))
			for i, it := range items {
				elems[i] = encodeItem(it)
			}
			p.RPush(ctx, k[1], elems...)
			p.PExpire(ctx, k[1], r.ttl)
		}
		return nil
	})
	return unavailable(err)
}

func encodeItem(it Item) []byte {
	b := make([]byte, 4+len(it.Frame))
	binary.BigEndian.PutUint32(b, it.Seq)
	copy(b[4:], it.Frame)
	return b
}

// takeState returns {seq, items} of KEYS[1], KEYS[2] and deletes both, or
// nil when there is no state.
var takeState = redis.NewScript(`
local seq = redis.call('GET', KEYS[1])
if not seq then
	return false
end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2])
return {seq, items}`)

// Take returns device's state and deletes it.
func (r *Redis) Take(ctx context.Context, device string) (State, bool, error) {
	v, err := takeState.Run(ctx, r.rdb, r.keys(device)).Result()
	if errors.Is(err, redis.Nil) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, unavailable(err)
	}
	parts, ok := v.([]any)
	if !ok || len(parts) != 2 {
		return State{}, false, fmt.Errorf("recovery: unexpected state %v", v)
	}
	seqText, _ := parts[0].(string)
	seq, err := strconv.ParseUint(seqText, 10, 32)
	if err != nil {
		return State{}, false, fmt.Errorf("recovery: bad seq %q: %w", seqText, err)
	}
	st := State{Seq: uint32(seq)}
	elems, _ := parts[1].([]any)
	for _, e := range elems {
		b, _ := e.(string)
		if len(b) < 4 {
			continue
		}
		st.Items = append(st.Items, Item{Seq: binary.BigEndian.Uint32([]byte(b[:4])), Frame: []byte(b[4:])})
	}
	return st, true, nil
}

// appendPush records ARGV[1] as the next push of the state in KEYS[1],
// KEYS[2], keeping the last ARGV[2]; it returns the seq it assigned, or 0
// when there is no state.
var appendPush = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then
	return 0
end
local seq = redis.call('INCR', KEYS[1])
local b = string.char(math.floor(seq / 16777216) % 256, math.floor(seq / 65536) % 256, math.floor(seq / 256) % 256, seq % 256)
redis.call('RPUSH', KEYS[2], b .. ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
if ttl > 0 then
	redis.call('PEXPIRE', KEYS[2], ttl)
end
return seq`)

// Append records each push for its device, if the device has a state, in
// one pipeline.
func (r *Redis) Append(ctx context.Context, pushes []Push) ([]bool, error) {
	size := strconv.Itoa(r.size)
	cmds, err := redisscript.Run(ctx, r.rdb, appendPush, len(pushes), func(i int) ([]string, []any) {
		return r.keys(pushes[i].Device), []any{pushes[i].Frame, size}
	})
	kept := make([]bool, len(pushes))
	for i, c := range cmds {
		n, cerr := c.Int64()
		kept[i] = n > 0
		if err == nil && cerr != nil {
			err = cerr
		}
	}
	return kept, unavailable(err)
}

// Delete drops device's state.
func (r *Redis) Delete(ctx context.Context, device string) error {
	return unavailable(r.rdb.Del(ctx, r.keys(device)...).Err())
}
