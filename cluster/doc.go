// Package cluster is what the nodes of one Longlink deployment share
// besides the route (package route): who is alive, and a way to talk to
// each other. Both live on one Redis server.
//
//   - Registry: each node registers itself (id, instance, endpoints,
//     connections) under a key with a TTL it renews; the nodes whose key
//     exists are alive. Every node caches the live set for about a second,
//     so that deciding whether a device's node is alive costs no Redis
//     call. The route stores each binding with its node's instance, so a
//     node killed with SIGKILL takes all its devices offline within the
//     TTL, without one Redis call per device.
//   - Bus: node-to-node messages on Redis pub/sub: a channel per node and
//     one for all. A push to devices of another node is one PUBLISH to that
//     node; a group push or a broadcast is one PUBLISH to all, each node
//     delivering to its own connections from its own index, so a group
//     push costs O(nodes) Redis operations, not O(members). Requests are
//     answered on the requester's channel; the answers make the API's
//     delivered counts exact when every node answers within the reply
//     timeout.
//
// Keys and channels, with P the prefix (DefaultPrefix "longlink:"):
//
//	P node:<id>   STRING  a node's NodeInfo (JSON), expires after the node TTL
//	P nodes       ZSET    ids of registered nodes (score: last renewal, unix ms)
//	P c:n:<id>    channel messages to one node, and answers to its requests
//	P c:all       channel messages to every node
//
// The subpackage redistest starts throwaway redis-server processes for
// tests.
//
// Concurrency: every exported method is safe for concurrent use. The bus
// calls its Handler's delivery methods from one goroutine, in message
// order; Registry.Run and the bus's receiver are the only long-lived
// goroutines.
package cluster
