package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix starts every key and channel of a cluster whose config
// names no prefix.
const DefaultPrefix = "longlink:"

// DefaultNodeTTL is how long a node's registration lasts unless renewed:
// a node that stops renewing it (killed, cut off from Redis) is dead to
// the others, and its devices offline, this long after its last renewal.
const DefaultNodeTTL = 15 * time.Second

// Endpoint is an access point of a node.
type Endpoint struct {
	Proto string `json:"proto"` // tcp, ws, tls
	Addr  string `json:"addr"`
}

// NodeInfo is what a node registers about itself.
type NodeInfo struct {
	Node      string     `json:"node"`
	Instance  string     `json:"instance"`       // this run of the node
	Endpoints []Endpoint `json:"endpoints"`      // as clients should dial them
	Link      string     `json:"link,omitempty"` // where other nodes dial its links (Links); "": through the bus only
	Conns     int64      `json:"conns"`          // open connections
	LoggedIn  int64      `json:"logged_in"`      // connections past LOGIN
	MaxConns  int        `json:"max_conns"`      // -max-conns
	Draining  bool       `json:"draining,omitempty"`
	Started   int64      `json:"started"` // unix milliseconds

	// Beating says the node's heartbeat key was there at the last read:
	// a node that died stops beating within BeatTTL, long before its
	// registration expires.
	Beating bool `json:"-"`
}

// The heartbeat: every BeatEvery a node sets its beat key to expire after
// BeatTTL. The registration's TTL (-node-ttl) decides when a node is dead
// for routing, and is long so that a Redis hiccup declares no node dead;
// the beat decides when its endpoints stop being handed out to clients,
// and is short so that devices reconnecting after a node's death are not
// sent back to it.
const (
	BeatEvery = 500 * time.Millisecond
	BeatTTL   = 1500 * time.Millisecond
)

// Load is the node's share of its capacity in use, 0..1: what "least
// loaded" compares, so that nodes of different sizes fill evenly.
func (n NodeInfo) Load() float64 {
	if n.MaxConns <= 0 {
		return float64(n.Conns)
	}
	return float64(n.Conns) / float64(n.MaxConns)
}

// RegistryConfig configures a Registry. Zero values take the defaults in
// the comments.
type RegistryConfig struct {
	Client redis.UniversalClient // required
	Prefix string                // "" means DefaultPrefix
	TTL    time.Duration         // registration lifetime; zero means DefaultNodeTTL
	// Renew is how often the registration is renewed; zero means TTL/3,
	// so two renewals may fail before the node is presumed dead.
	Renew time.Duration
	// CacheTTL is how long the set of live nodes is cached; zero means
	// min(1s, Renew). Live and Nodes read the cache, never Redis, except
	// that Live re-reads the live set when it meets an instance the cache
	// does not hold (a node that just started, or a dead one).
	CacheTTL time.Duration
	// Lost, when set, is called (on its own goroutine) when a renewal
	// finds this node's registration gone (Redis lost its data, or the
	// node was presumed dead), and when a renewal succeeds after renewals
	// failed (what the node wrote meanwhile did not reach Redis). The node
	// should then re-create what it keeps in Redis: its devices' bindings.
	Lost   func()
	Logger *slog.Logger // nil: slog.Default()
}

// Registry registers this node and knows which nodes are alive. Keys,
// with P the prefix:
//
//	P {nodes}:node:<id>  STRING  NodeInfo as JSON, expires after the TTL
//	P {nodes}:beat:<id>  STRING  "1", expires after BeatTTL, set every BeatEvery
//	P {nodes}            ZSET    node ids, scored by their last renewal (unix ms);
//	                             an id whose node key is gone is removed by the next read
//	P {nodes}:epoch      STRING  a random value, set by the first read that finds it missing
//
// A node is alive while its key exists and holds its current instance;
// its endpoints are handed out (Nodes) while it also beats.
//
// The epoch tells a node that died from one whose registration Redis lost
// with all its data (a restart without persistence): when a read finds a
// new epoch, the nodes the cache held are presumed alive for one TTL
// unless they re-register meanwhile, as a live node does at its next
// renewal. Without it every node would see every other dead until their
// renewals, and drop their links and routes for that while.
type Registry struct {
	rdb      redis.UniversalClient
	prefix   string
	ttl      time.Duration
	renew    time.Duration
	cacheTTL time.Duration
	lost     func()
	log      *slog.Logger
	self     func() NodeInfo

	registered atomic.Bool                         // a renewal succeeded before
	draining   atomic.Bool                         // registered as draining
	live       atomic.Pointer[map[string]NodeInfo] // the cache: node id → info
	fetchedAt  atomic.Int64                        // unix nanos when the cache's read started
	fetchMu    sync.Mutex                          // one read of the live set at a time
	epoch      string                              // the epoch at the last read; under fetchMu
	carried    map[string]NodeInfo                 // nodes known before Redis lost its data, not re-registered since; under fetchMu
	carryUntil time.Time                           // when carried is dropped; under fetchMu
	lastErr    atomic.Pointer[string]              // last renewal error logged, to log changes only
}

// NewRegistry returns a registry for the node self describes (self is
// called at each renewal, so it reports the current connection count).
func NewRegistry(cfg RegistryConfig, self func() NodeInfo) *Registry {
	r := &Registry{
		rdb:      cfg.Client,
		prefix:   cfg.Prefix,
		ttl:      cfg.TTL,
		renew:    cfg.Renew,
		cacheTTL: cfg.CacheTTL,
		lost:     cfg.Lost,
		log:      cfg.Logger,
		self:     self,
	}
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	if r.ttl <= 0 {
		r.ttl = DefaultNodeTTL
	}
	if r.renew <= 0 {
		r.renew = r.ttl / 3
	}
	if r.cacheTTL <= 0 {
		r.cacheTTL = min(time.Second, r.renew)
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	empty := map[string]NodeInfo{}
	r.live.Store(&empty)
	return r
}

// Every registry key carries the hash tag {nodes}: on Redis Cluster they
// share one slot, so readLive and the registration's MULTI touch one.
func (r *Registry) nodeKey(id string) string { return r.prefix + "{nodes}:node:" + id }
func (r *Registry) indexKey() string         { return r.prefix + "{nodes}" }
func (r *Registry) beatKey(id string) string { return r.prefix + "{nodes}:beat:" + id }
func (r *Registry) epochKey() string         { return r.prefix + "{nodes}:epoch" }

// TTL is the registration lifetime.
func (r *Registry) TTL() time.Duration { return r.ttl }

// Register writes this node's registration (and renews its lifetime).
func (r *Registry) Register(ctx context.Context) error {
	info := r.self()
	info.Draining = r.draining.Load()
	val, err := json.Marshal(info)
	if err != nil {
		return err
	}
	var prev *redis.StatusCmd
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		prev = p.SetArgs(ctx, r.nodeKey(info.Node), val, redis.SetArgs{TTL: r.ttl, Get: true})
		p.Set(ctx, r.beatKey(info.Node), "1", BeatTTL)
		p.ZAdd(ctx, r.indexKey(), redis.Z{Score: float64(time.Now().UnixMilli()), Member: info.Node})
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("cluster: registering node %s: %w", info.Node, err)
	}
	old, perr := prev.Result()
	var was NodeInfo
	switch {
	case errors.Is(perr, redis.Nil):
		if r.registered.Load() {
			r.log.Warn("cluster: this node's registration had vanished (Redis restarted, or the node was presumed dead); restoring its state in Redis", "node", info.Node)
			if r.lost != nil {
				go r.lost()
			}
		}
	case json.Unmarshal([]byte(old), &was) == nil && was.Instance != info.Instance:
		r.log.Error("cluster: another process registers the same node id; give every node its own -node", "node", info.Node, "other_instance", was.Instance)
	}
	r.registered.Store(true)
	// Our own entry in the cache is always current.
	r.update(func(m map[string]NodeInfo) { m[info.Node] = info })
	return nil
}

// SetDraining marks the node as draining in its next registrations (and
// writes one now): other nodes stop handing out its endpoints, and keep
// routing to it until it deregisters.
func (r *Registry) SetDraining(ctx context.Context) error {
	r.draining.Store(true)
	return r.Register(ctx)
}

// Deregister removes this node's registration: other nodes see it dead at
// their next read of the live set.
func (r *Registry) Deregister(ctx context.Context) error {
	info := r.self()
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.nodeKey(info.Node), r.beatKey(info.Node))
		p.ZRem(ctx, r.indexKey(), info.Node)
		return nil
	})
	r.registered.Store(false)
	return err
}

// readLive returns the epoch (setting it to ARGV[3] when missing), then
// the registration of every live node, each followed by "1" or "0" for
// whether it beats, and removes from the index the ids whose
// registration expired.
var readLive = redis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
if not epoch then
	epoch = ARGV[3]
	redis.call('SET', KEYS[2], epoch)
end
local out = {epoch}
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
	local v = redis.call('GET', ARGV[1] .. id)
	if v then
		out[#out + 1] = v
		out[#out + 1] = tostring(redis.call('EXISTS', ARGV[2] .. id))
	else
		redis.call('ZREM', KEYS[1], id)
	end
end
return out`)

// Refresh reads the set of live nodes into the cache.
func (r *Registry) Refresh(ctx context.Context) error {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	return r.fetch(ctx)
}

// RefreshSince is Refresh unless a read that started at since or later
// filled the cache already: callers that poll the live set together share
// one read.
func (r *Registry) RefreshSince(ctx context.Context, since time.Time) error {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	if r.fetchedAt.Load() >= since.UnixNano() {
		return nil
	}
	return r.fetch(ctx)
}

func (r *Registry) fetch(ctx context.Context) error {
	started := time.Now()
	vals, err := readLive.Run(ctx, r.rdb, []string{r.indexKey(), r.epochKey()}, r.nodeKey(""), r.beatKey(""), newEpoch()).StringSlice()
	if err == nil && len(vals) == 0 {
		err = errors.New("no epoch in the answer")
	}
	if err != nil {
		// Keep the last known set.
		return fmt.Errorf("cluster: reading the live nodes: %w", err)
	}
	epoch, vals := vals[0], vals[1:]
	m := make(map[string]NodeInfo, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		var n NodeInfo
		if json.Unmarshal([]byte(vals[i]), &n) == nil && n.Node != "" {
			n.Beating = vals[i+1] == "1"
			m[n.Node] = n
		}
	}
	self := r.self()
	if r.epoch != "" && epoch != r.epoch {
		r.carried = maps.Clone(*r.live.Load())
		delete(r.carried, self.Node)
		r.carryUntil = started.Add(r.ttl)
		r.log.Warn("cluster: Redis lost the registry (restarted empty?); the nodes known before are presumed alive until they re-register", "nodes", len(r.carried), "for", r.ttl)
	}
	r.epoch = epoch
	r.carry(m, started)
	self.Beating = true // we know we are alive
	if n, ok := m[self.Node]; ok {
		n.Beating = true
		m[self.Node] = n
	}
	if r.registered.Load() {
		// Between our renewals our key may be briefly missing (Redis
		// restarted); we know we are alive.
		if _, ok := m[self.Node]; !ok {
			self.Draining = r.draining.Load()
			m[self.Node] = self
		}
	}
	r.live.Store(&m)
	r.fetchedAt.Store(started.UnixNano())
	return nil
}

// carry adds to m the nodes known before Redis lost the registry that have
// not re-registered since, until their TTL from the loss passes.
func (r *Registry) carry(m map[string]NodeInfo, now time.Time) {
	if len(r.carried) == 0 {
		return
	}
	if now.After(r.carryUntil) {
		r.carried = nil
		return
	}
	for id, n := range r.carried {
		if _, ok := m[id]; ok {
			delete(r.carried, id) // registered again: its own entry is current
			continue
		}
		m[id] = n
	}
}

// newEpoch returns a fresh random epoch.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// update changes a copy of the cache.
func (r *Registry) update(fn func(m map[string]NodeInfo)) {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	old := *r.live.Load()
	m := make(map[string]NodeInfo, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	fn(m)
	r.live.Store(&m)
}

// Live reports whether instance is the live run of node. It reads the
// cache. An instance the cache does not hold is checked against a read of
// the live set that started after the call (made now, or shared with a
// concurrent call): the caller saw a binding of that instance, and a node
// registers before it binds anything, so "not live" is never a stale
// answer about a node that just started. A dead instance costs that read
// once per binding met, as the caller then deletes the binding. When the
// live set cannot be read, Live says true: a node is not declared dead on
// a guess.
func (r *Registry) Live(node, instance string) bool {
	if r.known(node, instance) {
		return true
	}
	asked := time.Now().UnixNano()
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	if r.fetchedAt.Load() < asked {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := r.fetch(ctx)
		cancel()
		if err != nil {
			// Not proven dead: a binding is not deleted on a guess. A push
			// routed to a dead node finds no receiver and is reported so.
			r.log.Debug("cluster: re-reading the live nodes failed", "err", err)
			return true
		}
	}
	return r.known(node, instance)
}

// known reports whether the cache holds instance as node's.
func (r *Registry) known(node, instance string) bool {
	n, ok := (*r.live.Load())[node]
	return ok && n.Instance == instance
}

// Info returns node's registration from the cache, if it is alive.
func (r *Registry) Info(node string) (NodeInfo, bool) {
	n, ok := (*r.live.Load())[node]
	return n, ok
}

// All returns every live node in the cache, draining or not beating
// included, by node id: the deployment as an operator sees it.
func (r *Registry) All() []NodeInfo {
	m := *r.live.Load()
	nodes := slices.Collect(maps.Values(m))
	slices.SortFunc(nodes, func(a, b NodeInfo) int { return cmp.Compare(a.Node, b.Node) })
	return nodes
}

// Nodes returns the live nodes from the cache that beat, least loaded
// first (draining nodes excluded): those whose endpoints clients may be
// given.
func (r *Registry) Nodes() []NodeInfo {
	m := *r.live.Load()
	nodes := make([]NodeInfo, 0, len(m))
	for _, n := range m {
		if !n.Draining && n.Beating {
			nodes = append(nodes, n)
		}
	}
	slices.SortFunc(nodes, func(a, b NodeInfo) int {
		if c := cmp.Compare(a.Load(), b.Load()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Conns, b.Conns); c != 0 {
			return c
		}
		return cmp.Compare(a.Node, b.Node)
	})
	return nodes
}

// Run renews the registration every Renew and re-reads the live set every
// CacheTTL until ctx ends. It registers at once.
func (r *Registry) Run(ctx context.Context) {
	r.renewOnce(ctx)
	r.refreshOnce(ctx)
	renew := time.NewTicker(r.renew)
	defer renew.Stop()
	cache := time.NewTicker(r.cacheTTL)
	defer cache.Stop()
	beat := time.NewTicker(BeatEvery)
	defer beat.Stop()
	r.beatOnce(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			r.renewOnce(ctx)
		case <-cache.C:
			r.refreshOnce(ctx)
		case <-beat.C:
			r.beatOnce(ctx)
		}
	}
}

// beatOnce sets this node's beat key (a failure says itself at the next
// renewal).
func (r *Registry) beatOnce(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, BeatEvery)
	defer cancel()
	_ = r.rdb.Set(c, r.beatKey(r.self().Node), "1", BeatTTL).Err()
}

func (r *Registry) renewOnce(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, min(r.renew, 2*time.Second))
	defer cancel()
	err := r.Register(c)
	if r.logChange(err) && err == nil && r.lost != nil {
		go r.lost()
	}
}

func (r *Registry) refreshOnce(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, min(r.cacheTTL, 2*time.Second))
	defer cancel()
	_ = r.Refresh(c) // a renewal failing says it already
}

// logChange logs a renewal error when it differs from the last one, and
// the recovery after errors, which it reports.
func (r *Registry) logChange(err error) (recovered bool) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	prev := r.lastErr.Swap(&msg)
	if prev != nil && *prev == msg {
		return false
	}
	switch {
	case err != nil:
		r.log.Warn("cluster: cannot reach Redis; local delivery goes on, other nodes are unreachable", "err", err)
	case prev != nil && *prev != "":
		r.log.Info("cluster: Redis is reachable again")
		return true
	}
	return false
}
