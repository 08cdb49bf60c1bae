package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Topology is a running Redis deployment as the gateway sees it, for tests
// that run on each of them (TopologyNames). Every process is on loopback,
// in a temporary directory, without persistence, and killed when the test
// that started it ends.
//
//	standalone  one redis-server                             (*Standalone)
//	cluster     a Redis Cluster of 3 masters, no replicas    (*Cluster)
//	sentinel    a master, a replica and 3 Sentinels          (*Sentinel)
//
// Kill and Restart must be called from the goroutine of the test that got
// the topology (StartTopology, or Wait): they fail that test when Redis
// does not come back.
type Topology interface {
	// Name is the topology's entry in TopologyNames, for t.Run.
	Name() string
	// GatewayFlags are the gateway flags that reach it: -redis with the
	// address of the server, of the cluster's three masters, or of the
	// Sentinels (then with -redis-master).
	GatewayFlags() []string
	// Client is a client of the whole deployment (a *redis.Client, a
	// *redis.ClusterClient or a failover client), closed at the end of
	// the test; every call returns the same one.
	Client() redis.UniversalClient
	// Kill makes Redis unreachable to its clients: every server that holds
	// data dies at once (SIGKILL). The Sentinels stay up; see
	// Sentinel.Kill.
	Kill()
	// Restart kills what runs and starts every data server again, empty, on
	// the same ports: a Redis restart without persistence. It returns when
	// the deployment serves again (cluster_state:ok on every node; the
	// Sentinels agreeing on the master, the replica in sync).
	Restart()
}

// TopologyNames are the topologies StartTopology and Begin know, in the
// order tests should run them.
var TopologyNames = []string{"standalone", "cluster", "sentinel"}

var (
	_ Topology = (*Standalone)(nil)
	_ Topology = (*Cluster)(nil)
	_ Topology = (*Sentinel)(nil)
)

// StartTopology starts the topology named name (one of TopologyNames) and
// returns when it serves.
func StartTopology(t testing.TB, name string) Topology {
	t.Helper()
	return Begin(t, name).Wait(t)
}

// Pending is a topology starting in the background, from Begin.
type Pending struct {
	name string
	done chan struct{}
	top  Topology
	err  error
	skip bool          // redis-server is missing: err says why
	took time.Duration // how long the start took
}

// Begin starts the topology named name in the background and returns at
// once: a test running on several topologies starts them all first, then
// takes each with Wait, so that their starts (about 2s each for cluster
// and sentinel, most of it Redis's own timers) overlap. Its processes
// belong to t: they are killed when t ends, even when Wait was called
// from a subtest.
func Begin(t testing.TB, name string) *Pending {
	p := &Pending{name: name, done: make(chan struct{})}
	bin, err := Binary()
	if err != nil {
		p.err, p.skip = fmt.Errorf("redis-server is not available: %v", err), true
		close(p.done)
		return p
	}
	// t must not end while the goroutine still starts processes.
	t.Cleanup(func() { <-p.done })
	go func() {
		defer close(p.done)
		begun := time.Now()
		switch name {
		case "standalone":
			p.top, p.err = startStandalone(t, bin)
		case "cluster":
			p.top, p.err = startCluster(t, bin)
		case "sentinel":
			p.top, p.err = startSentinel(t, bin)
		default:
			p.err = fmt.Errorf("unknown topology %q; want one of %v", name, TopologyNames)
		}
		p.took = time.Since(begun)
	}()
	return p
}

// Name is the name Begin was given.
func (p *Pending) Name() string { return p.name }

// Wait returns the topology once it serves, failing t (or skipping it,
// when redis-server is missing) if it did not start.
func (p *Pending) Wait(t testing.TB) Topology {
	t.Helper()
	<-p.done
	if p.skip {
		t.Skip(p.err)
	}
	if p.err != nil {
		t.Fatalf("redistest: starting %s: %v", p.name, p.err)
	}
	t.Logf("redistest: %s started in %v", p.name, p.took.Round(time.Millisecond))
	p.top.(binder).bind(t)
	return p.top
}

// binder is implemented by every topology: bind makes t the test that
// Kill, Restart and the other methods fail, and that closes Client. A
// topology started by Begin in a parent test is used by the subtest that
// calls Wait, and FailNow must run on that test's goroutine.
type binder interface{ bind(t testing.TB) }

// StartStandalone is Start as a Topology.
func StartStandalone(t testing.TB) *Standalone {
	t.Helper()
	return StartTopology(t, "standalone").(*Standalone)
}

// StartCluster starts a Redis Cluster of three masters and no replicas and
// returns when every node says cluster_state:ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartTopology(t, "cluster").(*Cluster)
}

// StartSentinel starts a master, its replica and three Sentinels watching
// it as MasterName, and returns when every Sentinel knows the master, the
// replica and the two other Sentinels.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return StartTopology(t, "sentinel").(*Sentinel)
}

// clientOptions are the Client settings: fail fast when Redis is down, so
// that a test poking a dead deployment fails in seconds.
func clientOptions(addrs []string, master string) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:        addrs,
		MasterName:   master,
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	}
}

// lazyClient makes a topology's client on first use.
type lazyClient struct {
	once sync.Once
	c    redis.UniversalClient
}

func (l *lazyClient) get(t testing.TB, o *redis.UniversalOptions) redis.UniversalClient {
	l.once.Do(func() {
		l.c = redis.NewUniversalClient(o)
		t.Cleanup(func() { l.c.Close() })
	})
	return l.c
}

// Standalone is one redis-server as a Topology: the Server of Start.
type Standalone struct {
	*Server
	client lazyClient
}

func startStandalone(t testing.TB, bin string) (*Standalone, error) {
	dir := t.TempDir()
	s, err := spawn(t, bin, dir, 1, func(ports []string) ([]string, error) {
		return baseArgs(ports[0], dir), nil
	})
	if err != nil {
		return nil, err
	}
	return &Standalone{Server: s}, nil
}

func (s *Standalone) bind(t testing.TB) { s.t = t }

// Name is "standalone".
func (s *Standalone) Name() string { return "standalone" }

// GatewayFlags is -redis host:port.
func (s *Standalone) GatewayFlags() []string { return []string{"-redis", s.Addr} }

// Client is a *redis.Client of the server.
func (s *Standalone) Client() redis.UniversalClient {
	return s.client.get(s.t, clientOptions([]string{s.Addr}, ""))
}

// Cluster is a Redis Cluster of three masters without replicas, made by
// `redis-cli --cluster create`. Each node announces 127.0.0.1 and its
// client port (CLUSTER SLOTS, MOVED); its bus port is a second free port
// (--cluster-port), not port+10000. Each node keeps its nodes.conf in its
// own directory, so a restarted node rejoins with its ID and slots.
type Cluster struct {
	// Nodes are the three masters, in the order of their slot ranges
	// (0-5460, 5461-10922, 10923-16383).
	Nodes []*Server

	t      testing.TB
	client lazyClient
}

// clusterNodeTimeout is the nodes' --cluster-node-timeout. Without
// replicas there is no failover to speed up, but a master that was in a
// minority with its slots (every node is, for a moment, while the cluster
// is created) says cluster_state:ok only after its rejoin delay: the node
// timeout, clamped to 0.5s..5s. With 5s a start took 2s or 4s; with 1s it
// takes 2s, the floor Redis sets (a node turns ok 2s after it starts at
// the earliest). A node is marked failing after a second without gossip.
const clusterNodeTimeout = "1000"

func startCluster(t testing.TB, bin string) (*Cluster, error) {
	cli, err := cliBinary(bin)
	if err != nil {
		return nil, err
	}
	c := &Cluster{t: t, Nodes: make([]*Server, 3)}
	dirs := make([]string, 3)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	err = parallel(3, func(i int) error {
		var err error
		c.Nodes[i], err = spawn(t, bin, dirs[i], 2, func(ports []string) ([]string, error) {
			return append(baseArgs(ports[0], dirs[i]),
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-port", ports[1], "--cluster-node-timeout", clusterNodeTimeout,
				"--cluster-announce-ip", "127.0.0.1"), nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, lastLines(string(out), 10))
	}
	if err := c.waitOK(30 * time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// cliBinary is redis-cli: beside redis-server (the same package installs
// both), else on $PATH.
func cliBinary(serverBin string) (string, error) {
	p := filepath.Join(filepath.Dir(serverBin), "redis-cli")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return exec.LookPath("redis-cli")
}

func (c *Cluster) addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

func (c *Cluster) bind(t testing.TB) { c.t = t }

// Name is "cluster".
func (c *Cluster) Name() string { return "cluster" }

// GatewayFlags is -redis with the three masters, comma-separated.
func (c *Cluster) GatewayFlags() []string {
	return []string{"-redis", strings.Join(c.addrs(), ",")}
}

// Client is a *redis.ClusterClient seeded with the three masters.
func (c *Cluster) Client() redis.UniversalClient {
	return c.client.get(c.t, clientOptions(c.addrs(), ""))
}

// Kill kills the three masters at once.
func (c *Cluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// Restart kills the masters and starts them again, empty: each rejoins
// with its nodes.conf (ID, slots, epoch), so the cluster is the same one
// with no keys. It returns when every node says cluster_state:ok again,
// which Redis delays by 2s after a node starts (CLUSTER_WRITABLE_DELAY).
func (c *Cluster) Restart() {
	c.t.Helper()
	c.Kill()
	err := parallel(len(c.Nodes), func(i int) error { return c.Nodes[i].restart() })
	if err == nil {
		err = c.waitOK(30 * time.Second)
	}
	if err != nil {
		c.t.Fatalf("redistest: restarting the cluster: %v", err)
	}
}

// waitOK waits until every node says cluster_state:ok, knows the three
// nodes and sees every slot served.
func (c *Cluster) waitOK(within time.Duration) error {
	return poll(within, func() error {
		for _, n := range c.Nodes {
			reply, err := query(n.Addr, "CLUSTER", "INFO")
			if err != nil {
				return fmt.Errorf("CLUSTER INFO on %s: %v", n.Addr, err)
			}
			info := fields(reply)
			if info["cluster_state"] != "ok" || info["cluster_known_nodes"] != strconv.Itoa(len(c.Nodes)) || info["cluster_slots_ok"] != "16384" {
				return fmt.Errorf("CLUSTER INFO on %s: state %s, %s known nodes, %s slots ok", n.Addr,
					info["cluster_state"], info["cluster_known_nodes"], info["cluster_slots_ok"])
			}
		}
		return nil
	})
}

// Sentinel is a master, its replica and three Sentinels watching it as
// MasterName (quorum 2, down-after-milliseconds 1000, failover-timeout
// 5000). Which data node is the master is the Sentinels' business: it
// changes with a failover (KillMaster). Each Sentinel has its own writable
// sentinel.conf, which it rewrites as it learns.
type Sentinel struct {
	// MasterName is the name the Sentinels know the master by.
	MasterName string
	// Sentinels are the three Sentinels.
	Sentinels []*Server

	t      testing.TB
	nodes  [2]*Server // the data nodes: nodes[0] was the master at start
	client lazyClient

	mu     sync.Mutex
	killed *Server // the master KillMaster killed last
}

const (
	sentinelMaster    = "mymaster"
	sentinelDownAfter = "1000"
	// sentinelPatient is the down-after-milliseconds of Kill: longer than
	// any outage a test makes, so no failover starts while every data node
	// is down (see Kill).
	sentinelPatient = "60000"
)

func startSentinel(t testing.TB, bin string) (*Sentinel, error) {
	s := &Sentinel{MasterName: sentinelMaster, Sentinels: make([]*Server, 3), t: t}
	dirs := make([]string, 5)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	var err error
	if s.nodes[0], err = spawn(t, bin, dirs[0], 1, func(ports []string) ([]string, error) {
		return dataArgs(ports[0], dirs[0]), nil
	}); err != nil {
		return nil, err
	}
	master := s.nodes[0]
	if s.nodes[1], err = spawn(t, bin, dirs[1], 1, func(ports []string) ([]string, error) {
		return append(dataArgs(ports[0], dirs[1]), "--replicaof", "127.0.0.1", master.port), nil
	}); err != nil {
		return nil, err
	}
	// The Sentinels learn the replica from the master's INFO, which they
	// read at once and then every 10s: they start once it is in sync, so
	// that their first INFO lists it.
	if err := waitReplica(s.nodes[1], master, 10*time.Second); err != nil {
		return nil, err
	}
	err = parallel(3, func(i int) error {
		dir := dirs[2+i]
		conf := filepath.Join(dir, "sentinel.conf")
		var err error
		s.Sentinels[i], err = spawn(t, bin, dir, 1, func(ports []string) ([]string, error) {
			text := fmt.Sprintf("port %[1]s\nbind 127.0.0.1\nprotected-mode no\ndir %[2]s\n"+
				"sentinel monitor %[3]s 127.0.0.1 %[4]s 2\n"+
				"sentinel down-after-milliseconds %[3]s %[5]s\n"+
				"sentinel failover-timeout %[3]s 5000\n",
				ports[0], dir, sentinelMaster, master.port, sentinelDownAfter)
			return []string{conf, "--sentinel"}, os.WriteFile(conf, []byte(text), 0o600)
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	// The Sentinels find each other by their hellos, every 2s.
	if err := s.waitStable(master, 30*time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sentinel) bind(t testing.TB) { s.t = t }

// dataArgs is the command line of a Sentinel's data node. The master
// sends a replica its data at once (Redis 7 waits 5s by default, for more
// replicas to share one transfer).
func dataArgs(port, dir string) []string {
	return append(baseArgs(port, dir), "--repl-diskless-sync-delay", "0")
}

// Name is "sentinel".
func (s *Sentinel) Name() string { return "sentinel" }

// GatewayFlags is -redis with the three Sentinels, comma-separated, and
// -redis-master MasterName.
func (s *Sentinel) GatewayFlags() []string {
	return []string{"-redis", strings.Join(s.sentinelAddrs(), ","), "-redis-master", s.MasterName}
}

func (s *Sentinel) sentinelAddrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr
	}
	return addrs
}

// Client is a failover client: it asks the Sentinels for the master and
// follows its failovers.
func (s *Sentinel) Client() redis.UniversalClient {
	return s.client.get(s.t, clientOptions(s.sentinelAddrs(), s.MasterName))
}

// Master is the data node the first Sentinel names as the master now,
// running or not.
func (s *Sentinel) Master() *Server {
	s.t.Helper()
	m, err := s.master()
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	return m
}

// Replica is the data node that is not the Master.
func (s *Sentinel) Replica() *Server {
	s.t.Helper()
	return s.other(s.Master())
}

func (s *Sentinel) other(n *Server) *Server {
	if n == s.nodes[0] {
		return s.nodes[1]
	}
	return s.nodes[0]
}

// master asks the first Sentinel which data node is the master.
func (s *Sentinel) master() (*Server, error) {
	addr, err := s.masterAddr(s.Sentinels[0])
	if err != nil {
		return nil, err
	}
	for _, n := range s.nodes {
		if n.Addr == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("sentinel %s names %s as master, none of the data nodes %s, %s", s.Sentinels[0].Addr, addr, s.nodes[0].Addr, s.nodes[1].Addr)
}

func (s *Sentinel) masterAddr(sentinel *Server) (string, error) {
	reply, err := query(sentinel.Addr, "SENTINEL", "get-master-addr-by-name", s.MasterName)
	a, _ := reply.([]any)
	if err != nil || len(a) != 2 {
		return "", fmt.Errorf("SENTINEL get-master-addr-by-name on %s: %v %v", sentinel.Addr, a, err)
	}
	host, _ := a[0].(string)
	port, _ := a[1].(string)
	return host + ":" + port, nil
}

// KillMaster kills the current master at once (SIGKILL) and returns it.
// The Sentinels notice within down-after-milliseconds (1s) and promote the
// replica; WaitPromoted waits for that, and must return before Kill or
// Restart. The killed node stays down: a later Restart brings it back as
// the replica of the new master.
func (s *Sentinel) KillMaster() *Server {
	s.t.Helper()
	m := s.Master()
	m.Kill()
	s.mu.Lock()
	s.killed = m
	s.mu.Unlock()
	return m
}

// WaitPromoted waits, up to within, until every Sentinel names the node
// KillMaster did not kill as the master, the failover is over, and that
// node says role:master. It returns the new master.
func (s *Sentinel) WaitPromoted(within time.Duration) *Server {
	s.t.Helper()
	s.mu.Lock()
	killed := s.killed
	s.mu.Unlock()
	if killed == nil {
		s.t.Fatal("redistest: WaitPromoted without KillMaster")
	}
	promoted := s.other(killed)
	err := poll(within, func() error {
		for _, sn := range s.Sentinels {
			addr, err := s.masterAddr(sn)
			if err != nil {
				return err
			}
			if addr != promoted.Addr {
				return fmt.Errorf("sentinel %s names %s as master, not yet %s", sn.Addr, addr, promoted.Addr)
			}
			m, err := sentinelMap(sn, "master", s.MasterName)
			if err != nil {
				return err
			}
			if m["flags"] != "master" {
				return fmt.Errorf("sentinel %s: master flags %q", sn.Addr, m["flags"])
			}
		}
		reply, err := query(promoted.Addr, "INFO", "replication")
		if role := fields(reply)["role"]; err != nil || role != "master" {
			return fmt.Errorf("%s: role %q %v", promoted.Addr, role, err)
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("redistest: no promotion after killing the master %s: %v", killed.Addr, err)
	}
	return promoted
}

// Kill kills both data nodes at once; the Sentinels stay up and go on
// naming the dead master, as Sentinels on other hosts would. Clients that
// ask them get the master's address and find it refusing connections:
// Redis is down.
//
// First it sets down-after-milliseconds to 60s on every Sentinel, so that
// they start no failover during the outage: one started while both nodes
// are down would go on once they are back, and could promote the replica
// just after Restart, losing what clients wrote to the master meanwhile.
// Restart sets it back to 1s.
func (s *Sentinel) Kill() {
	s.t.Helper()
	if err := s.setDownAfter(sentinelPatient); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	m, err := s.master()
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	// The replica first: the master's death must never meet a live replica.
	s.other(m).Kill()
	m.Kill()
}

// Restart kills both data nodes (Kill) and starts them again, empty, on
// the same ports: the master the Sentinels name as master, the other as
// its replica (--replicaof). It returns when the replica is in sync, every
// Sentinel names the master and sees it and the replica up, and the
// Sentinels are back to down-after-milliseconds 1s, ready for a failover.
func (s *Sentinel) Restart() {
	s.t.Helper()
	s.Kill()
	m := s.Master()
	r := s.other(m)
	m.setArgs(dataArgs(m.port, m.dir))
	r.setArgs(append(dataArgs(r.port, r.dir), "--replicaof", "127.0.0.1", m.port))
	err := m.restart()
	if err == nil {
		err = r.restart()
	}
	if err == nil {
		err = waitReplica(r, m, 10*time.Second)
	}
	if err == nil {
		err = s.waitStable(m, 30*time.Second)
	}
	if err == nil {
		err = s.setDownAfter(sentinelDownAfter)
	}
	if err != nil {
		s.t.Fatalf("redistest: restarting the sentinel topology: %v", err)
	}
	s.mu.Lock()
	s.killed = nil
	s.mu.Unlock()
}

func (s *Sentinel) setDownAfter(ms string) error {
	for _, sn := range s.Sentinels {
		if _, err := query(sn.Addr, "SENTINEL", "SET", s.MasterName, "down-after-milliseconds", ms); err != nil {
			return fmt.Errorf("SENTINEL SET down-after-milliseconds %s on %s: %v", ms, sn.Addr, err)
		}
	}
	return nil
}

// waitStable waits until every Sentinel names master, sees it up with no
// failover going on, knows the two other Sentinels, and sees the other
// data node as an up replica.
func (s *Sentinel) waitStable(master *Server, within time.Duration) error {
	replica := s.other(master)
	return poll(within, func() error {
		for _, sn := range s.Sentinels {
			addr, err := s.masterAddr(sn)
			if err != nil {
				return err
			}
			if addr != master.Addr {
				return fmt.Errorf("sentinel %s names %s as master, want %s", sn.Addr, addr, master.Addr)
			}
			m, err := sentinelMap(sn, "master", s.MasterName)
			if err != nil {
				return err
			}
			if m["flags"] != "master" || m["num-other-sentinels"] != "2" || m["num-slaves"] != "1" {
				return fmt.Errorf("sentinel %s: master flags %q, %s other sentinels, %s replicas",
					sn.Addr, m["flags"], m["num-other-sentinels"], m["num-slaves"])
			}
			reps, err := sentinelMaps(sn, "replicas", s.MasterName)
			if err != nil {
				return err
			}
			if len(reps) != 1 || reps[0]["ip"]+":"+reps[0]["port"] != replica.Addr || reps[0]["flags"] != "slave" || reps[0]["master-link-status"] != "ok" {
				return fmt.Errorf("sentinel %s: replicas %v, want %s up and in sync", sn.Addr, reps, replica.Addr)
			}
		}
		return nil
	})
}

// waitReplica waits until replica says it is in sync with master.
func waitReplica(replica, master *Server, within time.Duration) error {
	return poll(within, func() error {
		reply, err := query(replica.Addr, "INFO", "replication")
		if err != nil {
			return err
		}
		info := fields(reply)
		if info["role"] != "slave" || info["master_port"] != master.port || info["master_link_status"] != "up" {
			return fmt.Errorf("replica %s: role %s of port %s, link %s; want in sync with %s",
				replica.Addr, info["role"], info["master_port"], info["master_link_status"], master.Addr)
		}
		return nil
	})
}

// sentinelMap is SENTINEL sub name: one instance's fields.
func sentinelMap(sn *Server, sub, name string) (map[string]string, error) {
	reply, err := query(sn.Addr, "SENTINEL", sub, name)
	if err != nil {
		return nil, fmt.Errorf("SENTINEL %s %s on %s: %v", sub, name, sn.Addr, err)
	}
	a, _ := reply.([]any)
	return pairs(a), nil
}

// sentinelMaps is SENTINEL sub name: a list of instances' fields.
func sentinelMaps(sn *Server, sub, name string) ([]map[string]string, error) {
	reply, err := query(sn.Addr, "SENTINEL", sub, name)
	if err != nil {
		return nil, fmt.Errorf("SENTINEL %s %s on %s: %v", sub, name, sn.Addr, err)
	}
	list, _ := reply.([]any)
	maps := make([]map[string]string, 0, len(list))
	for _, e := range list {
		a, _ := e.([]any)
		maps = append(maps, pairs(a))
	}
	return maps, nil
}

// pairs turns a flat RESP2 array key, value, key, value... into a map.
func pairs(a []any) map[string]string {
	m := make(map[string]string, len(a)/2)
	for i := 0; i+1 < len(a); i += 2 {
		k, _ := a[i].(string)
		v, _ := a[i+1].(string)
		m[k] = v
	}
	return m
}

// fields parses the key:value lines of an INFO or CLUSTER INFO reply.
func fields(reply any) map[string]string {
	text, _ := reply.(string)
	m := make(map[string]string)
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// poll calls fn every 20ms until it returns nil, or returns its last error
// once within has passed.
func poll(within time.Duration, fn func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parallel runs fn(0..n-1) at once and returns the first error.
func parallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// MoveSlot moves the slot of key, with its keys, to the master after its
// owner in Nodes while the cluster serves, as redis-cli --cluster reshard does
// for each slot: IMPORTING on the target, MIGRATING on the owner, MIGRATE
// of its keys in batches, then the slot assigned to the target on every
// master. Meanwhile clients get ASK and, after, MOVED redirections; a
// command on several keys of the slot may get TRYAGAIN. It returns the
// slot.
func (c *Cluster) MoveSlot(key string) (int64, error) {
	v, err := query(c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", key)
	if err != nil {
		return 0, err
	}
	slot := v.(int64)
	s := strconv.FormatInt(slot, 10)
	ids := make([]string, len(c.Nodes))
	from := -1
	for i, n := range c.Nodes {
		id, err := query(n.Addr, "CLUSTER", "MYID")
		if err != nil {
			return slot, err
		}
		ids[i] = id.(string)
	}
	// The owner is the master whose CLUSTER NODES line says myself and
	// lists the slot.
	for i, n := range c.Nodes {
		nodes, err := query(n.Addr, "CLUSTER", "NODES")
		if err != nil {
			return slot, err
		}
		for _, line := range strings.Split(nodes.(string), "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "myself") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, _ := strings.Cut(r, "-")
				if hi == "" {
					hi = lo
				}
				l, err1 := strconv.ParseInt(lo, 10, 64)
				h, err2 := strconv.ParseInt(hi, 10, 64)
				if err1 == nil && err2 == nil && l <= slot && slot <= h {
					from = i
				}
			}
		}
	}
	if from < 0 {
		return slot, fmt.Errorf("redistest: no master owns slot %d", slot)
	}
	to := (from + 1) % len(c.Nodes)
	src, dst := c.Nodes[from], c.Nodes[to]
	host, port, _ := net.SplitHostPort(dst.Addr)
	steps := [][]string{
		{dst.Addr, "CLUSTER", "SETSLOT", s, "IMPORTING", ids[from]},
		{src.Addr, "CLUSTER", "SETSLOT", s, "MIGRATING", ids[to]},
	}
	for _, st := range steps {
		if _, err := query(st[0], st[1:]...); err != nil {
			return slot, fmt.Errorf("redistest: %v on %s: %w", st[1:], st[0], err)
		}
	}
	for {
		keys, err := query(src.Addr, "CLUSTER", "GETKEYSINSLOT", s, "100")
		if err != nil {
			return slot, err
		}
		ks := keys.([]any)
		if len(ks) == 0 {
			break
		}
		args := []string{"MIGRATE", host, port, "", "0", "5000", "KEYS"}
		for _, k := range ks {
			args = append(args, k.(string))
		}
		if _, err := query(src.Addr, args...); err != nil {
			return slot, fmt.Errorf("redistest: MIGRATE of slot %d: %w", slot, err)
		}
	}
	for _, n := range []*Server{dst, src, c.Nodes[3-from-to]} {
		if _, err := query(n.Addr, "CLUSTER", "SETSLOT", s, "NODE", ids[to]); err != nil {
			return slot, fmt.Errorf("redistest: SETSLOT NODE on %s: %w", n.Addr, err)
		}
	}
	return slot, nil
}
