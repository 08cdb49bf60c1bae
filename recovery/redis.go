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
	// Binding returns the key of a device's binding in the route
	// (route.Redis.BindingKey: "<conn> <instance> <node>", in the device's
	// slot): a push with Check is not kept when the binding names an
	// instance other than the push's Dead, since the device is back.
	Binding func(device string) string
}

// The Lua of a 4-byte big-endian seq, as the items carry it.
const luaSeq = `
local function encseq(seq)
	return string.char(math.floor(seq / 16777216) % 256, math.floor(seq / 65536) % 256, math.floor(seq / 256) % 256, seq % 256)
end
local function decseq(it)
	local a, b, c, d = string.byte(it, 1, 4)
	return ((a * 256 + b) * 256 + c) * 256 + d
end
`

// Redis is the Shared store on Redis. Per device, with P the prefix (one
// hash tag, so one slot on Redis Cluster):
//
//	P rs:{<device>}  STRING  the last seq assigned, expires TTL after the device left
//	P rb:{<device>}  LIST    the kept pushes, oldest first, at most Size, same expiry;
//	                         each a 4-byte big-endian seq, then the frame
//	P rj:{<device>}  STRING  present while a node journals the device (Journal):
//	                         rs is then only a lower bound of the device's seq
//
// Save is one MULTI, Take and each Append and Journal op one script, so
// every change of a device's state is atomic. Appends keep the expiry Save
// set: the TTL runs from when the device left, not from its last push, as
// on one node. Every error wraps ErrUnavailable.
//
// The journal (durable pushes): while a device is connected, its node
// appends each of its ack:true pushes to rb with the seq it assigned, and
// drops those acknowledged. If the node dies, the state stays, marked by
// rj: a push appended then gets no seq (0) since the device's latest seq
// is unknown (pushes that were not durable may have raised it), and the
// login that takes the state numbers those pushes after the higher of the
// stored seq and the client's resume.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
	size   int
	ttl    time.Duration
	bind   func(device string) string // RedisConfig.Binding
}

var _ Shared = (*Redis)(nil)

// ErrUnavailable wraps the errors of a shared store that cannot be
// reached.
var ErrUnavailable = errors.New("recovery: shared store unavailable")

// NewRedis returns a Redis shared store.
func NewRedis(cfg RedisConfig) *Redis {
	r := &Redis{rdb: cfg.Client, prefix: cfg.Prefix, size: max(1, cfg.Size), ttl: cfg.TTL, bind: cfg.Binding}
	if r.prefix == "" {
		r.prefix = DefaultRedisPrefix
	}
	return r
}

func (r *Redis) keys(device string) []string {
	// One hash tag: both keys in the device's slot on Redis Cluster.
	return []string{r.prefix + "rs:{" + device + "}", r.prefix + "rb:{" + device + "}", r.prefix + "rj:{" + device + "}"}
}

// MarkTTL is how long a journaled push's mark (JournalOp.Mark) lasts. Its
// sender reads it within a few seconds of sending, when the node that
// journaled it died without answering; a short life keeps the keys few:
// one per durable push another node sent here in the last MarkTTL.
const MarkTTL = 30 * time.Second

var markTTL = strconv.FormatInt(MarkTTL.Milliseconds(), 10)

// markKey is the key of mark for device's state, in the device's slot.
func (r *Redis) markKey(device, mark string) string {
	return r.prefix + "rm:{" + device + "}:" + mark
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
		p.Del(ctx, k[1], k[2])
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

// takeState returns {seq, items} of KEYS (rs, rb, rj) and deletes them,
// or nil when there is no state. A state a node was journaling (rj) whose
// node is gone has items without a seq: they are numbered after the
// higher of the stored seq and ARGV[1], the client's resume. With ARGV[2]
// "1" (a durable store) the state stays, numbered, journaled by the
// taker (rj renewed, expiry ARGV[3] ms).
var takeState = redis.NewScript(luaSeq + `
local seq = redis.call('GET', KEYS[1])
if not seq then
	return false
end
seq = tonumber(seq)
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local lost = redis.call('EXISTS', KEYS[3])
if lost == 1 then
	local resume = tonumber(ARGV[1])
	if resume > seq then
		seq = resume
	end
	for i, it in ipairs(items) do
		if decseq(it) == 0 then
			seq = seq + 1
			items[i] = encseq(seq) .. string.sub(it, 5)
		end
	end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if ARGV[2] == '1' then
	redis.call('SET', KEYS[1], seq, 'PX', ARGV[3])
	redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
	if #items > 0 then
		redis.call('RPUSH', KEYS[2], unpack(items))
		redis.call('PEXPIRE', KEYS[2], ARGV[3])
	end
end
return {tostring(seq), items, lost}`)

// Take returns device's state and deletes it.
func (r *Redis) Take(ctx context.Context, device string) (State, bool, error) {
	return r.take(ctx, device, 0, false)
}

// TakeFrom implements Durable: Take for a client resuming from resume,
// leaving the state journaled by the caller.
func (r *Redis) TakeFrom(ctx context.Context, device string, resume uint32) (State, bool, error) {
	return r.take(ctx, device, resume, true)
}

func (r *Redis) take(ctx context.Context, device string, resume uint32, keep bool) (State, bool, error) {
	k := "0"
	if keep {
		k = "1"
	}
	v, err := takeState.Run(ctx, r.rdb, r.keys(device), resume, k, r.ttl.Milliseconds()).Result()
	if errors.Is(err, redis.Nil) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, unavailable(err)
	}
	parts, ok := v.([]any)
	if !ok || len(parts) != 3 {
		return State{}, false, fmt.Errorf("recovery: unexpected state %v", v)
	}
	seqText, _ := parts[0].(string)
	seq, err := strconv.ParseUint(seqText, 10, 32)
	if err != nil {
		return State{}, false, fmt.Errorf("recovery: bad seq %q: %w", seqText, err)
	}
	lost, _ := parts[2].(int64)
	st := State{Seq: uint32(seq), Lost: lost == 1}
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

// appendPush records ARGV[1] as the next push of the state in KEYS (rs,
// rb, rj), keeping the last ARGV[2], and returns 1, or 0 when there is no
// state. A state being journaled (rj) gets the push without a seq: its
// node is gone, and the login that takes the state numbers it. With
// ARGV[3] "1" a missing state is created so (a durable push for a device
// whose node died before it had state), expiring after ARGV[4] ms. With
// KEYS[4], the device's binding, it appends nothing and returns 2 when the
// binding names an instance other than ARGV[5] (the instance of the node
// that died holding the device, or ""): the device logged in again since
// it was looked up. The binding and the state share the device's slot.
var appendPush = redis.NewScript(luaSeq + `
local n = 3
if ARGV[6] == '1' then
	n = n + 1
end
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[n + 1]) == 1 then
	return 3
end
if ARGV[6] == '1' then
	local b = redis.call('GET', KEYS[4])
	local inst = b and string.match(b, '^%S+ (%S+) ')
	if inst and inst ~= ARGV[5] then
		return 2
	end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then
	if ARGV[3] ~= '1' then
		return 0
	end
	ttl = tonumber(ARGV[4])
	redis.call('SET', KEYS[1], '0', 'PX', ttl)
	redis.call('SET', KEYS[3], '1', 'PX', ttl)
end
local seq = 0
if redis.call('EXISTS', KEYS[3]) == 0 then
	seq = redis.call('INCR', KEYS[1])
end
redis.call('RPUSH', KEYS[2], encseq(seq) .. ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
if ttl > 0 then
	redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1`)

// Append records each push for its device, if the device has a state (or,
// for a Lost push, creates one), in one pipeline. A push with Check whose
// device is bound to another instance than Dead is not kept: it is back;
// one with Unless whose mark the state holds is not kept: it is there.
func (r *Redis) Append(ctx context.Context, pushes []Push) ([]Kept, error) {
	size := strconv.Itoa(r.size)
	ttl := strconv.FormatInt(r.ttl.Milliseconds(), 10)
	cmds, err := redisscript.Run(ctx, r.rdb, appendPush, len(pushes), func(i int) ([]string, []any) {
		create := "0"
		if pushes[i].Lost {
			create = "1"
		}
		keys := r.keys(pushes[i].Device)
		check, unless := "0", "0"
		if pushes[i].Check && r.bind != nil {
			keys, check = append(keys, r.bind(pushes[i].Device)), "1"
		}
		if pushes[i].Unless != "" {
			keys, unless = append(keys, r.markKey(pushes[i].Device, pushes[i].Unless)), "1"
		}
		return keys, []any{pushes[i].Frame, size, create, ttl, pushes[i].Dead, check, unless}
	})
	kept := make([]Kept, len(pushes))
	for i, c := range cmds {
		n, cerr := c.Int64()
		kept[i] = Kept(n)
		if err == nil && cerr != nil {
			err = cerr
		}
	}
	return kept, unavailable(err)
}

// journalPush appends ARGV[2] (seq ARGV[1] and a frame) to the state in
// KEYS (rs, rb, rj), keeping the last ARGV[3], raises rs to the seq and
// marks the state journaled, and sets the push's mark KEYS[4] when given
// for ARGV[5] ms; the rest expires after ARGV[4] ms.
var journalPush = redis.NewScript(`
if KEYS[4] then
	redis.call('SET', KEYS[4], '1', 'PX', ARGV[5])
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
else
	redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
return 1`)

// journalAck drops the pushes at the head of KEYS[2] whose seq is at most
// ARGV[1].
var journalAck = redis.NewScript(luaSeq + `
local ack = tonumber(ARGV[1])
while true do
	local h = redis.call('LINDEX', KEYS[2], 0)
	if not h then
		break
	end
	local s = decseq(h)
	if s == 0 or s > ack then
		break
	end
	redis.call('LPOP', KEYS[2])
end
return 1`)

// Journal implements Durable: every op in one pipeline.
func (r *Redis) Journal(ctx context.Context, ops []JournalOp) error {
	size := strconv.Itoa(r.size)
	ttl := strconv.FormatInt(r.ttl.Milliseconds(), 10)
	var err error
	for _, script := range []*redis.Script{journalPush, journalAck} {
		var idx []int
		for i, op := range ops {
			if (op.Frame != nil) == (script == journalPush) {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			continue
		}
		cmds, perr := redisscript.Run(ctx, r.rdb, script, len(idx), func(i int) ([]string, []any) {
			op := ops[idx[i]]
			if op.Frame == nil {
				return r.keys(op.Device), []any{op.Seq}
			}
			keys := r.keys(op.Device)
			if op.Mark != "" {
				keys = append(keys, r.markKey(op.Device, op.Mark))
			}
			return keys, []any{op.Seq, encodeItem(Item{Seq: op.Seq, Frame: op.Frame}), size, ttl, markTTL}
		})
		err = errors.Join(err, perr)
		for _, c := range cmds {
			if err == nil && c.Err() != nil {
				err = c.Err()
			}
		}
	}
	return unavailable(err)
}

// Delete drops device's state.
func (r *Redis) Delete(ctx context.Context, device string) error {
	return unavailable(r.rdb.Del(ctx, r.keys(device)...).Err())
}
