package e2e

import (
	"testing"

	"github.com/longlink/longlink/cluster/redistest"
)

// startRedis runs a throwaway redis-server on a free loopback port
// (installing redis-server with apt-get the first time it is missing),
// killed when the test ends.
func startRedis(t *testing.T) *redistest.Server {
	t.Helper()
	return redistest.Start(t)
}

// startClusterNode runs a gateway as node name of the cluster behind rdb. The
// node TTL is short so that the tests of dead nodes do not wait 15s;
// extra flags come after (later flags win).
func startClusterNode(t *testing.T, rdb *redistest.Server, name string, extra ...string) *server {
	t.Helper()
	args := append([]string{"-node", name, "-redis", rdb.Addr, "-node-ttl", "3s"}, extra...)
	s := startServer(t, args...)
	s.Node = name
	return s
}
