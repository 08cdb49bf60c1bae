package api

import (
	"context"
	"errors"
	"time"

	"github.com/longlink/longlink/metrics"
)

// ErrInvalid is for a Gateway to wrap when it refuses a call because of
// what the caller asked (a push body over the maximum frame, say): the API
// answers 400 with the error's message instead of 500.
var ErrInvalid = errors.New("api: invalid request")

// ErrPeersUnavailable is for a Gateway to wrap when a call could not reach
// the other nodes of its cluster (with -redis): a group push or broadcast
// delivered on this node only, a kick or a membership change that could
// not be sent. The API answers 503 with the error's message, which says
// how far the call went.
var ErrPeersUnavailable = errors.New("api: other nodes unreachable")

// Message is a push as the API accepted it.
type Message struct {
	Biz  uint16
	Data []byte
	ID   string // the business's message id, sent as PUSH meta "id"; may be empty
	Ack  bool   // set ACK_REQUIRED on the PUSH
}

// PushResult is the outcome of a unicast or batch push.
type PushResult struct {
	Delivered int      `json:"delivered"`
	Offline   []string `json:"offline"`
	// Unrouted lists devices whose location could not be looked up because
	// the shared route was unreachable (only with -redis).
	Unrouted []string `json:"unrouted,omitempty"`
}

// DeviceInfo is where a device is.
type DeviceInfo struct {
	Online bool   `json:"online"`
	Node   string `json:"node,omitempty"`
	Conn   string `json:"conn,omitempty"`
}

// Endpoint is an access point a client can connect to.
// Node is one node of the deployment as GET /v1/nodes shows it. A remote
// node's figures are those of its last registration (at most a third of
// -node-ttl old); this node's are current.
type Node struct {
	Node        string     `json:"node"`
	Instance    string     `json:"instance,omitempty"` // this run of the node (with -redis)
	Connections int64      `json:"connections"`
	LoggedIn    int64      `json:"logged_in"`
	MaxConns    int        `json:"max_conns"`
	Load        float64    `json:"load"`     // connections / max_conns
	Draining    bool       `json:"draining"` // shutting down: handed out to no client
	Beating     bool       `json:"beating"`  // its heartbeat is current: false for a node that just died
	Started     int64      `json:"started"`  // Unix milliseconds
	Self        bool       `json:"self"`     // the node that answered
	Endpoints   []Endpoint `json:"endpoints"`
}

type Endpoint struct {
	Proto string `json:"proto"` // tcp, ws, tls
	Addr  string `json:"addr"`
	Node  string `json:"node,omitempty"`
	// Load is the node's connection count, for least-loaded-first order.
	Load int64 `json:"load"`
}

// Gateway is what the HTTP API drives. The gateway package implements it;
// every method is safe for concurrent use. The API sorts the errors it
// returns: wrapping ErrInvalid gives 400, route.ErrUnavailable,
// ErrPeersUnavailable or context.DeadlineExceeded 503, context.Canceled
// 499, anything else 500; the error's message is sent to the caller.
type Gateway interface {
	// Push delivers msg to each device; devices not connected anywhere are
	// returned in Offline (their push is kept for resume when they have
	// recovery state).
	Push(ctx context.Context, devices []string, msg Message) (PushResult, error)
	// PushGroup delivers msg to every connected member of group.
	PushGroup(ctx context.Context, group string, msg Message) (delivered int, err error)
	// Broadcast delivers msg to every logged-in connection.
	Broadcast(ctx context.Context, msg Message) (delivered int, err error)
	Join(ctx context.Context, group string, devices []string) error
	Leave(ctx context.Context, group string, devices []string) error
	GroupSize(ctx context.Context, group string) (int, error)
	Device(ctx context.Context, device string) (DeviceInfo, error)
	// Kick closes the device's connection with KICK; kicked is false when
	// it was not connected.
	Kick(ctx context.Context, device, reason string) (kicked bool, err error)
	// Token mints a login token for device.
	Token(device, app string, ttl time.Duration, groups []string) (string, error)
	// Endpoints lists the access points, least loaded first.
	Endpoints(ctx context.Context) ([]Endpoint, error)
	// Nodes lists the deployment's nodes (this one alone without -redis),
	// by node id.
	Nodes(ctx context.Context) ([]Node, error)
	Stats() metrics.Snapshot
	// Ready reports whether the node accepts connections (false while
	// draining).
	Ready() bool
}
