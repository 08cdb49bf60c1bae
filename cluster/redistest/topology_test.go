package redistest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// keys are spread over the slots of every cluster node.
var keys = []string{"a", "b", "c", "d", "e", "f", "g", "h", "{dev}x", "{dev}y"}

// TestTopologies starts each topology (at once, in parallel), writes and
// reads through Client, kills it (Client fails), restarts it (empty, and
// serving again).
func TestTopologies(t *testing.T) {
	for _, name := range TopologyNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			top := StartTopology(t, name)
			if top.Name() != name {
				t.Fatalf("Name() = %q", top.Name())
			}
			checkFlags(t, top)
			ctx := context.Background()
			rdb := top.Client()
			if rdb != top.Client() {
				t.Fatal("Client() returned another client")
			}
			for _, k := range keys {
				if err := rdb.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
					t.Fatalf("SET %s: %v", k, err)
				}
			}
			for _, k := range keys {
				if v, err := rdb.Get(ctx, k).Result(); err != nil || v != "v-"+k {
					t.Fatalf("GET %s: %q %v", k, v, err)
				}
			}
			if c, ok := top.(*Cluster); ok {
				checkSpread(t, c)
			}

			top.Kill()
			if err := rdb.Set(ctx, "a", "dead", 0).Err(); err == nil {
				t.Fatal("SET succeeded with Redis killed")
			}

			begun := time.Now()
			top.Restart()
			t.Logf("Restart took %v", time.Since(begun).Round(time.Millisecond))
			// The client reconnects by itself; the data is gone.
			if err := poll(10*time.Second, func() error {
				if v, err := rdb.Get(ctx, "a").Result(); !errors.Is(err, redis.Nil) {
					return fmt.Errorf("GET a after the restart: %q %v; want nil", v, err)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if err := rdb.Set(ctx, k, "again", 0).Err(); err != nil {
					t.Fatalf("SET %s after the restart: %v", k, err)
				}
			}
			if s, ok := top.(*Sentinel); ok {
				// Still a live replica after the restart: in sync again.
				if err := waitReplica(s.Replica(), s.Master(), 10*time.Second); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// checkFlags checks GatewayFlags against the processes.
func checkFlags(t *testing.T, top Topology) {
	t.Helper()
	var want []string
	switch top := top.(type) {
	case *Standalone:
		want = []string{"-redis", top.Addr}
	case *Cluster:
		want = []string{"-redis", top.Nodes[0].Addr + "," + top.Nodes[1].Addr + "," + top.Nodes[2].Addr}
	case *Sentinel:
		want = []string{"-redis", top.Sentinels[0].Addr + "," + top.Sentinels[1].Addr + "," + top.Sentinels[2].Addr, "-redis-master", "mymaster"}
	}
	if got := top.GatewayFlags(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("GatewayFlags() = %q, want %q", got, want)
	}
}

// checkSpread checks that every cluster node holds some of the keys: the
// cluster client follows the slots, and each master serves its third.
func checkSpread(t *testing.T, c *Cluster) {
	t.Helper()
	for _, n := range c.Nodes {
		reply, err := query(n.Addr, "DBSIZE")
		if err != nil || reply.(int64) == 0 {
			t.Errorf("node %s holds %v keys (%v); want some", n.Addr, reply, err)
		}
	}
	reply, err := query(c.Nodes[0].Addr, "CLUSTER", "SLOTS")
	if err != nil || len(reply.([]any)) != 3 {
		t.Fatalf("CLUSTER SLOTS: %v %v; want 3 ranges", reply, err)
	}
	for _, r := range reply.([]any) {
		master := r.([]any)[2].([]any)
		if ip := master[0].(string); ip != "127.0.0.1" {
			t.Errorf("a node announces %q, want 127.0.0.1", ip)
		}
	}
}

// TestSentinelFailover kills the master: the Sentinels promote the
// replica, the failover client follows, and what was written before (and
// replicated) is still there.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := StartSentinel(t)
	ctx := context.Background()
	rdb := s.Client()
	if err := rdb.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d %v", n, err)
	}
	replica := s.Replica()

	killed := time.Now()
	old := s.KillMaster()
	if old == replica || old.Running() {
		t.Fatalf("KillMaster killed %s (running %v), the replica is %s", old.Addr, old.Running(), replica.Addr)
	}
	promoted := s.WaitPromoted(20 * time.Second)
	t.Logf("replica promoted %v after SIGKILL of the master", time.Since(killed).Round(time.Millisecond))
	if promoted != replica || s.Master() != replica {
		t.Fatalf("promoted %s, want the replica %s", promoted.Addr, replica.Addr)
	}
	var v string
	if err := poll(10*time.Second, func() error {
		if err := rdb.Set(ctx, "k2", "after", 0).Err(); err != nil {
			return err
		}
		var err error
		v, err = rdb.Get(ctx, "k").Result()
		return err
	}); err != nil {
		t.Fatalf("writing after the failover: %v", err)
	}
	t.Logf("client writes again %v after SIGKILL of the master", time.Since(killed).Round(time.Millisecond))
	if v != "before" {
		t.Fatalf("k = %q after the failover, want the replicated %q", v, "before")
	}

	// A restart now brings the old master back as the new one's replica.
	s.Restart()
	if s.Master() != promoted || s.Replica() != old {
		t.Fatalf("after Restart: master %s replica %s; want %s, %s", s.Master().Addr, s.Replica().Addr, promoted.Addr, old.Addr)
	}
	if err := rdb.Set(ctx, "k3", "restarted", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestBeginInParent starts topologies in a parent test and uses them in
// subtests, as e2e does: Kill, Restart and Client belong to the subtest.
func TestBeginInParent(t *testing.T) {
	t.Parallel()
	pending := []*Pending{Begin(t, "standalone"), Begin(t, "cluster")}
	for _, p := range pending {
		t.Run(p.Name(), func(t *testing.T) {
			top := p.Wait(t)
			top.Restart()
			if err := top.Client().Set(context.Background(), "x", "y", 0).Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
