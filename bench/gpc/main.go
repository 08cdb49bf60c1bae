// Command gpc is a goroutine-per-connection reference server for Longlink's
// wire protocol. It exists only as a measuring baseline: docs/BENCHMARKS.md
// reports the gateway's figures (memory per connection, deliveries per
// second, latency, CPU) as ratios against this classic design, measured with
// the same load generator (./loadtest) on the same machine. It is not part
// of the gateway, is never built into it, and is not meant to be deployed.
//
// The design is the straightforward one:
//
//   - net.Listen, and one goroutine per connection that reads frames through
//     a 4 KiB bufio.Reader (decoded with the gateway's codec package);
//   - writes go through a 4 KiB bufio.Writer guarded by a per-connection
//     mutex, flushed after every frame: one write system call per frame;
//   - LOGIN carries an HS256 JWT (sub, exp, groups) verified with golang-jwt;
//     PING is answered with PONG; a REQUEST to business 1 is answered inline
//     by an echo (RESPONSE OK with the request's meta and body);
//   - device -> connection and group -> set of connections, in maps under
//     one sync.RWMutex;
//   - an HTTP API on its own listener with the endpoints and JSON shapes the
//     load generator uses; a push is written to each target connection from
//     the API handler's goroutine (lock the writer, write, flush).
//
// What it leaves out, so that scenarios relying on it are not comparable:
// push recovery and resume (a LOGIN with resume is answered resumed=0, and
// PUSH seq restarts at 1 on every connection), business forwarding other
// than the echo, rate limits, WebSocket and TLS, broadcast, kick and device
// lookup in the API, clustering.
//
// Run it with the development defaults of the load generator's secrets:
//
//	go run ./bench/gpc
//	go run ./loadtest -addr 127.0.0.1:7100 -api http://127.0.0.1:7180 -scenario hold
//
// See bench/README.md.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/metrics"
)

const (
	bufSize      = 4096             // bufio.Reader and bufio.Writer per connection
	loginTimeout = 10 * time.Second // first frame must arrive within this
	maxFrame     = codec.DefaultMaxFrame
	echoBiz      = 1 // the business answered inline by an echo
	maxTokenLen  = 4096
	maxNameLen   = 128
	maxGroups    = 64
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7100", "TCP address for client connections")
	apiListen := flag.String("api-listen", "127.0.0.1:7180", "address of the HTTP API")
	apiKey := flag.String("api-key", "longlink-dev-api-key", "API key (Authorization: Bearer <key>)")
	secret := flag.String("jwt-secret", "longlink-dev-jwt-secret-do-not-use-in-production", "HS256 secret of login tokens")
	node := flag.String("node", "gpc", "node id reported in LOGIN_ACK and /v1/stats")
	hb := flag.Duration("hb", 60*time.Second, "heartbeat interval told to clients; a connection silent for 3x this is closed")
	writeTimeout := flag.Duration("write-timeout", 10*time.Second, "deadline of each write to a client (0: none)")
	flag.Parse()
	if *apiKey == "" || *secret == "" || *hb < time.Second {
		log.Fatal("gpc: -api-key and -jwt-secret must be set, -hb at least 1s")
	}

	s := newServer(*node, []byte(*secret), *apiKey, *hb, *writeTimeout)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	apiLn, err := net.Listen("tcp", *apiListen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("gpc (goroutine-per-connection baseline) node %s: clients on %s, API on http://%s",
		*node, ln.Addr(), apiLn.Addr())

	hs := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { log.Fatal(hs.Serve(apiLn)) }()
	log.Fatal(s.serve(ln))
}

// server is the shared state: the routing maps and the counters.
type server struct {
	node         string
	hbSeconds    string // LOGIN_ACK hb, decimal
	idleTimeout  time.Duration
	writeTimeout time.Duration
	apiKey       string
	secret       []byte
	parser       *jwt.Parser

	mu      sync.RWMutex
	devices map[string]*conn
	groups  map[string]map[*conn]struct{}

	nextID                         atomic.Uint64
	conns, loggedIn                atomic.Int64
	accepted, logins, loginFail    atomic.Uint64
	framesIn, framesOut, writes    atomic.Uint64
	pushCalls, deliveries, offline atomic.Uint64
	acks                           atomic.Uint64
	kicks                          [codec.NumStatus]atomic.Uint64
	echoRequests                   atomic.Uint64
}

func newServer(node string, secret []byte, apiKey string, hb, writeTimeout time.Duration) *server {
	return &server{
		node:         node,
		hbSeconds:    fmt.Sprint(int64(hb / time.Second)),
		idleTimeout:  3 * hb,
		writeTimeout: writeTimeout,
		apiKey:       apiKey,
		secret:       secret,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(5*time.Second),
		),
		devices: make(map[string]*conn),
		groups:  make(map[string]map[*conn]struct{}),
	}
}

// serve accepts connections and starts one goroutine for each.
func (s *server) serve(ln net.Listener) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: back off and go on.
			log.Printf("accept: %v", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.accepted.Add(1)
		s.conns.Add(1)
		c := &conn{s: s, nc: nc, id: s.nextID.Add(1)}
		c.bw = bufio.NewWriterSize(nc, bufSize)
		go c.serve()
	}
}

// tokenClaims are the claims of a login token.
type tokenClaims struct {
	App    string   `json:"app,omitempty"`
	Groups []string `json:"groups,omitempty"`
	jwt.RegisteredClaims
}

// verify checks a login token and returns its claims.
func (s *server) verify(token []byte) (*tokenClaims, error) {
	switch {
	case len(token) == 0:
		return nil, errors.New("missing token")
	case len(token) > maxTokenLen:
		return nil, errors.New("token too long")
	}
	var cl tokenClaims
	if _, err := s.parser.ParseWithClaims(string(token), &cl, func(*jwt.Token) (any, error) { return s.secret, nil }); err != nil {
		return nil, err
	}
	if cl.Subject == "" || len(cl.Subject) > maxNameLen {
		return nil, errors.New("sub must be 1..128 bytes")
	}
	if len(cl.Groups) > maxGroups {
		return nil, errors.New("too many groups")
	}
	for _, g := range cl.Groups {
		if g == "" || len(g) > maxNameLen {
			return nil, errors.New("group names must be 1..128 bytes")
		}
	}
	return &cl, nil
}

// register binds c's device to c and joins c to groups. It returns the
// device's previous connection, if any, for the caller to kick.
func (s *server) register(c *conn, groups []string) (old *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old = s.devices[c.device]
	s.devices[c.device] = c
	for _, g := range groups {
		s.joinLocked(g, c)
	}
	return old
}

// joinLocked adds c to group g; s.mu must be held for writing.
func (s *server) joinLocked(g string, c *conn) {
	set := s.groups[g]
	if set == nil {
		set = make(map[*conn]struct{})
		s.groups[g] = set
	}
	if _, ok := set[c]; !ok {
		set[c] = struct{}{}
		c.groups = append(c.groups, g)
	}
}

// unregister removes c from the maps.
func (s *server) unregister(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.devices[c.device] == c {
		delete(s.devices, c.device)
	}
	for _, g := range c.groups {
		set := s.groups[g]
		delete(set, c)
		if len(set) == 0 {
			delete(s.groups, g)
		}
	}
	c.groups = nil
}

// snapshot is GET /v1/stats: the fields the load generator reads, and the
// counters this server keeps, in the gateway's JSON shape.
func (s *server) snapshot() metrics.Snapshot {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, cpu := metrics.ReadProcess()
	kicks := make(map[string]uint64)
	for st := range s.kicks {
		if n := s.kicks[st].Load(); n > 0 {
			kicks[codec.Status(st).String()] = n
		}
	}
	return metrics.Snapshot{
		Node:        s.node,
		Connections: s.conns.Load(),
		LoggedIn:    s.loggedIn.Load(),
		Goroutines:  int64(runtime.NumGoroutine()),
		HeapInuse:   int64(ms.HeapInuse),
		RSS:         rss,
		CPUSeconds:  cpu,
		Accepted:    s.accepted.Load(),
		Logins:      s.logins.Load(),
		LoginFail:   s.loginFail.Load(),
		FramesIn:    s.framesIn.Load(),
		FramesOut:   s.framesOut.Load(),
		Writes:      s.writes.Load(),
		Kicks:       kicks,
		Push: metrics.PushStats{
			Requests:   s.pushCalls.Load(),
			Deliveries: s.deliveries.Load(),
			Offline:    s.offline.Load(),
			Acks:       s.acks.Load(),
		},
		Businesses: []metrics.BizStats{{
			ID: echoBiz, Target: "echo", Requests: s.echoRequests.Load(),
			Results: map[string]uint64{"OK": s.echoRequests.Load()}, Breaker: "closed",
		}},
		Queues: []metrics.QueueStats{},
	}
}
