package gateway

import (
	"context"

	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/conn"
	"github.com/longlink/longlink/metrics"
	"github.com/longlink/longlink/route"
)

// peers is what a node asks of the other nodes that share its route: a
// single node has none (alone, which does nothing), a node of a cluster
// reaches them through Redis (clusterNode, cluster.go). Another way for
// nodes to share a route (another route backend and bus) is another
// implementation, picked in New. For pushes, kicks and membership
// changes the gateway does this node's part first, from its own registry,
// and hands the peers what is left.
//
// It is also the hub's conn.Cluster: a login takes its device over from
// another node (Takeover), and a release lets a waiting takeover go on
// (Released).
//
// Every method is safe for concurrent use. Errors that come from failing
// to reach the other nodes wrap api.ErrPeersUnavailable (the API answers
// 503); those from the shared route wrap route.ErrUnavailable.
type peers interface {
	conn.Cluster

	// Start runs before the listeners open, so that the node hears the
	// others before any of its devices is bound. A peer that cannot be
	// reached yet is no reason not to start.
	Start() error
	// Announce runs once the listeners are bound, so their addresses can
	// be published, and starts any background work.
	Announce()
	// Draining runs when shutdown begins: the others stop handing out
	// this node's endpoints, and keep routing to it until Stop.
	Draining(ctx context.Context)
	// Stop runs once the connections are gone (their recovery state
	// saved): the node leaves and closes what it holds.
	Stop(ctx context.Context)

	// PushElsewhere delivers frame to devices, none of them connected
	// here, through the nodes they are connected to, and accounts for them
	// in res: Delivered, Offline (kept for resume where they have recovery
	// state) and Unrouted. It returns the devices, in the order given, that
	// no node holds and that it has not accounted for: the caller keeps
	// their push here and reports them offline.
	PushElsewhere(ctx context.Context, devices []string, frame []byte, res *api.PushResult) (nowhere []string)
	// FanoutGroup sends a group push, once delivered to this node's
	// members, to every other node, and returns their deliveries (a lower
	// bound when a node answers late). The error is for a push no other
	// node could be sent.
	FanoutGroup(ctx context.Context, group string, frame []byte) (int, error)
	// FanoutAll is FanoutGroup for a broadcast.
	FanoutAll(ctx context.Context, frame []byte) (int, error)
	// KickElsewhere closes device's connection on whichever other node
	// holds it, with UNAUTHORIZED and reason; false when none does.
	KickElsewhere(ctx context.Context, device, reason string) (bool, error)
	// MembersChanged tells the other nodes that devices joined (or left)
	// group, once the route has stored it, for whichever holds them.
	MembersChanged(ctx context.Context, group string, devices []string, join bool) error

	// Endpoints lists the access points of every live node, least loaded
	// first; local are this node's own.
	Endpoints(local []api.Endpoint) []api.Endpoint
	// Nodes lists the deployment's nodes by id, self (this node) among
	// them.
	Nodes(self api.Node) []api.Node
	// AddStats adds the peers' counters and queues to s.
	AddStats(s *metrics.Snapshot)
}

// alone is the peers of a single node: there are none.
type alone struct{}

var _ peers = alone{}

func (alone) Takeover(context.Context, string, route.Location) {}
func (alone) Released(string, uint64)                          {}
func (alone) Announce()                                        {}
func (alone) Draining(context.Context)                         {}
func (alone) Stop(context.Context)                             {}
func (alone) AddStats(*metrics.Snapshot)                       {}

// Start implements peers: there is nothing to start.
func (alone) Start() error { return nil }

// PushElsewhere implements peers: no other node holds a device.
func (alone) PushElsewhere(_ context.Context, devices []string, _ []byte, _ *api.PushResult) []string {
	return devices
}

// FanoutGroup implements peers: no other node has members.
func (alone) FanoutGroup(context.Context, string, []byte) (int, error) { return 0, nil }

// FanoutAll implements peers: no other node has connections.
func (alone) FanoutAll(context.Context, []byte) (int, error) { return 0, nil }

// KickElsewhere implements peers: no other node holds the device.
func (alone) KickElsewhere(context.Context, string, string) (bool, error) { return false, nil }

// MembersChanged implements peers: no other node to tell.
func (alone) MembersChanged(context.Context, string, []string, bool) error { return nil }

// Endpoints implements peers: this node's are all there are.
func (alone) Endpoints(local []api.Endpoint) []api.Endpoint { return local }

// Nodes implements peers: this node is the deployment.
func (alone) Nodes(self api.Node) []api.Node { return []api.Node{self} }
