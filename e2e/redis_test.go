package e2e

import (
	"testing"

	"github.com/longlink/longlink/cluster/redistest"
)

// forTopologies runs fn once per Redis deployment the gateway supports
// (redistest.TopologyNames: standalone, cluster, sentinel), each as a
// subtest on its own fresh deployment. All three start at once, before
// the first subtest, so that the 2s starts of the cluster and the
// Sentinels overlap with each other and with the standalone subtest. The
// subtests run one after the other: their timings do not share the CPUs.
// redis-server is installed with apt-get the first time it is missing.
func forTopologies(t *testing.T, fn func(t *testing.T, top redistest.Topology)) {
	t.Helper()
	var pending []*redistest.Pending
	for _, name := range redistest.TopologyNames {
		pending = append(pending, redistest.Begin(t, name))
	}
	for _, p := range pending {
		t.Run(p.Name(), func(t *testing.T) { fn(t, p.Wait(t)) })
	}
}

// startClusterNode runs a gateway as node name of the cluster behind top.
// The node TTL is short so that the tests of dead nodes do not wait 15s;
// extra flags come after (later flags win).
func startClusterNode(t *testing.T, top redistest.Topology, name string, extra ...string) *server {
	t.Helper()
	args := append([]string{"-node", name}, top.GatewayFlags()...)
	args = append(args, "-node-ttl", "3s")
	s := startServer(t, append(args, extra...)...)
	s.Node = name
	return s
}
