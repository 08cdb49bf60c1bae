package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/cluster"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/config"
	"github.com/longlink/longlink/conn"
	"github.com/longlink/longlink/dispatch/downstream"
	"github.com/longlink/longlink/internal/rediserr"
	"github.com/longlink/longlink/metrics"
	"github.com/longlink/longlink/recovery"
	"github.com/longlink/longlink/route"
	"github.com/redis/go-redis/v9"
)

// Timeouts of the cluster mode.
const (
	// takeoverTimeout bounds how long a login waits for the device's
	// previous connection on another node to be kicked and its recovery
	// state saved. Past it the login goes on; a resume may then report a
	// gap (resumed=0) that a longer wait would have avoided.
	takeoverTimeout = time.Second
	// keepTimeout bounds a receiving node's recording of a push for a
	// device that left it between the sender's lookup and the delivery.
	keepTimeout = time.Second
)

// clusterNode is a node's part in a cluster of nodes sharing one Redis
// (-redis): the Redis route, the node registry, the bus between nodes and
// the shared recovery store. It implements peers (what this node asks of
// the others, conn.Cluster included) and cluster.Handler (what other nodes
// ask of this one).
type clusterNode struct {
	g        *Gateway
	log      *slog.Logger
	rdb      redis.UniversalClient
	instance string
	route    *route.Redis
	shared   *recovery.Redis
	reg      *cluster.Registry
	bus      *cluster.Bus
	links    *cluster.Links // nil without -link-listen: requests to one node go through the bus
	routes   routeCache     // where devices of other nodes were last found
	linkAddr string         // -link-listen

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	waiters map[connKey][]chan struct{} // Released signals, guarded by mu

	rebinding atomic.Bool
	unrouted  atomic.Uint64 // devices reported unrouted by the API
	noReply   atomic.Uint64 // deliveries presumed done: the node got the push but did not answer in time
	cached    atomic.Uint64 // deliveries to the node the route cache named
	stale     atomic.Uint64 // route cache guesses that failed
	marks     atomic.Uint64 // the last durable push mark (Msg.Mark) handed out

	redisErrors rediserr.Counter // Redis commands that failed, whoever sent them
}

// connKey names one connection of a device on this node.
type connKey struct {
	device string
	conn   uint64
}

var (
	_ peers           = (*clusterNode)(nil)
	_ cluster.Handler = (*clusterNode)(nil)
)

// redisLogger sends go-redis's own messages (a failed dial, say) to the
// node's log at debug level: the cluster code logs what they mean.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Log(ctx, slog.LevelDebug, "redis: "+fmt.Sprintf(format, v...))
}

// newClusterNode connects nothing yet: go-redis dials on first use, and
// Start subscribes and registers. A node that never starts is released
// with close.
func newClusterNode(g *Gateway, cfg config.Config, log *slog.Logger) *clusterNode {
	redis.SetLogger(redisLogger{log})
	cl := &clusterNode{
		g:        g,
		log:      log,
		instance: route.NewInstance(),
		waiters:  make(map[connKey][]chan struct{}),
	}
	// One address is a standalone Redis, several the seeds of a Redis
	// Cluster, and with -redis-master the Sentinels (go-redis's
	// UniversalClient rules).
	cl.rdb = redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:      cfg.RedisAddrs(),
		MasterName: cfg.RedisMaster,
		Password:   cfg.RedisPass,
		// Fail fast while Redis is down: every caller has a fallback
		// (local delivery, unrouted), and the loops retry.
		DialTimeout:           time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		PoolTimeout:           2 * time.Second,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1, // a script must not run twice
		DialerRetries:         1,
	})
	cl.rdb.AddHook(&cl.redisErrors)
	cl.reg = cluster.NewRegistry(cluster.RegistryConfig{
		Client: cl.rdb,
		Prefix: cfg.RedisPrefix,
		TTL:    cfg.NodeTTL,
		Lost:   cl.restore,
		Logger: log,
	}, cl.info)
	cl.route = route.NewRedis(route.RedisConfig{
		Client:   cl.rdb,
		Prefix:   cfg.RedisPrefix,
		Instance: cl.instance,
		Live:     cl.reg.Live,
	})
	cl.shared = recovery.NewRedis(recovery.RedisConfig{
		Client:  cl.rdb,
		Prefix:  cfg.RedisPrefix,
		Size:    cfg.RecoverSize,
		TTL:     cfg.RecoverTTL,
		Binding: cl.route.BindingKey,
	})
	cl.bus = cluster.NewBus(cluster.BusConfig{
		Client:   cl.rdb,
		Prefix:   cfg.RedisPrefix,
		Node:     cfg.Node,
		Instance: cl.instance,
		Logger:   log,
		Resubscribed: func() {
			// Redis came back (perhaps empty): renew now rather than at
			// the next tick, so that a lost registration is noticed and
			// restored at once.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = cl.reg.Register(ctx)
		},
	}, cl)
	if cfg.LinkListen != "" {
		cl.linkAddr = cfg.LinkListen
		cl.links = cluster.NewLinks(cluster.LinkConfig{
			Node:     cfg.Node,
			Instance: cl.instance,
			Key:      []byte(cfg.APIKey),
			Addr: func(node string) (string, string, bool) {
				n, ok := cl.reg.Info(node)
				return n.Link, n.Instance, ok && n.Link != ""
			},
			Logger: log,
		}, cl)
	}
	return cl
}

// info describes this node for the registry.
func (cl *clusterNode) info() cluster.NodeInfo { return cl.nodeInfo(cl.g.localEndpoints()) }

// nodeInfo describes this node, whose access points are local.
func (cl *clusterNode) nodeInfo(local []api.Endpoint) cluster.NodeInfo {
	g := cl.g
	var eps []cluster.Endpoint
	for _, ep := range local {
		eps = append(eps, cluster.Endpoint{Proto: ep.Proto, Addr: ep.Addr})
	}
	c := g.hub.Counters()
	return cluster.NodeInfo{
		Node:      g.cfg.Node,
		Instance:  cl.instance,
		Endpoints: eps,
		Link:      cl.links.Addr(),
		Conns:     c.Connections,
		LoggedIn:  c.LoggedIn,
		MaxConns:  g.cfg.MaxConns,
		Started:   g.started.UnixMilli(),
	}
}

// bind binds the links' listener (-link-listen), so that a port in use
// fails New.
func (cl *clusterNode) bind() error {
	if cl.links == nil {
		return nil
	}
	if err := cl.links.Listen(cl.linkAddr); err != nil {
		return fmt.Errorf("gateway: -link-listen %s: %w", cl.linkAddr, err)
	}
	return nil
}

// Start implements peers: it serves the links, subscribes and
// registers. Redis being down is no reason not to start: the node serves
// its own clients and the loops keep trying.
func (cl *clusterNode) Start() error {
	if cl.links != nil {
		cl.links.Serve()
		cl.log.Info("listening", "proto", "link", "addr", cl.links.Addr())
	}
	first, cancelFirst := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelFirst()
	if err := cl.bus.Start(first); err != nil {
		cl.log.Warn("cluster: cannot subscribe yet; retrying in the background", "redis", cl.g.cfg.Redis, "err", err)
	}
	if err := cl.reg.Register(first); err != nil {
		cl.log.Warn("cluster: cannot register yet; retrying in the background", "redis", cl.g.cfg.Redis, "err", err)
	}
	return nil
}

// Announce implements peers: it registers the node again once its
// listeners are bound, with their addresses, and starts the loops (which
// read the listeners).
func (cl *clusterNode) Announce() {
	ctx, cancel := context.WithCancel(context.Background())
	cl.cancel = cancel
	cl.wg.Go(func() { cl.reg.Run(ctx) }) // registers at once
	cl.wg.Go(func() { cl.refreshLoop(ctx) })
	cl.log.Info("cluster: joined", "redis", cl.g.cfg.Redis, "node", cl.g.cfg.Node, "instance", cl.instance, "node_ttl", cl.reg.TTL())
}

// Draining implements peers: it tells the other nodes to stop handing out
// this node's endpoints; they keep routing to it until Stop.
func (cl *clusterNode) Draining(ctx context.Context) {
	if err := cl.reg.SetDraining(ctx); err != nil {
		cl.log.Warn("cluster: cannot mark the node draining", "err", err)
	}
}

// Stop implements peers: it deregisters the node and closes its Redis
// connections, once its connections are gone (their recovery state
// saved).
func (cl *clusterNode) Stop(ctx context.Context) {
	if cl.cancel != nil {
		cl.cancel()
	}
	cl.wg.Wait()
	if err := cl.reg.Deregister(ctx); err != nil {
		cl.log.Warn("cluster: cannot deregister", "err", err)
	}
	cl.close()
}

// close closes what newClusterNode and New made (the bus, the shared
// recovery store's background appends, the Redis client). Alone it is
// how New lets go of a node it could not finish: such a node never
// registered, so it does not deregister (another process may run under
// its id).
func (cl *clusterNode) close() {
	if cl.links != nil {
		_ = cl.links.Close()
	}
	_ = cl.bus.Close()
	cl.g.rec.Close()
	_ = cl.rdb.Close()
}

// AddStats implements peers.
func (cl *clusterNode) AddStats(s *metrics.Snapshot) {
	s.Push.Unrouted = cl.unrouted.Load()
	s.Push.NoReply = cl.noReply.Load()
	s.Push.RouteCached = cl.cached.Load()
	s.Push.RouteStale = cl.stale.Load()
	s.Cluster.RedisErrors = cl.redisErrors.Load()
	bs := cl.bus.Stats()
	if cl.links != nil {
		ls := cl.links.Stats()
		s.Cluster.LinkRequests = ls.Sent.Load()
		s.Cluster.LinkFallbacks = ls.Fallbacks.Load()
		s.Queues = append(s.Queues, metrics.QueueStats{Name: "cluster_link_answers", Dropped: ls.Dropped.Load()})
	}
	s.Queues = append(s.Queues,
		metrics.QueueStats{Name: "cluster_replies", Dropped: bs.Dropped.Load()},
		metrics.QueueStats{Name: "recovery_shared_appends", Dropped: cl.g.rec.Dropped()},
		metrics.QueueStats{Name: "recovery_journal", Dropped: cl.g.rec.JournalDropped()},
	)
}

// refreshLoop renews the bindings of this node's devices a few times per
// binding lifetime, in batches: the bindings expire only when the node is
// gone, at no cost per heartbeat.
func (cl *clusterNode) refreshLoop(ctx context.Context) {
	t := time.NewTicker(route.DefaultDeviceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cl.rebind(ctx)
		}
	}
}

// restore is the registry's Lost: Redis lost this node's registration,
// perhaps all its data. The bindings of the devices connected here are
// written again (without overwriting newer ones). Group memberships and
// the recovery state of devices connected nowhere are not: they are lost
// with Redis's data unless Redis persists it.
func (cl *clusterNode) restore() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl.rebind(ctx)
}

// rebind refreshes the bindings of every device connected here.
func (cl *clusterNode) rebind(ctx context.Context) {
	if !cl.rebinding.CompareAndSwap(false, true) {
		return
	}
	defer cl.rebinding.Store(false)
	ts := cl.g.hub.All(nil)
	binds := make([]route.Binding, 0, len(ts))
	for _, t := range ts {
		if c, ok := t.Conn.(*conn.Conn); ok {
			binds = append(binds, route.Binding{Device: c.Device(), Loc: route.Location{Node: cl.g.cfg.Node, Conn: c.ID()}})
		}
	}
	n, err := cl.route.Refresh(ctx, binds)
	if err != nil {
		cl.log.Warn("cluster: refreshing the bindings failed", "devices", len(binds), "written", n, "err", err)
		return
	}
	cl.log.Debug("cluster: bindings refreshed", "devices", len(binds), "written", n)
}

// Takeover implements conn.Cluster: the device's connection on prev's
// node is kicked there, and this returns once that node has saved the
// device's recovery state (so that Attach takes it over), or after
// takeoverTimeout.
func (cl *clusterNode) Takeover(ctx context.Context, device string, prev route.Location) {
	ctx, cancel := context.WithTimeout(ctx, takeoverTimeout)
	defer cancel()
	_, err := cl.send(ctx, prev.Node, cluster.Msg{
		Kind: cluster.KindKick, Device: device, Conn: prev.Conn,
		Status: uint16(codec.StatusDuplicateLogin), Reason: "logged in on another node", Settle: true,
	})
	if err != nil {
		cl.log.Info("cluster: the previous node did not confirm the takeover; resume may report a gap", "device", device, "node", prev.Node, "err", err)
	}
}

// Released implements conn.Cluster: it wakes a Kick waiting for this
// connection to be gone.
func (cl *clusterNode) Released(device string, id uint64) {
	k := connKey{device, id}
	cl.mu.Lock()
	ws := cl.waiters[k]
	delete(cl.waiters, k)
	cl.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
}

// Kick implements cluster.Handler.
func (cl *clusterNode) Kick(ctx context.Context, device string, id uint64, status uint16, reason string, settle bool) bool {
	var gone chan struct{}
	if settle && id != 0 {
		// Waiting first, so that a release between the kick and the wait
		// is not missed.
		k := connKey{device, id}
		gone = make(chan struct{})
		cl.mu.Lock()
		cl.waiters[k] = append(cl.waiters[k], gone)
		cl.mu.Unlock()
		defer func() {
			cl.mu.Lock()
			ws := cl.waiters[k]
			if i := slices.Index(ws, gone); i >= 0 {
				ws = slices.Delete(ws, i, i+1)
			}
			if len(ws) == 0 {
				delete(cl.waiters, k)
			} else {
				cl.waiters[k] = ws
			}
			cl.mu.Unlock()
		}()
	}
	kicked := cl.g.hub.KickConn(device, id, codec.Status(status), reason)
	if !settle {
		return kicked
	}
	if kicked {
		select {
		case <-gone:
		case <-ctx.Done():
		}
	}
	// The connection may have been on its way out before the kick: wait
	// for its recovery state to be saved all the same.
	_ = cl.g.rec.Settle(ctx, device)
	return kicked
}

// Deliver implements cluster.Handler. A device that is not connected here
// (it left since the sender looked it up) has the push recorded for
// resume here, before the answer, so the sender can report it offline;
// unless the sender guessed its node from its cache (cached), or the
// device is moving (recovery.Store.Keep hands it back: a login of it is
// under way elsewhere), and it is answered missing or moved and routed
// anew by the sender. A device whose login is under way here gets the
// push once it is logged in. A durable push is answered once it is
// journaled; an answer that waits (a journal, a login) waits on a
// goroutine of its own: the bus or link goes on with the next message
// meanwhile.
func (cl *clusterNode) Deliver(devices []string, frame []byte, cached bool, mark string, answer func(missing, moved []string)) {
	g := cl.g
	p := &downstream.Push{Frame: frame, Mark: mark}
	g.makeDurable(p)
	var missing, waiting []string
	for _, d := range devices {
		switch c := g.hub.Lookup(d); {
		case c != nil:
			g.deliver(c, p)
		case g.hub.LoginUnderWay(d) != nil:
			waiting = append(waiting, d)
		default:
			missing = append(missing, d)
		}
	}
	// Kept now, in the order the messages came: two pushes for one
	// offline device are appended in order.
	missing, moved := cl.keep(missing, frame, cached)
	if len(waiting) == 0 && p.Durable == nil {
		answer(missing, moved)
		return
	}
	go func() {
		if left := cl.afterLogins(waiting, p); len(left) > 0 {
			m, mv := cl.keep(left, frame, cached)
			missing, moved = append(missing, m...), append(moved, mv...)
		}
		g.awaitJournal(context.Background(), p)
		answer(missing, moved)
	}()
}

// keep records frame for resume for devices not connected here and
// returns them split: missing (kept, or not cached and not kept because
// they have no state) and moved (handed back by Keep: a login of theirs
// is under way). With cached nothing is kept: every device is missing.
func (cl *clusterNode) keep(devices []string, frame []byte, cached bool) (missing, moved []string) {
	if len(devices) == 0 || cached {
		return devices, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), keepTimeout)
	defer cancel()
	back, err := cl.g.rec.Keep(ctx, devices, frame, time.Now())
	if err != nil {
		cl.log.Warn("cluster: keeping pushes for resume failed", "devices", len(devices), "err", err)
	}
	if len(back) == 0 {
		return devices, nil
	}
	return without(devices, back), back
}

// afterLogins delivers p to devices whose login is under way here, once
// it ends, and returns those not logged in by then (it failed, or took
// longer than loginWait).
func (cl *clusterNode) afterLogins(devices []string, p *downstream.Push) (left []string) {
	if len(devices) == 0 {
		return nil
	}
	t := time.NewTimer(loginWait)
	defer t.Stop()
	for _, d := range devices {
		if ch := cl.g.hub.LoginUnderWay(d); ch != nil {
			select {
			case <-ch:
			case <-t.C:
			}
		}
		if c := cl.g.hub.Lookup(d); c != nil {
			cl.g.deliver(c, p)
			continue
		}
		left = append(left, d)
	}
	return left
}

// loginWait bounds how long a push waits for a login under way here: a
// login's route work is bounded by -route-timeout per call, and this
// outlasts a few of them.
const loginWait = 5 * time.Second

// DeliverGroup implements cluster.Handler.
func (cl *clusterNode) DeliverGroup(group string, frame []byte) int {
	return cl.g.deliverMany(cl.g.hub.Members(group), &downstream.Push{Frame: frame})
}

// DeliverAll implements cluster.Handler.
func (cl *clusterNode) DeliverAll(frame []byte) int {
	return cl.g.deliverMany(cl.g.hub.All(nil), &downstream.Push{Frame: frame})
}

// Members implements cluster.Handler.
func (cl *clusterNode) Members(group string, devices []string, join bool) {
	for _, d := range devices {
		if join {
			cl.g.hub.Join(group, d)
		} else {
			cl.g.hub.Leave(group, d)
		}
	}
}

// send sends m to node on its link, or through the bus when there is no
// link to it (none announced, or it cannot be made).
func (cl *clusterNode) send(ctx context.Context, node string, m cluster.Msg) (cluster.Reply, error) {
	if cl.links != nil {
		r, err := cl.links.Send(ctx, node, m)
		if !errors.Is(err, cluster.ErrNoLink) {
			return r, err
		}
	}
	return cl.bus.Send(ctx, node, m)
}

// PushElsewhere implements peers: it delivers frame to devices not
// connected here, through the nodes they are connected to, and fills res:
// Delivered, Offline (their push is kept for resume where they have
// recovery state) and Unrouted. Every device is accounted for: it
// returns none.
//
// A device whose node is in the route cache is sent there at once,
// marked cached, without a route lookup; the devices that node does not
// hold, and those it could not be sent, are looked up and routed as the
// others are. So a push to a device that stays put costs no Redis
// command.
func (cl *clusterNode) PushElsewhere(ctx context.Context, devices []string, frame []byte, res *api.PushResult) []string {
	var guessed map[string][]string
	rest := devices
	if cl.routes.any() {
		rest = nil
		for _, d := range devices {
			if node, ok := cl.routes.get(d); ok {
				if guessed == nil {
					guessed = make(map[string][]string)
				}
				guessed[node] = append(guessed[node], d)
				continue
			}
			rest = append(rest, d)
		}
		for _, a := range cl.sendAll(ctx, guessed, frame, true) {
			switch {
			case a.err == nil:
				away := len(a.reply.Missing) + len(a.reply.Moved)
				res.Delivered += len(a.devices) - away
				cl.cached.Add(uint64(len(a.devices) - away))
				cl.stale.Add(uint64(away))
				for _, d := range a.reply.Missing {
					cl.routes.forget(d)
				}
				for _, d := range a.reply.Moved {
					cl.routes.forget(d)
				}
				rest = append(append(rest, a.reply.Missing...), a.reply.Moved...)
			case errors.Is(a.err, cluster.ErrNoReply):
				delivered, kept, back, err := cl.unanswered(ctx, a, frame)
				if err != nil {
					delivered, kept, back = nil, nil, a.devices // routed again, as the others
				}
				cl.countNoReply(a.node, delivered)
				res.Delivered += len(delivered)
				res.Offline = append(res.Offline, kept...)
				for _, d := range back {
					cl.routes.forget(d)
				}
				rest = append(rest, back...)
			default:
				cl.stale.Add(uint64(len(a.devices)))
				for _, d := range a.devices {
					cl.routes.forget(d)
				}
				rest = append(rest, a.devices...)
			}
		}
		if len(rest) == 0 {
			return nil
		}
	}
	// A device in the middle of a move (looked up offline or on a dead
	// node, then logged in elsewhere; or logging in where it was sent) is
	// routed again, after a pause that lets its login finish.
	for round := range routeRounds {
		if round > 0 && !pause(ctx, routePause<<(round-1)) {
			break
		}
		if rest = cl.pushRouted(ctx, rest, frame, res, round == routeRounds-1); len(rest) == 0 {
			return nil
		}
	}
	cl.log.Warn("cluster: devices kept moving while a push looked for them; they are unrouted", "devices", len(rest))
	res.Unrouted = append(res.Unrouted, rest...)
	cl.unrouted.Add(uint64(len(rest)))
	return nil
}

// routeRounds bounds how often PushElsewhere routes a device that moves
// under it; routePause, doubled each time, is the pause before each new
// round (10+20+40+80+160 ms: a login under load has finished by then).
const (
	routeRounds = 6
	routePause  = 10 * time.Millisecond
)

// pause waits d, or less if ctx ends first; it reports whether ctx is
// still live.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pushRouted delivers frame to devices where the route places them and
// accounts for them in res, except those it returns: moving since the
// route was read, to be routed again. On the last round a device bound
// here but not connected is taken as gone, not as logging in.
func (cl *clusterNode) pushRouted(ctx context.Context, devices []string, frame []byte, res *api.PushResult, last bool) (again []string) {
	locs, online, err := cl.route.LookupMany(ctx, devices)
	if err != nil {
		cl.log.Warn("cluster: the route is unreachable; devices not connected here are unrouted", "devices", len(devices), "err", err)
		res.Unrouted = append(res.Unrouted, devices...)
		cl.unrouted.Add(uint64(len(devices)))
		return nil
	}
	var offline, here []string
	var hereAt []route.Location
	byNode := make(map[string][]string)
	for i, d := range devices {
		switch {
		case !online[i]:
			offline = append(offline, d)
		case locs[i].Node == cl.g.cfg.Node:
			// Bound here: logged in since the caller looked (this is a
			// later round), or a login under way (it binds first), or a
			// connection that just closed.
			here = append(here, d)
			hereAt = append(hereAt, locs[i])
		default:
			byNode[locs[i].Node] = append(byNode[locs[i].Node], d)
		}
	}
	if len(here) > 0 {
		p := &downstream.Push{Frame: frame}
		cl.g.makeDurable(p)
		left := cl.afterLogins(here, p)
		cl.g.awaitJournal(ctx, p)
		res.Delivered += len(here) - len(left)
		for _, d := range left {
			if !last {
				again = append(again, d) // closing: about to unbind
				continue
			}
			// Still bound here and not connected: the connection
			// closed and its Unbind failed. The binding goes; the
			// device is offline.
			_ = cl.route.Unbind(ctx, d, hereAt[slices.Index(here, d)])
			offline = append(offline, d)
		}
	}
	for _, a := range cl.sendAll(ctx, byNode, frame, false) {
		switch {
		case a.err == nil:
			res.Delivered += len(a.devices) - len(a.reply.Missing) - len(a.reply.Moved)
			res.Offline = append(res.Offline, a.reply.Missing...) // kept by that node
			again = append(again, a.reply.Moved...)
			cl.remember(a.devices, a.reply.Missing, a.reply.Moved, a.node)
		case errors.Is(a.err, cluster.ErrNoReply):
			// The node received the push and did not answer in time.
			delivered, kept, back, err := cl.unanswered(ctx, a, frame)
			if err != nil {
				cl.log.Warn("cluster: a node died holding a durable push, and keeping it failed; its devices are unrouted", "node", a.node, "devices", len(a.devices), "err", err)
				res.Unrouted = append(res.Unrouted, a.devices...)
				cl.unrouted.Add(uint64(len(a.devices)))
				continue
			}
			cl.countNoReply(a.node, delivered)
			res.Delivered += len(delivered)
			res.Offline = append(res.Offline, kept...)
			again = append(again, back...)
		case errors.Is(a.err, cluster.ErrNoReceiver) && cl.g.rec.Durable() && ackRequired(frame):
			// The node died holding the devices (it no longer listens, and
			// its registration has not expired yet): a durable push waits
			// for their next login in Redis.
			dead, _ := cl.reg.Info(a.node)
			back, _, err := cl.g.rec.KeepLost(ctx, a.devices, frame, dead.Instance, "")
			if err != nil {
				cl.log.Warn("cluster: keeping durable pushes for a dead node's devices failed; they are unrouted", "node", a.node, "devices", len(a.devices), "err", err)
				res.Unrouted = append(res.Unrouted, a.devices...)
				cl.unrouted.Add(uint64(len(a.devices)))
				continue
			}
			again = append(again, back...)
			res.Offline = append(res.Offline, without(a.devices, back)...)
		default:
			cl.log.Warn("cluster: cannot reach a node; its devices are unrouted", "node", a.node, "devices", len(a.devices), "err", a.err)
			res.Unrouted = append(res.Unrouted, a.devices...)
			cl.unrouted.Add(uint64(len(a.devices)))
		}
	}
	if len(offline) > 0 {
		back, err := cl.g.rec.Keep(ctx, offline, frame, time.Now())
		if err != nil {
			cl.log.Warn("cluster: keeping pushes for resume failed", "devices", len(offline), "err", err)
		}
		again = append(again, back...)
		res.Offline = append(res.Offline, without(offline, back)...)
	}
	return again
}

// without returns devices less those in drop.
func without(devices, drop []string) []string {
	if len(drop) == 0 {
		return devices
	}
	out := make([]string, 0, len(devices))
	for _, d := range devices {
		if !slices.Contains(drop, d) {
			out = append(out, d)
		}
	}
	return out
}

// sent is one node's part of a push and how it went.
type sent struct {
	node    string
	devices []string
	reply   cluster.Reply
	err     error
	mark    string // of a durable push (Msg.Mark)
}

// sendAll sends frame to each node's devices at once and returns how each
// went, in no order.
func (cl *clusterNode) sendAll(ctx context.Context, byNode map[string][]string, frame []byte, cached bool) []sent {
	durable := cl.g.rec.Durable() && ackRequired(frame)
	msg := func(ds []string) cluster.Msg {
		m := cluster.Msg{Kind: cluster.KindPush, Devices: ds, Frame: frame, Cached: cached}
		if durable {
			m.Mark = cl.instance + "." + strconv.FormatUint(cl.marks.Add(1), 36)
		}
		return m
	}
	if len(byNode) == 1 {
		for node, ds := range byNode {
			m := msg(ds)
			r, err := cl.send(ctx, node, m)
			return []sent{{node, ds, r, err, m.Mark}}
		}
	}
	answers := make(chan sent, len(byNode))
	for node, ds := range byNode {
		go func() {
			m := msg(ds)
			r, err := cl.send(ctx, node, m)
			answers <- sent{node, ds, r, err, m.Mark}
		}()
	}
	out := make([]sent, 0, len(byNode))
	for range byNode {
		out = append(out, <-answers)
	}
	return out
}

// countNoReply counts devices presumed delivered: node received their
// push and did not answer in time.
func (cl *clusterNode) countNoReply(node string, devices []string) {
	if len(devices) == 0 {
		return
	}
	cl.noReply.Add(uint64(len(devices)))
	cl.log.Warn("cluster: a node received a push but did not answer in time; counted as delivered", "node", node, "devices", len(devices))
}

// deathWait bounds how long a durable push that a node received and did
// not answer waits to learn whether that node died: a node stops beating
// within cluster.BeatTTL of its death, and the live set is re-read each
// pollEvery meanwhile.
const (
	deathWait = cluster.BeatTTL + time.Second
	pollEvery = 100 * time.Millisecond
)

// unanswered decides what became of a push node received (it was written
// to its link or channel) and did not answer. A push that is not durable,
// or whose node still beats after deathWait (alive, slow), is counted
// delivered and not sent again. A durable push whose node stopped beating
// meanwhile (it died, maybe before it journaled the push) is kept in
// Redis for the devices' next login, except where the dead node's journal
// holds it under its mark: those were delivered. It returns the devices
// delivered, kept (offline), to route again (back), and an error when
// none of that could be decided (Redis unreachable).
func (cl *clusterNode) unanswered(ctx context.Context, a sent, frame []byte) (delivered, offline, back []string, err error) {
	if a.mark == "" {
		return a.devices, nil, nil, nil
	}
	info, _ := cl.reg.Info(a.node)
	deadline := time.Now().Add(deathWait)
	for {
		// Unanswered pushes to a dead node come many at once: their polls
		// share reads of the live set.
		if err := cl.reg.RefreshSince(ctx, time.Now().Add(-pollEvery/2)); err == nil {
			if n, ok := cl.reg.Info(a.node); !ok || n.Instance != info.Instance || !n.Beating {
				break // dead
			}
		}
		if time.Now().After(deadline) {
			return a.devices, nil, nil, nil // alive: it will answer, or has delivered
		}
		if !pause(ctx, pollEvery) {
			return a.devices, nil, nil, nil
		}
	}
	back, journaled, err := cl.g.rec.KeepLost(ctx, a.devices, frame, info.Instance, a.mark)
	if err != nil {
		return nil, nil, nil, err
	}
	kept := without(without(a.devices, back), journaled)
	cl.log.Warn("cluster: a node died holding a durable push it had not answered; kept for its devices' next login", "node", a.node, "devices", len(a.devices), "kept", len(kept), "journaled_there", len(journaled), "routed_again", len(back))
	return journaled, kept, back, nil
}

// remember caches node as the place of the devices it delivered to (those
// neither missing nor moved).
func (cl *clusterNode) remember(devices, missing, moved []string, node string) {
	gone := make(map[string]bool, len(missing)+len(moved))
	for _, d := range missing {
		gone[d] = true
	}
	for _, d := range moved {
		gone[d] = true
	}
	for _, d := range devices {
		if !gone[d] {
			cl.routes.put(d, node)
		}
	}
}

// FanoutGroup implements peers, in one message to every other node.
func (cl *clusterNode) FanoutGroup(ctx context.Context, group string, frame []byte) (int, error) {
	return cl.fanout(ctx, cluster.Msg{Kind: cluster.KindGroup, Group: group, Frame: frame})
}

// FanoutAll implements peers, in one message to every other node.
func (cl *clusterNode) FanoutAll(ctx context.Context, frame []byte) (int, error) {
	return cl.fanout(ctx, cluster.Msg{Kind: cluster.KindAll, Frame: frame})
}

// fanout sends a group push or a broadcast to every other node and
// returns the sum of their deliveries. A node that received it but did
// not answer within the reply timeout is missing from the sum (it still
// delivers); the error is for a message no node could be sent.
func (cl *clusterNode) fanout(ctx context.Context, m cluster.Msg) (int, error) {
	replies, receivers, err := cl.bus.Fanout(ctx, m)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range replies {
		n += r.Count
	}
	if len(replies) < receivers {
		cl.log.Warn("cluster: some nodes did not answer in time; their deliveries are not counted", "kind", m.Kind, "receivers", receivers, "answers", len(replies))
	}
	return n, nil
}

// KickElsewhere implements peers: it closes device's connection on
// whichever node holds it.
func (cl *clusterNode) KickElsewhere(ctx context.Context, device, reason string) (bool, error) {
	loc, online, err := cl.route.Lookup(ctx, device)
	if err != nil || !online || loc.Node == cl.g.cfg.Node {
		return false, err
	}
	r, err := cl.send(ctx, loc.Node, cluster.Msg{
		Kind: cluster.KindKick, Device: device, Conn: loc.Conn,
		Status: uint16(codec.StatusUnauthorized), Reason: reason,
	})
	if err != nil {
		return false, fmt.Errorf("%w: kicking on node %s: %w", api.ErrPeersUnavailable, loc.Node, err)
	}
	return r.Count == 1, nil
}

// MembersChanged implements peers: it tells the other nodes of a
// membership change, for the index of whichever holds the devices.
func (cl *clusterNode) MembersChanged(ctx context.Context, group string, devices []string, join bool) error {
	err := cl.bus.Publish(ctx, cluster.Msg{Kind: cluster.KindMembers, Group: group, Devices: devices, Join: join})
	if err != nil {
		return fmt.Errorf("%w: the membership is stored, but other nodes could not be told: %w", api.ErrPeersUnavailable, err)
	}
	return nil
}

// Nodes implements peers: every live node of the registry by id, with
// self (this node, current) in its place, listed even before its first
// registration.
func (cl *clusterNode) Nodes(self api.Node) []api.Node {
	self.Instance = cl.instance
	out := []api.Node{self}
	for _, n := range cl.reg.All() {
		if n.Node == self.Node {
			continue
		}
		eps := make([]api.Endpoint, 0, len(n.Endpoints))
		for _, ep := range n.Endpoints {
			eps = append(eps, api.Endpoint{Proto: ep.Proto, Addr: ep.Addr, Node: n.Node, Load: n.Conns})
		}
		out = append(out, api.Node{
			Node: n.Node, Instance: n.Instance, Connections: n.Conns, LoggedIn: n.LoggedIn,
			MaxConns: n.MaxConns, Load: n.Load(), Draining: n.Draining, Beating: n.Beating,
			Started: n.Started, Endpoints: eps,
		})
	}
	slices.SortFunc(out, func(a, b api.Node) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// Endpoints implements peers: the live nodes' access points, least loaded
// first, this node's (local) with its current load.
func (cl *clusterNode) Endpoints(local []api.Endpoint) []api.Endpoint {
	nodes := cl.reg.Nodes()
	self := cl.nodeInfo(local)
	found := false
	for i := range nodes {
		if nodes[i].Node == self.Node {
			nodes[i] = self
			found = true
		}
	}
	if !found && cl.g.ready.Load() {
		nodes = append(nodes, self)
	}
	slices.SortStableFunc(nodes, func(a, b cluster.NodeInfo) int {
		if c := cmp.Compare(a.Load(), b.Load()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Conns, b.Conns); c != 0 {
			return c
		}
		return cmp.Compare(a.Node, b.Node)
	})
	var eps []api.Endpoint
	for _, n := range nodes {
		for _, ep := range n.Endpoints {
			eps = append(eps, api.Endpoint{Proto: ep.Proto, Addr: ep.Addr, Node: n.Node, Load: n.Conns})
		}
	}
	return eps
}
