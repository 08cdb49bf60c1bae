// Package route knows where devices are and which groups they belong to:
// device → (node, connection) and group → member devices.
//
// It is the route layer of the reference design. A single node uses the
// in-memory implementation (NewMemory); several nodes share one Redis
// implementation. Both satisfy Route and pass the same tests
// (route/routetest), so the gateway never knows which one it talks to.
//
// Route stores facts, not connections: delivering to a connection is the
// gateway's job, which keeps its own index of the connections it holds.
// Group membership is by device and persists while the device is offline,
// so a device that joins a group (by the API or its token) and reconnects
// later is still a member.
//
// All methods are safe for concurrent use. They may block on the network
// for the Redis implementation and take a context for that reason; the
// memory implementation does no I/O, ignores the context and never fails.
package route

import (
	"context"
	"errors"
)

// Location is where a device is connected: the node's id and the
// connection's id on that node.
type Location struct {
	Node string
	Conn uint64
}

// ErrUnavailable wraps every error caused by the route's backing store
// being unreachable, so callers can tell "not routed" from "offline".
var ErrUnavailable = errors.New("route: unavailable")

// Route is the route layer. Ordering: operations on one device or one
// group from one goroutine take effect in call order. A Join or Leave of
// many devices is not atomic to readers: a concurrent Groups may see part
// of the batch applied. Group → members and device → groups never disagree
// once the calls that change them have returned.
type Route interface {
	// Bind records that device is connected at loc and returns the
	// location it was bound to before, if any (a duplicate login: the
	// caller kicks the older connection).
	Bind(ctx context.Context, device string, loc Location) (prev Location, hadPrev bool, err error)
	// Unbind removes the device's binding only if it still points at loc,
	// so a late Unbind of an old connection cannot erase a newer login.
	Unbind(ctx context.Context, device string, loc Location) error
	// Lookup returns where device is connected.
	Lookup(ctx context.Context, device string) (loc Location, online bool, err error)
	// Join adds devices to group. Joining twice is a no-op.
	Join(ctx context.Context, group string, devices []string) error
	// Leave removes devices from group. Leaving a group one is not in is a
	// no-op; a group with no members ceases to exist.
	Leave(ctx context.Context, group string, devices []string) error
	// GroupSize returns the number of member devices of group, online or not.
	GroupSize(ctx context.Context, group string) (int, error)
	// Groups returns the groups device is a member of, in no order.
	Groups(ctx context.Context, device string) ([]string, error)
	// Close releases the route's resources.
	Close() error
}
