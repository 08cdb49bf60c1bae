// Package gateway assembles a Longlink node from its parts: the reactor
// listeners, the session hub (conn), the forwarding groups
// (dispatch/upstream), the downstream task group, the route and the
// recovery store, and the HTTP API. It implements api.Gateway, the
// operations the HTTP API exposes, on top of them.
//
// What a node asks of the other nodes is one interface, peers (peers.go).
// With -redis the node is one of several sharing a Redis (cluster.go,
// docs/cluster.md): the route is route.Redis, recovery state of devices
// connected nowhere is kept in Redis, and pushes for devices of other
// nodes, group pushes and broadcasts travel between nodes on the
// cluster.Bus. Without it the peers are alone, which does nothing: the
// in-memory route and one node.
//
// main.go is only flags → config.Config → gateway.New → Start → wait for
// a signal → Shutdown; tests start whole nodes the same way.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/admit"
	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/auth"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/config"
	"github.com/longlink/longlink/conn"
	"github.com/longlink/longlink/dispatch/downstream"
	"github.com/longlink/longlink/dispatch/upstream"
	"github.com/longlink/longlink/events"
	"github.com/longlink/longlink/metrics"
	"github.com/longlink/longlink/netquality"
	"github.com/longlink/longlink/reactor"
	"github.com/longlink/longlink/recovery"
	"github.com/longlink/longlink/route"
	"github.com/longlink/longlink/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Gateway is one running node.
type Gateway struct {
	cfg    config.Config
	log    *slog.Logger
	secret []byte

	route route.Route
	rec   *recovery.Store
	down  *downstream.Group
	up    *upstream.Dispatcher
	hub   *conn.Hub
	evs   *events.Sink // nil without -events-url
	peers peers        // alone without -redis: a single node

	tcp    *reactor.Listener
	ws     *reactor.Listener
	tlsL   *reactor.Listener
	cert   *certificate // nil without -tls-listen
	apiLn  net.Listener
	apiSrv *http.Server

	pushRequests, offline atomic.Uint64
	ready                 atomic.Bool
	stopOnce              sync.Once
	started               time.Time
}

var configureOnce sync.Once

// New builds a node from cfg, which must have passed Validate. Nothing
// listens until Start. When it fails, what it had started is closed.
func New(cfg config.Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.Default()
	}
	var err error
	configureOnce.Do(func() { err = reactor.Configure(cfg.Loops, cfg.ReadBuffer) })
	if err != nil {
		return nil, err
	}
	// undo closes what New has started, newest first, when a later step
	// fails.
	var undo []func()
	fail := func(err error) (*Gateway, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: log, secret: []byte(cfg.JWTSecret), started: time.Now()}
	g.route = route.NewMemory()
	g.rec = recovery.New(cfg.RecoverSize, cfg.RecoverTTL)
	g.peers = alone{}
	if cfg.Redis != "" {
		cl := newClusterNode(g, cfg, log)
		g.route = cl.route
		g.rec.Share(cl.shared, recovery.ShareOptions{Logger: log, Durable: true})
		g.peers = cl
		undo = append(undo, cl.close)
		if err := cl.bind(); err != nil {
			return fail(err)
		}
	}
	workers := cfg.DownWorkers
	if workers <= 0 {
		workers = downWorkers(runtime.GOMAXPROCS(0))
	}
	g.down, err = downstream.New(downstream.Options{
		Workers:    workers,
		MaxPending: cfg.MaxPending,
		MaxQueue:   cfg.DownQueue,
	})
	if err != nil {
		return fail(fmt.Errorf("gateway: %w", err))
	}
	undo = append(undo, g.down.Close)
	g.up, err = upstream.New(cfg.Biz, upstream.Options{Node: cfg.Node, MaxBody: cfg.MaxFrame - codec.HeaderSize})
	if err != nil {
		return fail(fmt.Errorf("gateway: businesses: %w", err))
	}
	undo = append(undo, func() { _ = g.up.Close(context.Background()) }) // nothing was submitted: returns at once
	var sink conn.Events
	if cfg.EventsURL != "" {
		g.evs = events.New(cfg.EventsURL, cfg.Node, events.Options{Logger: log})
		sink = g.evs
		undo = append(undo, func() { g.evs.Close(context.Background()) }) // nothing was queued: returns at once
	}
	var tlsConfig *tls.Config
	if cfg.TLSListen != "" {
		if g.cert, err = newCertificate(cfg.TLSCert, cfg.TLSKey); err != nil {
			return fail(err)
		}
		tlsConfig = g.cert.config()
	}
	origins, err := websocket.ParseOrigins(cfg.WSOrigins)
	if err != nil {
		return fail(fmt.Errorf("gateway: -ws-origins: %w", err))
	}
	g.hub = conn.NewHub(conn.Options{
		Node:             cfg.Node,
		MaxFrame:         cfg.MaxFrame,
		Heartbeat:        cfg.Heartbeat,
		HeartbeatMin:     cfg.EffectiveHeartbeatMin(),
		HeartbeatMax:     cfg.HeartbeatMax,
		IdleTimeout:      cfg.IdleTimeout,
		SessionExpiry:    cfg.SessionExpiry,
		LoginTimeout:     cfg.LoginTimeout,
		Rate:             cfg.Rate,
		Burst:            cfg.RateBurst,
		FrameRate:        cfg.FrameRate,
		FrameBurst:       cfg.FrameBurst,
		MaxInput:         cfg.MaxInput,
		MaxConns:         cfg.MaxConns,
		HandshakeTimeout: cfg.TLSHandshake,
		Admit: admit.New(admit.Options{
			MaxConns:    cfg.MaxConnsIP,
			MaxUnauth:   cfg.MaxUnauthIP,
			ConnectRate: cfg.ConnRateIP,
		}),
		RecoverSize: cfg.RecoverSize,
		Verifier:    auth.NewVerifier(g.secret),
		Route:       g.route,
		Recovery:    g.rec,
		Down:        g.down,
		Upstream:    g.up,
		Events:      sink,
		Cluster:     g.peers,
		SharedRoute: cfg.Redis != "",
		TLS:         tlsConfig,
		Origins:     origins,
		Logger:      log,
	})
	return g, nil
}

// downWorkers is the number of downstream writers for procs Ps when
// -down-workers is 0: one less than procs, at least 1. A writer in a fan-out
// never blocks (its system calls are short), so it keeps its P, and the Go
// runtime polls the network only from an idle P or from sysmon. With a
// writer on every P, each network event in a fan-out (a push API call, a
// login, a PING, netpoll's loop itself) waits for a preemption; the spare
// P serves the reactor and the API at once (docs/architecture.md, "One
// downstream writer fewer than Ps").
func downWorkers(procs int) int { return max(1, procs-1) }

// Start opens the listeners. With -redis the node first subscribes and
// registers, so that it can hear other nodes before its devices are bound.
func (g *Gateway) Start() error {
	if err := g.peers.Start(); err != nil {
		return err
	}
	var err error
	lopts := reactor.Options{SendBuffer: g.cfg.SendBuffer}
	if g.cfg.Listen != "" {
		if g.tcp, err = reactor.Listen(g.cfg.Listen, g.hub.Handler(conn.TCP), lopts); err != nil {
			return err
		}
		g.log.Info("listening", "proto", "tcp", "addr", g.tcp.Addr().String())
	}
	if g.cfg.WSListen != "" {
		if g.ws, err = reactor.Listen(g.cfg.WSListen, g.hub.Handler(conn.WebSocket), lopts); err != nil {
			return err
		}
		g.log.Info("listening", "proto", "ws", "addr", g.ws.Addr().String())
	}
	if g.cfg.TLSListen != "" {
		if g.tlsL, err = reactor.Listen(g.cfg.TLSListen, g.hub.Handler(conn.TLS), lopts); err != nil {
			return err
		}
		g.log.Info("listening", "proto", "tls", "addr", g.tlsL.Addr().String())
	}
	if g.cfg.APIListen != "" {
		var ln net.Listener
		if ln, err = net.Listen("tcp", g.cfg.APIListen); err != nil {
			return fmt.Errorf("gateway: api listen %s: %w", g.cfg.APIListen, err)
		}
		// Every connection to the API port costs a goroutine, so their
		// number is capped and each one's life bounded by the timeouts:
		// a client that sends slowly or not at all is cut off instead of
		// being held open.
		g.apiLn = api.LimitListener(ln, g.cfg.APIMaxConns)
		reg := metrics.NewRegistry(g.Stats)
		handler := api.New(g, api.Options{
			APIKey:     g.cfg.APIKey,
			Metrics:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
			MetricsKey: g.cfg.MetricsKey,
			Pprof:      api.PprofMode(g.cfg.Pprof),
			// A push body carries up to -max-frame bytes, 4/3 larger in
			// base64, plus its JSON around it.
			MaxBody: max(api.DefaultMaxBody, int64(g.cfg.MaxFrame)*4/3+64<<10),
		})
		g.apiSrv = &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: g.cfg.APIReadHeaderTimeout(),
			ReadTimeout:       g.cfg.APIReadTimeout,
			WriteTimeout:      g.cfg.APIWriteTimeout,
			IdleTimeout:       g.cfg.APIIdleTimeout,
		}
		go func() {
			if err := g.apiSrv.Serve(g.apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("api server stopped", "err", err)
			}
		}()
		g.log.Info("listening", "proto", "http", "addr", g.apiLn.Addr().String())
	}
	g.peers.Announce() // now with the bound endpoints
	g.ready.Store(true)
	return nil
}

// TCPAddr is the bound TCP address ("" when TCP is off).
func (g *Gateway) TCPAddr() string {
	if g.tcp == nil {
		return ""
	}
	return g.tcp.Addr().String()
}

// WSAddr is the bound WebSocket address ("" when WebSocket is off).
func (g *Gateway) WSAddr() string {
	if g.ws == nil {
		return ""
	}
	return g.ws.Addr().String()
}

// APIAddr is the bound API address ("" when the API is off).
func (g *Gateway) APIAddr() string {
	if g.apiLn == nil {
		return ""
	}
	return g.apiLn.Addr().String()
}

// Shutdown drains the node: it stops accepting, lets in-flight upstream
// requests finish (until ctx ends) and answers them, kicks every
// connection with SHUTTING_DOWN (and a redirect when another endpoint is
// known), and closes everything. It is safe to call more than once.
func (g *Gateway) Shutdown(ctx context.Context) error {
	var err error
	g.stopOnce.Do(func() { err = g.shutdown(ctx) })
	return err
}

func (g *Gateway) shutdown(ctx context.Context) error {
	g.ready.Store(false)
	g.peers.Draining(ctx)
	for _, l := range []*reactor.Listener{g.tcp, g.ws, g.tlsL} {
		if l != nil {
			_ = l.StopAccepting()
		}
	}
	// In-flight upstream requests finish first, so that their RESPONSEs
	// reach connections still open; new REQUESTs are answered
	// SHUTTING_DOWN meanwhile. Then every connection is kicked.
	upErr := g.up.Close(ctx)
	kicked := g.hub.Drain(g.redirect(ctx))
	g.log.Info("draining", "connections", kicked)
	// Wait for the KICKs to be written and the sockets closed.
	for g.hub.Counters().Connections > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	for _, l := range []*reactor.Listener{g.tcp, g.ws, g.tlsL} {
		if l != nil {
			_ = l.Shutdown(ctx)
		}
	}
	if g.apiSrv != nil {
		_ = g.apiSrv.Shutdown(ctx)
	}
	// The connections are gone and their recovery state saved: leave the
	// cluster before the parts that other nodes' messages use.
	g.peers.Stop(ctx)
	g.hub.Close()
	g.down.Close()
	if g.evs != nil {
		g.evs.Close(ctx)
	}
	_ = g.route.Close()
	return upErr
}

// redirect is the least loaded other endpoint for clients of a draining
// node; a single node has none.
func (g *Gateway) redirect(ctx context.Context) string {
	eps, err := g.Endpoints(ctx)
	if err != nil {
		return ""
	}
	for _, ep := range eps {
		if ep.Node != g.cfg.Node && ep.Proto == "tcp" {
			return ep.Addr
		}
	}
	return ""
}

// Ready implements api.Gateway.
func (g *Gateway) Ready() bool { return g.ready.Load() }

// Stats implements api.Gateway.
func (g *Gateway) Stats() metrics.Snapshot {
	h := g.hub.Counters()
	rtts, rttDropped := g.hub.ClientRTT()
	d := g.down.Stats()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, cpu := metrics.ReadProcess()
	s := metrics.Snapshot{
		Node:          g.cfg.Node,
		Connections:   h.Connections,
		LoggedIn:      h.LoggedIn,
		Goroutines:    int64(runtime.NumGoroutine()),
		HeapInuse:     int64(ms.HeapInuse),
		RSS:           rss,
		CPUSeconds:    cpu,
		Accepted:      h.Accepted,
		Refused:       h.Refused,
		RefusedSource: h.RefusedSource,
		Throttled:     h.Throttled,
		RateLimited:   h.RateLimited,
		Logins:        h.Logins,
		LoginFail:     h.LoginFailures,
		Refreshes:     h.Refreshes,
		RefreshFail:   h.RefreshFailures,
		FramesIn:      h.FramesIn,
		FramesOut:     d.FramesOut,
		BytesIn:       h.BytesIn,
		BytesOut:      d.BytesOut,
		Writes:        d.Writes,
		Kicks:         map[string]uint64{},
		ClientRTT:     clientRTT(rtts),
		Heartbeats:    heartbeats(g.hub.Intervals()),
		RTTDropped:    rttDropped,
		Push: metrics.PushStats{
			Requests:   g.pushRequests.Load(),
			Deliveries: d.Deliveries,
			Offline:    g.offline.Load(),
			Recovered:  h.Recovered,
			Acks:       h.Acks,
		},
		Businesses: g.up.Stats(),
		Queues: []metrics.QueueStats{
			{Name: "downstream_tasks", Len: d.Queued, Cap: int64(g.down.QueueCap())},
			{Name: "downstream_blocked_conns", Len: d.Pending, Dropped: d.SlowConsumers},
		},
	}
	g.peers.AddStats(&s)
	if g.evs != nil {
		_, dropped, _, queued := g.evs.Stats()
		s.Queues = append(s.Queues, metrics.QueueStats{Name: "events", Len: int64(queued), Cap: int64(g.evs.Cap()), Dropped: dropped})
	}
	for st, n := range h.Kicks {
		if n > 0 {
			s.Kicks[codec.Status(st).String()] = n
		}
	}
	s.Closes = make(map[string]uint64, len(h.Closes))
	for r, n := range h.Closes {
		if n > 0 {
			s.Closes[conn.CloseReason(r).String()] = n
		}
	}
	return s
}

// Token implements api.Gateway.
func (g *Gateway) Token(device, app string, ttl time.Duration, groups []string) (string, error) {
	return auth.Mint(g.secret, auth.Claims{Device: device, App: app, Groups: groups, Expires: time.Now().Add(ttl)})
}

// Endpoints implements api.Gateway: this node's access points, or with
// -redis those of every live node, least loaded first.
func (g *Gateway) Endpoints(context.Context) ([]api.Endpoint, error) {
	return g.peers.Endpoints(g.localEndpoints()), nil
}

// clientRTT turns the hub's round-trip histograms into the snapshot's.
func clientRTT(rtts []netquality.Stats) []metrics.Histogram {
	out := make([]metrics.Histogram, len(rtts))
	for i, r := range rtts {
		out[i] = metrics.Histogram{Net: r.Net, Bounds: netquality.Bounds[:], Cumulative: r.Cumulative[:], Count: r.Count, Sum: r.Sum}
	}
	return out
}

// heartbeats turns the hub's histogram of granted intervals into the
// snapshot's.
func heartbeats(cum [len(netquality.IntervalBounds)]uint64, count uint64, sum float64) metrics.Histogram {
	return metrics.Histogram{Bounds: netquality.IntervalBounds[:], Cumulative: cum[:], Count: count, Sum: sum}
}

// Nodes implements api.Gateway: this node, and with -redis every live
// node.
func (g *Gateway) Nodes(context.Context) ([]api.Node, error) {
	c := g.hub.Counters()
	self := api.Node{
		Node: g.cfg.Node, Connections: c.Connections, LoggedIn: c.LoggedIn, MaxConns: g.cfg.MaxConns,
		Draining: !g.ready.Load(), Beating: true, Started: g.started.UnixMilli(), Self: true,
		Endpoints: g.localEndpoints(),
	}
	if g.cfg.MaxConns > 0 {
		self.Load = float64(c.Connections) / float64(g.cfg.MaxConns)
	}
	return g.peers.Nodes(self), nil
}

// localEndpoints lists this node's access points.
func (g *Gateway) localEndpoints() []api.Endpoint {
	load := g.hub.Counters().Connections
	var eps []api.Endpoint
	if a := g.TCPAddr(); a != "" {
		eps = append(eps, api.Endpoint{Proto: "tcp", Addr: g.advertise(a), Node: g.cfg.Node, Load: load})
	}
	if a := g.WSAddr(); a != "" {
		eps = append(eps, api.Endpoint{Proto: "ws", Addr: g.advertise(a), Node: g.cfg.Node, Load: load})
	}
	if g.tlsL != nil {
		eps = append(eps, api.Endpoint{Proto: "tls", Addr: g.advertise(g.tlsL.Addr().String()), Node: g.cfg.Node, Load: load})
	}
	return eps
}

// advertise replaces the host of a bound address with -advertise.
func (g *Gateway) advertise(addr string) string {
	if g.cfg.Advertise == "" {
		return addr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(g.cfg.Advertise, port)
}

// Device implements api.Gateway. A device connected to this node is
// answered from the node's own registry: no route call, and an answer
// even while the shared route (Redis) is unreachable.
func (g *Gateway) Device(ctx context.Context, device string) (api.DeviceInfo, error) {
	if c := g.hub.Lookup(device); c != nil {
		return api.DeviceInfo{Online: true, Node: g.cfg.Node, Conn: strconv.FormatUint(c.ID(), 10)}, nil
	}
	loc, online, err := g.route.Lookup(ctx, device)
	if err != nil || !online {
		return api.DeviceInfo{}, err
	}
	return api.DeviceInfo{Online: true, Node: loc.Node, Conn: strconv.FormatUint(loc.Conn, 10)}, nil
}

// Kick implements api.Gateway. The KICK carries UNAUTHORIZED: a business
// that disconnects a device means it to stay away until it has a new
// token (a client reconnects with backoff after any other status). With
// -redis, a device connected to another node is kicked there.
func (g *Gateway) Kick(ctx context.Context, device, reason string) (bool, error) {
	if reason == "" {
		reason = "disconnected by the business"
	}
	if g.hub.Kick(device, codec.StatusUnauthorized, reason) {
		return true, nil
	}
	return g.peers.KickElsewhere(ctx, device, reason)
}

// Join implements api.Gateway.
func (g *Gateway) Join(ctx context.Context, group string, devices []string) error {
	if err := g.route.Join(ctx, group, devices); err != nil {
		return err
	}
	for _, d := range devices {
		g.hub.Join(group, d)
	}
	return g.peers.MembersChanged(ctx, group, devices, true)
}

// Leave implements api.Gateway.
func (g *Gateway) Leave(ctx context.Context, group string, devices []string) error {
	if err := g.route.Leave(ctx, group, devices); err != nil {
		return err
	}
	for _, d := range devices {
		g.hub.Leave(group, d)
	}
	return g.peers.MembersChanged(ctx, group, devices, false)
}

// GroupSize implements api.Gateway.
func (g *Gateway) GroupSize(ctx context.Context, group string) (int, error) {
	return g.route.GroupSize(ctx, group)
}
