package e2e

// Multi-node tests of docs/cluster.md: two or three real gateway processes
// behind real Redis, each test once per topology (forTopologies): one
// redis-server, a Redis Cluster of three masters, and a master with a
// replica behind three Sentinels. Every delivery is checked exactly: the
// API's counts, each client receiving its push once (the next frame after
// it is the PONG to a PING), and the seq it carries. Run them with
// -run TestCluster, one topology with -run 'TestCluster/sentinel'.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/cluster/redistest"
	"github.com/longlink/longlink/codec"
)

// clusterResult is the push API's answer, with the cluster's field.
type clusterResult struct {
	Delivered int      `json:"delivered"`
	Offline   []string `json:"offline"`
	Unrouted  []string `json:"unrouted"`
}

// clPush pushes data to devices through s and returns the answer.
func (s *server) clPush(devices []string, data string) clusterResult {
	s.t.Helper()
	var res clusterResult
	if code := s.api("POST", "/v1/push", map[string]any{"devices": devices, "biz": 1, "data": data}, &res); code != 200 {
		s.t.Fatalf("push through %s: status %d", s.Node, code)
	}
	slices.Sort(res.Offline)
	slices.Sort(res.Unrouted)
	return res
}

// clCount calls a push API that answers {"delivered":n} and returns n,
// failing unless the status is 200.
func (s *server) clCount(path string, data string) int {
	s.t.Helper()
	var res struct{ Delivered int }
	if code := s.api("POST", path, map[string]any{"biz": 1, "data": data}, &res); code != 200 {
		s.t.Fatalf("POST %s through %s: status %d", path, s.Node, code)
	}
	return res.Delivered
}

// clWantPush reads the next frame: PUSH with body (and seq, unless 0).
func (c *client) clWantPush(seq uint32, body string) codec.Frame {
	c.t.Helper()
	f := c.read(5 * time.Second)
	if f.Op != codec.OpPush || string(f.Body) != body || (seq != 0 && f.Seq != seq) {
		c.t.Fatalf("got %v seq %d %q (status %v), want PUSH seq %d %q", f.Op, f.Seq, f.Body, f.Status, seq, body)
	}
	return f
}

// clQuiet checks nothing more is queued for c: the next frame is the PONG
// to a PING sent now. It is how the tests prove "delivered once".
func (c *client) clQuiet() {
	c.t.Helper()
	c.send(codec.Header{Op: codec.OpPing, Seq: 0xC1}, nil, nil)
	if f := c.read(5 * time.Second); f.Op != codec.OpPong || f.Seq != 0xC1 {
		c.t.Fatalf("got %v seq %d %q before the PONG", f.Op, f.Seq, f.Body)
	}
}

// clDevice is GET /v1/devices/{device}.
func (s *server) clDevice(device string) (online bool, node, conn string) {
	s.t.Helper()
	var info struct {
		Online bool   `json:"online"`
		Node   string `json:"node"`
		Conn   string `json:"conn"`
	}
	if code := s.api("GET", "/v1/devices/"+device, nil, &info); code != 200 {
		s.t.Fatalf("GET device %s through %s: status %d", device, s.Node, code)
	}
	return info.Online, info.Node, info.Conn
}

// clWaitOffline waits until s sees device offline.
func (s *server) clWaitOffline(device string, within time.Duration) {
	s.t.Helper()
	checkFor(s.t, within, 20*time.Millisecond, func() error {
		if online, node, _ := s.clDevice(device); online {
			return fmt.Errorf("%s still online at %s", device, node)
		}
		return nil
	})
}

func TestClusterUnicastAndBatch(t *testing.T) { forTopologies(t, testClusterUnicastAndBatch) }

func testClusterUnicastAndBatch(t *testing.T, top redistest.Topology) {
	a := startClusterNode(t, top, "A")
	b := startClusterNode(t, top, "B")
	a1, _ := loggedIn(t, a, "a1")
	bs := make([]*client, 5)
	var acks []codec.Frame
	for i := range bs {
		var ack codec.Frame
		bs[i], ack = loggedIn(t, b, "b"+itoa(i))
		acks = append(acks, ack)
	}

	// Unicast, a device on each node and one nowhere, through A.
	res := a.clPush([]string{"a1", "b0", "nobody"}, "m1")
	if res.Delivered != 2 || !slices.Equal(res.Offline, []string{"nobody"}) || len(res.Unrouted) != 0 {
		t.Fatalf("push through A: %+v; want 2 delivered, nobody offline", res)
	}
	a1.clWantPush(1, "m1")
	bs[0].clWantPush(1, "m1")

	// Batch: five devices on B, one on A, one nowhere: one message to B.
	all := []string{"b0", "b1", "b2", "b3", "b4", "a1", "ghost", "b2"}
	if res := a.clPush(all, "m2"); res.Delivered != 6 || !slices.Equal(res.Offline, []string{"ghost"}) {
		t.Fatalf("batch through A: %+v; want 6 delivered, ghost offline", res)
	}
	a1.clWantPush(2, "m2")
	bs[0].clWantPush(2, "m2")
	for _, c := range bs[1:] {
		c.clWantPush(1, "m2")
	}
	// The other way: through B to A's device.
	if res := b.clPush([]string{"a1"}, "m3"); res.Delivered != 1 || len(res.Offline) != 0 {
		t.Fatalf("push through B: %+v", res)
	}
	a1.clWantPush(3, "m3")
	for _, c := range append(bs, a1) {
		c.clQuiet()
	}

	// Where a device is, from any node.
	if online, node, conn := a.clDevice("b3"); !online || node != "B" || conn != metaString(acks[3], "conn") {
		t.Fatalf("device b3 through A: %v %s %s; want online at B conn %s", online, node, conn, metaString(acks[3], "conn"))
	}
	// Kicked from any node.
	var kicked struct{ Kicked bool }
	if a.api("DELETE", "/v1/devices/b4", nil, &kicked); !kicked.Kicked {
		t.Fatal("kick of b4 through A reported false")
	}
	if f := bs[4].read(5 * time.Second); f.Op != codec.OpKick || f.Status != codec.StatusUnauthorized {
		t.Fatalf("b4 got %v %v, want KICK UNAUTHORIZED", f.Op, f.Status)
	}
	bs[4].expectClosed(5 * time.Second)
	if a.api("DELETE", "/v1/devices/ghost", nil, &kicked); kicked.Kicked {
		t.Fatal("kick of a device connected nowhere reported true")
	}
}

func TestClusterGroupsAndBroadcast(t *testing.T) { forTopologies(t, testClusterGroupsAndBroadcast) }

func testClusterGroupsAndBroadcast(t *testing.T, top redistest.Topology) {
	a := startClusterNode(t, top, "A")
	b := startClusterNode(t, top, "B")
	c := startClusterNode(t, top, "C")
	ga1, _ := loggedIn(t, a, "ga1", "room") // member by its token
	gb1, _ := loggedIn(t, b, "gb1")
	gb2, _ := loggedIn(t, b, "gb2") // never a member
	gc1, _ := loggedIn(t, c, "gc1")
	everyone := []*client{ga1, gb1, gb2, gc1}

	// Members added through a node that holds none of them.
	var members struct{ Members int }
	if code := c.api("PUT", "/v1/groups/room/members", map[string]any{"devices": []string{"gb1", "gx"}}, &members); code != 200 {
		t.Fatalf("PUT members through C: %d", code)
	}
	if code := a.api("PUT", "/v1/groups/room/members", map[string]any{"devices": []string{"gc1"}}, &members); code != 200 || members.Members != 4 {
		t.Fatalf("PUT members through A: %d, %d members; want 4 (ga1, gb1, gx, gc1)", code, members.Members)
	}
	if b.api("GET", "/v1/groups/room", nil, &members); members.Members != 4 {
		t.Fatalf("GET group through B: %d members, want 4", members.Members)
	}

	// A group push through B: the three connected members, one node each.
	if n := b.clCount("/v1/groups/room/push", "g1"); n != 3 {
		t.Fatalf("group push through B delivered %d, want 3", n)
	}
	for _, m := range []*client{ga1, gb1, gc1} {
		if f := m.clWantPush(1, "g1"); metaString(f, "group") != "room" {
			t.Fatalf("group meta %q", metaString(f, "group"))
		}
	}
	// A member leaves through A; the push through C skips it.
	if code := a.api("DELETE", "/v1/groups/room/members", map[string]any{"devices": []string{"gb1"}}, &members); code != 200 || members.Members != 3 {
		t.Fatalf("DELETE member: %d, %d members", code, members.Members)
	}
	if n := c.clCount("/v1/groups/room/push", "g2"); n != 2 {
		t.Fatalf("group push after the leave delivered %d, want 2", n)
	}
	ga1.clWantPush(2, "g2")
	gc1.clWantPush(2, "g2")
	// The offline member comes online on B: its membership follows it.
	gx, _ := loggedIn(t, b, "gx")
	everyone = append(everyone, gx)
	if n := a.clCount("/v1/groups/room/push", "g3"); n != 3 {
		t.Fatalf("group push with gx online delivered %d, want 3", n)
	}
	for _, m := range []*client{ga1, gc1, gx} {
		m.clWantPush(0, "g3")
	}
	for _, m := range everyone {
		m.clQuiet()
	}

	// A broadcast through A reaches every connection of every node once.
	if n := a.clCount("/v1/broadcast", "all"); n != len(everyone) {
		t.Fatalf("broadcast delivered %d, want %d", n, len(everyone))
	}
	for _, m := range everyone {
		m.clWantPush(0, "all")
		m.clQuiet()
	}
}

func TestClusterDuplicateLogin(t *testing.T) { forTopologies(t, testClusterDuplicateLogin) }

func testClusterDuplicateLogin(t *testing.T, top redistest.Topology) {
	a := startClusterNode(t, top, "A")
	b := startClusterNode(t, top, "B")
	older, _ := loggedIn(t, a, "dup")
	newer, ack := loggedIn(t, b, "dup")
	f := older.read(5 * time.Second)
	if f.Op != codec.OpKick || f.Status != codec.StatusDuplicateLogin {
		t.Fatalf("older connection on A got %v %v, want KICK DUPLICATE_LOGIN", f.Op, f.Status)
	}
	older.expectClosed(5 * time.Second)
	for _, s := range []*server{a, b} {
		if online, node, conn := s.clDevice("dup"); !online || node != "B" || conn != metaString(ack, "conn") {
			t.Fatalf("through %s: dup at %v %s conn %s; want B conn %s", s.Node, online, node, conn, metaString(ack, "conn"))
		}
	}
	if res := a.clPush([]string{"dup"}, "after"); res.Delivered != 1 {
		t.Fatalf("push after the move: %+v", res)
	}
	newer.clWantPush(0, "after")
	newer.clQuiet()
}

func TestClusterResume(t *testing.T) { forTopologies(t, testClusterResume) }

func testClusterResume(t *testing.T, top redistest.Topology) {
	a := startClusterNode(t, top, "A")
	b := startClusterNode(t, top, "B")

	// Disconnected from A; pushes while offline through B; resumed on B.
	c, _ := loggedIn(t, a, "r1")
	if res := a.clPush([]string{"r1"}, "one"); res.Delivered != 1 {
		t.Fatalf("push: %+v", res)
	}
	c.clWantPush(1, "one")
	c.nc.Close()
	b.clWaitOffline("r1", 5*time.Second)
	for _, m := range []string{"two", "three"} {
		if res := b.clPush([]string{"r1"}, m); res.Delivered != 0 || !slices.Equal(res.Offline, []string{"r1"}) {
			t.Fatalf("push while offline: %+v", res)
		}
	}
	c2 := dial(t, b.TCP)
	if ack := c2.login(token(t, "r1", time.Hour), "resume", "1"); ack.Status != codec.StatusOK || metaString(ack, "resumed") != "1" {
		t.Fatalf("resume on B: %v resumed=%q", ack.Status, metaString(ack, "resumed"))
	}
	c2.clWantPush(2, "two")
	c2.clWantPush(3, "three")
	if res := a.clPush([]string{"r1"}, "four"); res.Delivered != 1 {
		t.Fatalf("push after resume: %+v", res)
	}
	c2.clWantPush(4, "four")
	c2.clQuiet()

	// Reconnecting to B while A still holds the connection (a half-open
	// socket): A kicks it and hands its state over, including the pushes
	// the client had not received.
	d, _ := loggedIn(t, a, "r2")
	for i, m := range []string{"x1", "x2", "x3"} {
		if res := b.clPush([]string{"r2"}, m); res.Delivered != 1 {
			t.Fatalf("push %s: %+v", m, res)
		}
		d.clWantPush(uint32(i+1), m)
	}
	d2 := dial(t, b.TCP)
	loginAt := time.Now()
	if ack := d2.login(token(t, "r2", time.Hour), "resume", "1"); ack.Status != codec.StatusOK || metaString(ack, "resumed") != "1" {
		t.Fatalf("resume on B with the old connection open: %v resumed=%q", ack.Status, metaString(ack, "resumed"))
	}
	t.Logf("login with a takeover from another node answered in %v", time.Since(loginAt).Round(100*time.Microsecond))
	if f := d.read(5 * time.Second); f.Op != codec.OpKick || f.Status != codec.StatusDuplicateLogin {
		t.Fatalf("old connection got %v %v", f.Op, f.Status)
	}
	d2.clWantPush(2, "x2")
	d2.clWantPush(3, "x3")
	if res := a.clPush([]string{"r2"}, "x4"); res.Delivered != 1 {
		t.Fatalf("push after the takeover: %+v", res)
	}
	d2.clWantPush(4, "x4")
	d2.clQuiet()

	// A graceful shutdown of B saves its devices' state: r1 resumes on A.
	b.stop()
	c3 := dial(t, a.TCP)
	if ack := c3.login(token(t, "r1", time.Hour), "resume", "4"); ack.Status != codec.StatusOK || metaString(ack, "resumed") != "1" {
		t.Fatalf("resume on A after B stopped: %v resumed=%q", ack.Status, metaString(ack, "resumed"))
	}
	if res := a.clPush([]string{"r1"}, "five"); res.Delivered != 1 {
		t.Fatalf("push: %+v", res)
	}
	c3.clWantPush(5, "five")
}

func TestClusterEndpoints(t *testing.T) { forTopologies(t, testClusterEndpoints) }

func testClusterEndpoints(t *testing.T, top redistest.Topology) {
	a := startClusterNode(t, top, "A", "-ws-listen", "127.0.0.1:0")
	b := startClusterNode(t, top, "B")
	c := startClusterNode(t, top, "C")
	for i := range 3 {
		loggedIn(t, a, "ea"+itoa(i))
	}
	loggedIn(t, b, "eb")
	want := []string{c.TCP, b.TCP, a.TCP}
	var eps struct {
		Endpoints []struct {
			Proto, Addr, Node string
			Load              int64
		}
	}
	checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		for _, s := range []*server{a, b, c} {
			s.api("GET", "/v1/endpoints", nil, &eps)
			var tcp []string
			for _, ep := range eps.Endpoints {
				if ep.Proto == "tcp" {
					tcp = append(tcp, ep.Addr)
				}
			}
			if !slices.Equal(tcp, want) {
				return fmt.Errorf("endpoints through %s: %v, want C, B, A: %v", s.Node, eps.Endpoints, want)
			}
		}
		return nil
	})
	if eps.Endpoints[0].Load != 0 || eps.Endpoints[len(eps.Endpoints)-1].Load != 3 {
		t.Errorf("loads %v, want C 0 ... A 3", eps.Endpoints)
	}
	if !slices.ContainsFunc(eps.Endpoints, func(ep struct {
		Proto, Addr, Node string
		Load              int64
	}) bool {
		return ep.Proto == "ws" && ep.Addr == a.WS && ep.Node == "A"
	}) {
		t.Errorf("A's WebSocket endpoint is missing: %v", eps.Endpoints)
	}
	var tok struct {
		Token     string
		Endpoints []struct{ Proto, Addr string }
	}
	if code := b.api("POST", "/v1/tokens", map[string]any{"device": "new", "ttl_seconds": 60}, &tok); code != 200 || len(tok.Endpoints) == 0 || tok.Endpoints[0].Addr != c.TCP {
		t.Fatalf("POST /v1/tokens: %d %+v; want C's endpoint first", code, tok.Endpoints)
	}
}

func TestClusterNodeKilled(t *testing.T) { forTopologies(t, testClusterNodeKilled) }

func testClusterNodeKilled(t *testing.T, top redistest.Topology) {
	a := startClusterNode(t, top, "A", "-node-ttl", "2s")
	b := startClusterNode(t, top, "B", "-node-ttl", "2s")
	loggedIn(t, b, "k1")
	loggedIn(t, b, "k2")
	if online, node, _ := a.clDevice("k1"); !online || node != "B" {
		t.Fatalf("k1 through A: %v %s", online, node)
	}
	killed := time.Now()
	b.Kill()
	// Offline within the node TTL (2s) plus a renewal and a cache period,
	// far below the 30s the design allows: no per-device expiry involved.
	a.clWaitOffline("k1", 8*time.Second)
	took := time.Since(killed)
	t.Logf("k1 offline %v after SIGKILL (node TTL 2s)", took.Round(10*time.Millisecond))
	if res := a.clPush([]string{"k1", "k2"}, "late"); res.Delivered != 0 || !slices.Equal(res.Offline, []string{"k1", "k2"}) {
		t.Fatalf("push to a dead node's devices: %+v; want both offline", res)
	}
	var eps struct{ Endpoints []struct{ Node string } }
	a.api("GET", "/v1/endpoints", nil, &eps)
	for _, ep := range eps.Endpoints {
		if ep.Node == "B" {
			t.Fatalf("the dead node is still an endpoint: %v", eps.Endpoints)
		}
	}
	// The devices log in again elsewhere: no duplicate-login wait on the
	// dead node, and their pushes flow.
	k1, ack := loggedIn(t, a, "k1")
	if metaString(ack, "node") != "A" {
		t.Fatal("login on A")
	}
	if res := a.clPush([]string{"k1"}, "again"); res.Delivered != 1 {
		t.Fatalf("push: %+v", res)
	}
	k1.clWantPush(0, "again")
}

func TestClusterRedisDown(t *testing.T) { forTopologies(t, testClusterRedisDown) }

func testClusterRedisDown(t *testing.T, top redistest.Topology) {
	a := startClusterNode(t, top, "A")
	b := startClusterNode(t, top, "B")
	a1, _ := loggedIn(t, a, "a1", "room")
	b1, _ := loggedIn(t, b, "b1", "room")
	redisErrors := func() float64 { return a.stats()["cluster"].(map[string]any)["redis_errors"].(float64) }
	before := redisErrors()
	top.Kill()

	// Local delivery goes on; the remote device is reported unrouted.
	res := a.clPush([]string{"a1", "b1"}, "down")
	if res.Delivered != 1 || len(res.Offline) != 0 || !slices.Equal(res.Unrouted, []string{"b1"}) {
		t.Fatalf("push with Redis down: %+v; want a1 delivered, b1 unrouted", res)
	}
	if n := a.stats()["push"].(map[string]any)["unrouted"].(float64); n != 1 {
		t.Fatalf("/v1/stats push.unrouted = %v after one unrouted target, want 1", n)
	}
	if n := redisErrors(); n <= before {
		t.Fatalf("/v1/stats cluster.redis_errors = %v after a lookup with Redis down, want more than %v", n, before)
	}
	a1.clWantPush(1, "down")
	// Where a device is: the node knows its own devices, and cannot know
	// the others'.
	var where struct {
		Online     bool
		Node, Conn string
	}
	if code := a.api("GET", "/v1/devices/a1", nil, &where); code != 200 || !where.Online || where.Node != "A" || where.Conn == "" {
		t.Fatalf("GET /v1/devices/a1 on its own node with Redis down: %d %+v", code, where)
	}
	if code := a.api("GET", "/v1/devices/b1", nil, nil); code != 503 {
		t.Fatalf("GET /v1/devices/b1 (on node B) with Redis down: %d, want 503", code)
	}
	// A group push or a broadcast says how far it went.
	var e struct{ Error string }
	for _, path := range []string{"/v1/groups/room/push", "/v1/broadcast"} {
		code := a.api("POST", path, map[string]any{"biz": 1, "data": "x"}, &e)
		if code != 503 || !strings.Contains(e.Error, "delivered to the 1 connections of node A only") {
			t.Fatalf("POST %s with Redis down: %d %q", path, code, e.Error)
		}
		a1.clWantPush(0, "x")
	}
	// The node stays ready and logs devices in (with their token's groups).
	if code := a.api("GET", "/readyz", nil, nil); code != 200 {
		t.Fatalf("/readyz with Redis down: %d", code)
	}
	a2, _ := loggedIn(t, a, "a2")
	if res := a.clPush([]string{"a2"}, "local"); res.Delivered != 1 {
		t.Fatalf("push to a device that logged in while Redis was down: %+v", res)
	}
	a2.clWantPush(1, "local")
	for _, c := range []*client{a1, a2, b1} {
		c.clQuiet()
	}

	// Redis comes back (empty): the devices, a2 too, though its login
	// could not be recorded, are reachable from the other node again.
	top.Restart()
	var delivered string
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		m := "back-" + itoa(int(time.Now().UnixMilli()%1e6))
		if res := b.clPush([]string{"a2"}, m); res.Delivered != 1 {
			return fmt.Errorf("push to a2 through B: %+v", res)
		}
		delivered = m
		return nil
	})
	a2.clWantPush(2, delivered)
	a2.clQuiet()
}

func TestClusterRedisRestart(t *testing.T) { forTopologies(t, testClusterRedisRestart) }

func testClusterRedisRestart(t *testing.T, top redistest.Topology) {
	a := startClusterNode(t, top, "A")
	b := startClusterNode(t, top, "B")
	b1, _ := loggedIn(t, b, "b1")
	if res := a.clPush([]string{"b1"}, "before"); res.Delivered != 1 {
		t.Fatalf("push before the restart: %+v", res)
	}
	b1.clWantPush(1, "before")

	top.Restart() // an empty Redis on the same port
	restarted := time.Now()
	// Nodes reconnect, re-register and re-create their devices' bindings
	// by themselves. Until then pushes are reported, never delivered.
	var delivered string
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		m := "after-" + itoa(int(time.Since(restarted)/time.Millisecond))
		res := a.clPush([]string{"b1"}, m)
		if res.Delivered != 1 {
			return fmt.Errorf("push after the restart: %+v", res)
		}
		delivered = m
		return nil
	})
	t.Logf("cross-node pushes work again %v after the restart", time.Since(restarted).Round(10*time.Millisecond))
	b1.clWantPush(2, delivered)
	b1.clQuiet()
	// Logins, duplicate logins and groups work again too.
	older, _ := loggedIn(t, a, "d")
	loggedIn(t, b, "d")
	if f := older.read(5 * time.Second); f.Op != codec.OpKick || f.Status != codec.StatusDuplicateLogin {
		t.Fatalf("duplicate login after the restart: %v %v", f.Op, f.Status)
	}
}

// TestClusterSentinelFailover kills the master behind the Sentinels
// (SIGKILL) under two nodes. The Sentinels promote the replica within a
// few seconds and the nodes must follow: A's own device gets every push
// throughout; within 20s of the kill cross-node pushes and new logins
// work again; no node exits, and the devices connected before the kill
// are still connected and get pushes.
func TestClusterSentinelFailover(t *testing.T) {
	sen := redistest.StartSentinel(t)
	a := startClusterNode(t, sen, "A")
	b := startClusterNode(t, sen, "B")
	a1, _ := loggedIn(t, a, "a1")
	b1, _ := loggedIn(t, b, "b1")
	if res := a.clPush([]string{"a1", "b1"}, "before"); res.Delivered != 2 {
		t.Fatalf("push before the failover: %+v", res)
	}
	a1.clWantPush(1, "before")
	b1.clWantPush(1, "before")

	old := sen.KillMaster()
	killed := time.Now()
	deadline := killed.Add(20 * time.Second)
	// Until the nodes follow the new master, b1's pushes are reported
	// (unrouted, offline), never delivered; a1's are always delivered.
	round := 0
	checkFor(t, time.Until(deadline), 100*time.Millisecond, func() error {
		round++
		m := "during-" + itoa(round)
		res := a.clPush([]string{"a1", "b1"}, m)
		if res.Delivered < 1 || slices.Contains(res.Offline, "a1") || slices.Contains(res.Unrouted, "a1") {
			t.Fatalf("push %d after the kill did not reach A's own device: %+v", round, res)
		}
		a1.clWantPush(0, m)
		if res.Delivered != 2 {
			return fmt.Errorf("push to b1 through A %v after the kill of %s: %+v", time.Since(killed).Round(time.Millisecond), old.Addr, res)
		}
		b1.clWantPush(0, m)
		return nil
	})
	t.Logf("cross-node pushes work again %v after SIGKILL of the master (%d rounds)", time.Since(killed).Round(10*time.Millisecond), round)

	// New logins, on either node, are reachable from the other.
	n1, _ := loggedIn(t, b, "n1")
	n2, _ := loggedIn(t, a, "n2")
	checkFor(t, time.Until(deadline), 100*time.Millisecond, func() error {
		if res := a.clPush([]string{"n1"}, "new"); res.Delivered != 1 {
			return fmt.Errorf("push to n1 (logged in on B after the failover) through A: %+v", res)
		}
		return nil
	})
	n1.clWantPush(0, "new")
	if res := b.clPush([]string{"n2"}, "new"); res.Delivered != 1 {
		t.Fatalf("push to n2 (logged in on A after the failover) through B: %+v", res)
	}
	n2.clWantPush(0, "new")
	t.Logf("new logins reachable across nodes %v after SIGKILL of the master", time.Since(killed).Round(10*time.Millisecond))

	for _, s := range []*server{a, b} {
		select {
		case err := <-s.Exited():
			t.Fatalf("node %s exited during the failover: %v\n%s", s.Node, err, s.Logs())
		default:
		}
	}
	// The devices of before are still connected, and reachable from both
	// nodes.
	for _, s := range []*server{a, b} {
		if res := s.clPush([]string{"a1", "b1"}, "after-"+s.Node); res.Delivered != 2 {
			t.Fatalf("push to the devices of before through %s: %+v", s.Node, res)
		}
		a1.clWantPush(0, "after-"+s.Node)
		b1.clWantPush(0, "after-"+s.Node)
	}
	for _, c := range []*client{a1, b1, n1, n2} {
		c.clQuiet()
	}
}

func TestClusterRouteCache(t *testing.T) {
	forTopologies(t, func(t *testing.T, top redistest.Topology) { testClusterRouteCache(t, top, true) })
}

// TestClusterWithoutLinks is the same with -link-listen "" on every node:
// pushes and kicks between nodes go through Redis, to the same effect.
func TestClusterWithoutLinks(t *testing.T) {
	testClusterRouteCache(t, redistest.StartTopology(t, "standalone"), false)
}

// testClusterRouteCache: pushes through C to a device that stays on A
// skip the route lookup (route_cached); when the device moves to B, or
// goes offline, C's stale guess is answered missing by the node it
// names, which keeps nothing, and C looks the device up: every push
// arrives once, with its seq, and the one sent while offline resumes.
func testClusterRouteCache(t *testing.T, top redistest.Topology, links bool) {
	var extra []string
	if !links {
		extra = []string{"-link-listen", ""}
	}
	a := startClusterNode(t, top, "A", extra...)
	b := startClusterNode(t, top, "B", extra...)
	cn := startClusterNode(t, top, "C", extra...)
	stat := func(section, field string) int {
		t.Helper()
		return int(cn.stats()[section].(map[string]any)[field].(float64))
	}
	route := func(field string) int { t.Helper(); return stat("push", field) }
	d, _ := loggedIn(t, a, "rc")
	for i, m := range []string{"p1", "p2", "p3"} {
		if res := cn.clPush([]string{"rc"}, m); res.Delivered != 1 {
			t.Fatalf("push %s through C: %+v", m, res)
		}
		d.clWantPush(uint32(i+1), m)
	}
	if got := route("route_cached"); got != 2 {
		t.Errorf("route_cached = %d after three pushes to a device that stayed, want 2 (the first looks it up)", got)
	}

	// The device moves to B: C's guess (A) fails once.
	d2 := dial(t, b.TCP)
	if ack := d2.login(token(t, "rc", time.Hour), "resume", "3"); ack.Status != codec.StatusOK {
		t.Fatalf("login on B: %v", ack.Status)
	}
	if f := d.read(5 * time.Second); f.Op != codec.OpKick || f.Status != codec.StatusDuplicateLogin {
		t.Fatalf("the connection on A got %v %v, want KICK DUPLICATE_LOGIN", f.Op, f.Status)
	}
	d.expectClosed(5 * time.Second)
	if res := cn.clPush([]string{"rc"}, "p4"); res.Delivered != 1 || len(res.Offline)+len(res.Unrouted) != 0 {
		t.Fatalf("push through C after the move: %+v", res)
	}
	d2.clWantPush(4, "p4")
	if got := route("route_stale"); got != 1 {
		t.Errorf("route_stale = %d after the move, want 1", got)
	}
	if res := cn.clPush([]string{"rc"}, "p5"); res.Delivered != 1 {
		t.Fatalf("push through C: %+v", res)
	}
	d2.clWantPush(5, "p5")
	d2.clQuiet()

	// Offline: the guess (B) fails, the route says offline, the push is
	// kept, and it resumes on A exactly once (A kept nothing of p4).
	d2.nc.Close()
	cn.clWaitOffline("rc", 5*time.Second)
	if res := cn.clPush([]string{"rc"}, "p6"); res.Delivered != 0 || !slices.Equal(res.Offline, []string{"rc"}) {
		t.Fatalf("push through C while offline: %+v", res)
	}
	d3 := dial(t, a.TCP)
	if ack := d3.login(token(t, "rc", time.Hour), "resume", "5"); ack.Status != codec.StatusOK || metaString(ack, "resumed") != "1" {
		t.Fatalf("resume on A: %v resumed=%q", ack.Status, metaString(ack, "resumed"))
	}
	d3.clWantPush(6, "p6")
	d3.clQuiet()
	if got := route("route_stale"); got != 2 {
		t.Errorf("route_stale = %d after going offline, want 2", got)
	}
	// C sent 7 requests: p1..p6, p4 twice (the stale guess A, then B, the
	// route's answer), p6 once (to B; the route then said offline); on
	// links, or all through Redis without them.
	sent, fell := stat("cluster", "link_requests"), stat("cluster", "link_fallbacks")
	if links && (sent != 7 || fell != 0) || !links && (sent != 0 || fell != 0) {
		t.Errorf("C's link requests %d, fallbacks %d; want %d and 0", sent, fell, map[bool]int{true: 7}[links])
	}
}

// TestClusterSlotMigration: Redis Cluster moves to another master, while
// two gateways serve, the slots of a device's keys, of its group, of both
// nodes' channels, of the all-nodes channel and of the registry. Through
// the other node, a unicast, a durable push, a group push and a broadcast
// each reach the device again within 20 s, none twice; a duplicate login
// across nodes still kicks the older connection; no node exits.
func TestClusterSlotMigration(t *testing.T) {
	rc := redistest.StartCluster(t)
	a := startClusterNode(t, rc, "A")
	b := startClusterNode(t, rc, "B")
	const device, group = "mig-dev", "mig-room"
	d, _ := loggedIn(t, a, device, group)
	if res := b.clPush([]string{device}, "before"); res.Delivered != 1 {
		t.Fatalf("push before the migration: %+v", res)
	}
	d.clWantPush(1, "before")

	moved := time.Now()
	for _, tag := range []string{"{" + device + "}", "{" + group + "}", "{A}", "{B}", "{all}", "{nodes}"} {
		slot, err := rc.MoveSlot(tag)
		if err != nil {
			t.Fatalf("moving the slot of %s: %v", tag, err)
		}
		t.Logf("slot %d (%s) moved", slot, tag)
	}
	deadline := moved.Add(20 * time.Second)
	// Each kind of push is tried until the device has it: an attempt that
	// fails during the move is not delivered later or twice, which the
	// final clQuiet proves.
	kinds := []struct {
		name string
		send func(m string) int // the API's status
	}{
		{"unicast", func(m string) int {
			return b.api("POST", "/v1/push", map[string]any{"devices": []string{device}, "biz": 1, "data": m}, nil)
		}},
		{"durable", func(m string) int {
			return b.api("POST", "/v1/push", map[string]any{"devices": []string{device}, "biz": 1, "data": m, "ack": true}, nil)
		}},
		{"group", func(m string) int {
			return b.api("POST", "/v1/groups/"+group+"/push", map[string]any{"biz": 1, "data": m}, nil)
		}},
		{"broadcast", func(m string) int { return b.api("POST", "/v1/broadcast", map[string]any{"biz": 1, "data": m}, nil) }},
	}
	for _, k := range kinds {
		tries := 0
		checkFor(t, time.Until(deadline), 0, func() error {
			tries++
			m := k.name + "-" + itoa(tries)
			code := k.send(m)
			for {
				f, err := d.tryRead(time.Second)
				if err != nil {
					return fmt.Errorf("%s push %q through B (status %d) %v after the move: not received", k.name, m, code, time.Since(moved).Round(time.Millisecond))
				}
				if f.Op == codec.OpPush && f.Flags&codec.FlagAckRequired != 0 {
					d.send(codec.Header{Op: codec.OpPushAck, Seq: f.Seq}, nil, nil)
				}
				if f.Op == codec.OpPush && string(f.Body) == m {
					return nil
				}
				if f.Op != codec.OpPush || !strings.HasPrefix(string(f.Body), k.name+"-") {
					t.Fatalf("while waiting for %q: %v %q", m, f.Op, f.Body)
				}
				// An earlier attempt of this kind, late: not a duplicate.
			}
		})
		t.Logf("%s push through B reaches the device %v after the move (%d tries)", k.name, time.Since(moved).Round(10*time.Millisecond), tries)
	}
	d.clQuiet()

	// A duplicate login on B kicks the connection on A, and B's device
	// is reachable through A.
	checkFor(t, time.Until(deadline), 100*time.Millisecond, func() error {
		if online, node, _ := a.clDevice(device); !online || node != "A" {
			return fmt.Errorf("A looks %s up: online %v on %q", device, online, node)
		}
		return nil
	})
	d2, _ := loggedIn(t, b, device)
	d.kickedWith(codec.StatusDuplicateLogin, 5*time.Second)
	if res := a.clPush([]string{device}, "after"); res.Delivered != 1 {
		t.Fatalf("push through A to the device now on B: %+v", res)
	}
	d2.clWantPush(0, "after")
	d2.clQuiet()
	for _, s := range []*server{a, b} {
		select {
		case err := <-s.Exited():
			t.Fatalf("node %s exited during the migration: %v\n%s", s.Node, err, s.Logs())
		default:
		}
	}
}

// nodesOf is GET /v1/nodes on s, by node id.
func nodesOf(t *testing.T, s *server) map[string]map[string]any {
	t.Helper()
	var body struct{ Nodes []map[string]any }
	if code := s.api("GET", "/v1/nodes", nil, &body); code != 200 {
		t.Fatalf("GET /v1/nodes on %s: %d", s.Node, code)
	}
	out := map[string]map[string]any{}
	for _, n := range body.Nodes {
		out[n["node"].(string)] = n
	}
	return out
}

// TestClusterNodes: every node lists every live node in /v1/nodes, its
// own figures current and the others' as of their last registration; a
// killed node stops beating there, then is gone.
func TestClusterNodes(t *testing.T) {
	forTopologies(t, func(t *testing.T, top redistest.Topology) {
		a := startClusterNode(t, top, "A")
		b := startClusterNode(t, top, "B")
		loggedIn(t, b, "nodes-b1")
		loggedIn(t, b, "nodes-b2")
		checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
			ns := nodesOf(t, a)
			na, nb := ns["A"], ns["B"]
			if len(ns) != 2 || na == nil || nb == nil {
				return fmt.Errorf("A lists %v, want A and B", ns)
			}
			if inst, _ := nb["instance"].(string); na["self"] != true || nb["self"] != false || nb["beating"] != true || nb["draining"] != false || inst == "" {
				return fmt.Errorf("A lists A %v, B %v", na, nb)
			}
			if nb["connections"] != 2.0 || nb["logged_in"] != 2.0 || len(nb["endpoints"].([]any)) == 0 {
				return fmt.Errorf("A sees B with %v connections, %v logged in, endpoints %v; want 2, 2", nb["connections"], nb["logged_in"], nb["endpoints"])
			}
			return nil
		})
		if nb := nodesOf(t, b)["B"]; nb["self"] != true || nb["connections"] != 2.0 {
			t.Fatalf("B lists itself as %v", nb)
		}
		b.Kill()
		checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
			if nb, ok := nodesOf(t, a)["B"]; ok && nb["beating"] != false {
				return fmt.Errorf("A still lists the killed B as beating: %v", nb)
			}
			return nil
		})
		checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
			if nb, ok := nodesOf(t, a)["B"]; ok {
				return fmt.Errorf("A still lists the killed B after its TTL: %v", nb)
			}
			return nil
		})
	})
}
