package route

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/longlink/longlink/internal/redisscript"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of RedisConfig.
const (
	DefaultRedisPrefix = "longlink:"
	// DefaultDeviceTTL is the safety expiry of a binding. Liveness does not
	// depend on it (a binding is offline as soon as its node instance is
	// not live); it only bounds how long a dead node's bindings occupy
	// Redis when nobody looks them up.
	DefaultDeviceTTL = time.Hour
	// DefaultRedisBatch is the most devices per round trip of the batch
	// calls.
	DefaultRedisBatch = 1000
)

// RedisConfig configures a Redis route. Zero values take the defaults
// named in each comment.
type RedisConfig struct {
	// Client is the connection pool to use, usually shared with the rest
	// of the node; Close leaves it open. When nil, NewRedis makes one for
	// Addr, and Close closes it.
	Client redis.UniversalClient
	// Addr is the Redis host:port when Client is nil.
	Addr string
	// Prefix starts every key; "" means DefaultRedisPrefix.
	Prefix string
	// Instance names this process: one run of a node. It is stored with
	// every binding made here, so that a binding outlives neither the run
	// that made it (connection ids restart with each run) nor, with Live,
	// the node. "" means a random one.
	Instance string
	// Live reports whether a node instance is alive. A binding whose
	// instance is not live is offline: Lookup reports it so and deletes
	// it, Bind does not report it as a previous location. nil means every
	// instance is live.
	Live func(node, instance string) bool
	// DeviceTTL is the safety expiry of a binding, renewed by Bind and
	// Refresh; zero means DefaultDeviceTTL. A node must Refresh its
	// bindings more often than this.
	DeviceTTL time.Duration
	// Batch is the most devices sent in one round trip by Join, Leave,
	// LookupMany and Refresh; zero means DefaultRedisBatch.
	Batch int
}

// Redis is the Route shared by several nodes, kept in a standalone Redis,
// a Redis Cluster or a Sentinel-watched master.
//
// Keys, with P the prefix; the braces are hash tags (Redis Cluster puts a
// key in the slot of its tag), so every script touches one slot:
//
//	P d:{<device>}   STRING  "<conn> <instance> <node>", expires after DeviceTTL
//	P g:{<group>}    SET     member devices; no expiry, gone when empty
//	P dg:{<device>}  SET     the device's groups; no expiry, gone when empty
//
// Bind is one SET … GET (the previous binding comes back atomically),
// Unbind a compare-and-delete script, Lookup one GET. Join and Leave
// change both sets of every device in one MULTI per batch, so the two
// sides of membership never disagree once the call returns. On Redis
// Cluster the sets of a membership lie in different slots, which no MULTI
// spans: there a batch is one pipeline, and a call that fails part-way
// may leave the two sides apart until it is made again (each command is
// idempotent). Every error that comes from Redis wraps
// ErrUnavailable.
type Redis struct {
	rdb      redis.UniversalClient
	owned    bool
	prefix   string
	instance string
	live     func(node, instance string) bool
	ttl      time.Duration
	batch    int
	sharded  bool // a Redis Cluster: a MULTI cannot span the keys of a membership change
}

var _ Route = (*Redis)(nil)

// NewRedis returns a Redis route. It does not contact Redis: a Redis that
// is down shows as ErrUnavailable on each call until it is back.
func NewRedis(cfg RedisConfig) *Redis {
	r := &Redis{
		rdb:      cfg.Client,
		prefix:   cfg.Prefix,
		instance: cfg.Instance,
		live:     cfg.Live,
		ttl:      cfg.DeviceTTL,
		batch:    cfg.Batch,
	}
	if r.rdb == nil {
		r.rdb = redis.NewClient(&redis.Options{Addr: cfg.Addr})
		r.owned = true
	}
	if r.prefix == "" {
		r.prefix = DefaultRedisPrefix
	}
	if r.instance == "" {
		r.instance = NewInstance()
	}
	if r.ttl <= 0 {
		r.ttl = DefaultDeviceTTL
	}
	if r.batch <= 0 {
		r.batch = DefaultRedisBatch
	}
	_, r.sharded = r.rdb.(*redis.ClusterClient)
	return r
}

// NewInstance returns a random instance name: 16 hex digits.
func NewInstance() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Instance is the instance name stored with the bindings made here.
func (r *Redis) Instance() string { return r.instance }

// The keys carry {hash tags}: a device's binding and its groups share the
// device's slot, so that on Redis Cluster every script and transaction
// touches one slot.
func (r *Redis) deviceKey(device string) string { return r.prefix + "d:{" + device + "}" }

// BindingKey is the key of device's binding, "<conn> <instance> <node>",
// in the device's hash slot: a script of another package on the same
// slot may read it (recovery's durable pushes for a dead node's devices).
func (r *Redis) BindingKey(device string) string { return r.deviceKey(device) }
func (r *Redis) groupKey(group string) string    { return r.prefix + "g:{" + group + "}" }
func (r *Redis) groupsKey(device string) string  { return r.prefix + "dg:{" + device + "}" }

// value encodes a binding made here: conn, instance, node. The node comes
// last so that it may hold any byte.
func (r *Redis) value(loc Location) string {
	return strconv.FormatUint(loc.Conn, 10) + " " + r.instance + " " + loc.Node
}

// parseValue decodes a binding.
func parseValue(v string) (loc Location, instance string, ok bool) {
	c, rest, ok1 := strings.Cut(v, " ")
	inst, node, ok2 := strings.Cut(rest, " ")
	conn, err := strconv.ParseUint(c, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return Location{}, "", false
	}
	return Location{Node: node, Conn: conn}, inst, true
}

// isLive reports whether a stored binding counts.
func (r *Redis) isLive(loc Location, instance string) bool {
	return instance == r.instance || r.live == nil || r.live(loc.Node, instance)
}

// unavailable wraps a Redis error. A cancelled or expired context stays
// visible to errors.Is as well.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Bind records that device is connected at loc and returns the live
// binding it replaced. It is one SET … GET: two nodes binding the same
// device at once each see the other's binding or none, never both none.
func (r *Redis) Bind(ctx context.Context, device string, loc Location) (prev Location, hadPrev bool, err error) {
	old, err := r.rdb.SetArgs(ctx, r.deviceKey(device), r.value(loc), redis.SetArgs{TTL: r.ttl, Get: true}).Result()
	if errors.Is(err, redis.Nil) {
		return Location{}, false, nil
	}
	if err != nil {
		return Location{}, false, unavailable(err)
	}
	prev, inst, ok := parseValue(old)
	if !ok || !r.isLive(prev, inst) {
		return Location{}, false, nil
	}
	return prev, true, nil
}

// compareAndDelete deletes KEYS[1] if it holds ARGV[1].
var compareAndDelete = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0`)

// Unbind removes device's binding if it is loc, as bound by this
// instance.
func (r *Redis) Unbind(ctx context.Context, device string, loc Location) error {
	return unavailable(compareAndDelete.Run(ctx, r.rdb, []string{r.deviceKey(device)}, r.value(loc)).Err())
}

// Lookup returns where device is connected. A binding whose instance is
// not live is deleted (if unchanged) and reported offline.
func (r *Redis) Lookup(ctx context.Context, device string) (loc Location, online bool, err error) {
	v, err := r.rdb.Get(ctx, r.deviceKey(device)).Result()
	if errors.Is(err, redis.Nil) {
		return Location{}, false, nil
	}
	if err != nil {
		return Location{}, false, unavailable(err)
	}
	return r.check(ctx, device, v)
}

// check decodes a stored binding, deleting it when it is dead.
func (r *Redis) check(ctx context.Context, device, v string) (Location, bool, error) {
	loc, inst, ok := parseValue(v)
	if ok && r.isLive(loc, inst) {
		return loc, true, nil
	}
	// Dead (or unreadable): gone for good, unless it changed meanwhile.
	_ = compareAndDelete.Run(ctx, r.rdb, []string{r.deviceKey(device)}, v).Err()
	return Location{}, false, nil
}

// LookupMany is Lookup for many devices, one MGET per batch: locs[i] and
// online[i] are the answer for devices[i].
func (r *Redis) LookupMany(ctx context.Context, devices []string) (locs []Location, online []bool, err error) {
	locs = make([]Location, len(devices))
	online = make([]bool, len(devices))
	keys := make([]string, 0, min(len(devices), r.batch))
	for from := 0; from < len(devices); from += r.batch {
		chunk := devices[from:min(from+r.batch, len(devices))]
		keys = keys[:0]
		for _, d := range chunk {
			keys = append(keys, r.deviceKey(d))
		}
		vals, err := r.getMany(ctx, keys)
		if err != nil {
			return nil, nil, unavailable(err)
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			if locs[from+i], online[from+i], err = r.check(ctx, chunk[i], s); err != nil {
				return nil, nil, err
			}
		}
	}
	return locs, online, nil
}

// getMany reads keys in one round trip: one MGET, or on Redis Cluster,
// where an MGET cannot span slots, a pipeline of GETs (go-redis sends each
// shard its own). A missing key reads as nil.
func (r *Redis) getMany(ctx context.Context, keys []string) ([]any, error) {
	if !r.sharded {
		return r.rdb.MGet(ctx, keys...).Result()
	}
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	vals := make([]any, len(keys))
	for i, c := range cmds {
		if v, err := c.Result(); err == nil {
			vals[i] = v
		}
	}
	return vals, nil
}

// Binding is one device's location, for Refresh.
type Binding struct {
	Device string
	Loc    Location
}

// refreshBinding sets KEYS[1] to ARGV[1] with expiry ARGV[2] seconds if it
// is absent, holds ARGV[1] already, or holds another binding of instance
// ARGV[3] (an older connection of this run, which the caller has
// replaced); a binding of another instance is left alone. Returns 1 when
// it set the key.
var refreshBinding = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
	local inst = string.match(cur, '^%d+ (%S+) ')
	if inst ~= ARGV[3] then
		return 0
	end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1`)

// Refresh renews the bindings of devices connected here, in batches: it
// extends their expiry and re-creates the ones Redis lost (a Redis restart
// without persistence), without overwriting a binding another node made
// since. Every location must be of this instance. It returns how many
// bindings it wrote.
func (r *Redis) Refresh(ctx context.Context, binds []Binding) (int, error) {
	ttl := strconv.FormatInt(int64((r.ttl+time.Second-1)/time.Second), 10)
	written := 0
	for from := 0; from < len(binds); from += r.batch {
		chunk := binds[from:min(from+r.batch, len(binds))]
		cmds, err := redisscript.Run(ctx, r.rdb, refreshBinding, len(chunk), func(i int) ([]string, []any) {
			return []string{r.deviceKey(chunk[i].Device)}, []any{r.value(chunk[i].Loc), ttl, r.instance}
		})
		if err != nil {
			return written, unavailable(err)
		}
		for _, c := range cmds {
			if n, _ := c.Int(); n == 1 {
				written++
			}
		}
	}
	return written, nil
}

// Join adds devices to group, both sides in one MULTI per batch.
func (r *Redis) Join(ctx context.Context, group string, devices []string) error {
	return r.members(ctx, group, devices, true)
}

// Leave removes devices from group, both sides in one MULTI per batch.
// Redis deletes a set when its last member goes.
func (r *Redis) Leave(ctx context.Context, group string, devices []string) error {
	return r.members(ctx, group, devices, false)
}

func (r *Redis) members(ctx context.Context, group string, devices []string, join bool) error {
	gk := r.groupKey(group)
	for from := 0; from < len(devices); from += r.batch {
		chunk := devices[from:min(from+r.batch, len(devices))]
		members := make([]any, len(chunk))
		for i, d := range chunk {
			members[i] = d
		}
		pipelined := r.rdb.TxPipelined
		if r.sharded {
			pipelined = r.rdb.Pipelined
		}
		_, err := pipelined(ctx, func(p redis.Pipeliner) error {
			if join {
				p.SAdd(ctx, gk, members...)
			} else {
				p.SRem(ctx, gk, members...)
			}
			for _, d := range chunk {
				if join {
					p.SAdd(ctx, r.groupsKey(d), group)
				} else {
					p.SRem(ctx, r.groupsKey(d), group)
				}
			}
			return nil
		})
		if err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// GroupSize returns the number of members of group.
func (r *Redis) GroupSize(ctx context.Context, group string) (int, error) {
	n, err := r.rdb.SCard(ctx, r.groupKey(group)).Result()
	return int(n), unavailable(err)
}

// Groups returns the groups device is a member of, in no order.
func (r *Redis) Groups(ctx context.Context, device string) ([]string, error) {
	gs, err := r.rdb.SMembers(ctx, r.groupsKey(device)).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	return gs, nil
}

// Close closes the Redis client if NewRedis made it; a client given in
// RedisConfig is left to its owner.
func (r *Redis) Close() error {
	if r.owned {
		return r.rdb.Close()
	}
	return nil
}
