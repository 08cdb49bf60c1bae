package metrics

// Snapshot is the node's counters and gauges at one instant. The gateway
// produces it; /v1/stats serves it as JSON and /metrics exposes it to
// Prometheus. Counters only grow for the life of the process.
type Snapshot struct {
	Node        string  `json:"node"`
	Connections int64   `json:"connections"` // open connections, logged in or not
	LoggedIn    int64   `json:"logged_in"`   // connections past LOGIN
	Goroutines  int64   `json:"goroutines"`
	HeapInuse   int64   `json:"heap_inuse"`  // bytes, runtime.MemStats.HeapInuse
	RSS         int64   `json:"rss"`         // bytes, resident set size of the process
	CPUSeconds  float64 `json:"cpu_seconds"` // user+system CPU time of the process

	Accepted uint64 `json:"accepted"` // connections accepted
	Refused  uint64 `json:"refused"`  // connections refused at accept: -max-conns, draining, per-source limits, or too many TLS handshakes
	// RefusedSource is the part of Refused turned away by a per-source
	// limit (-max-unauth-per-ip, -max-conns-per-ip, -connect-rate-per-ip).
	RefusedSource uint64 `json:"refused_source"`
	// Throttled counts frames that came over their connection's frame
	// rate (-frame-rate): answered OVERLOADED, ignored, or the last one
	// before KICK(OVERLOADED).
	Throttled uint64 `json:"throttled"`
	Logins    uint64 `json:"logins"` // successful logins
	LoginFail uint64 `json:"login_failures"`
	// Refreshes and RefreshFail count REFRESHes that renewed a session
	// and those refused (the session went on unchanged).
	Refreshes   uint64 `json:"refreshes"`
	RefreshFail uint64 `json:"refresh_failures"`
	// RateLimited counts REQUESTs answered OVERLOADED by the per-connection
	// rate limit (-rate), never forwarded.
	RateLimited uint64 `json:"rate_limited"`
	FramesIn    uint64 `json:"frames_in"`
	FramesOut   uint64 `json:"frames_out"`
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
	// Writes counts write system calls to client sockets: FramesOut/Writes
	// is how many frames a write carries on average (coalescing).
	Writes uint64 `json:"writes"`
	// Kicks counts KICKs sent, by status name (BAD_FRAME, IDLE_TIMEOUT...).
	Kicks map[string]uint64 `json:"kicks"`
	// Closes counts connections closed, by reason (client_closed,
	// read_error, write_error, idle, kicked, slow_consumer, shutdown).
	Closes map[string]uint64 `json:"closes"`

	Push PushStats `json:"push"`
	// ClientRTT is what clients report of their round trips (PING meta
	// rtt and net), one histogram per network type; RTTDropped counts the
	// reports dropped as malformed.
	ClientRTT  []Histogram `json:"client_rtt"`
	RTTDropped uint64      `json:"client_rtt_dropped"`
	// Heartbeats is the histogram of the heartbeat intervals granted at
	// login (LOGIN_ACK hb), Net empty.
	Heartbeats Histogram    `json:"heartbeat_intervals"`
	Cluster    ClusterStats `json:"cluster"`
	Businesses []BizStats   `json:"businesses"`
	Queues     []QueueStats `json:"queues"`
}

// ClusterStats counts a node's requests to other nodes (with -redis; zero
// on a single node).
type ClusterStats struct {
	// LinkRequests counts requests (unicast pushes, kicks) sent to
	// another node on its direct link; LinkFallbacks those that could not
	// use one (none announced, or it could not be made) and went through
	// Redis.
	LinkRequests  uint64 `json:"link_requests"`
	LinkFallbacks uint64 `json:"link_fallbacks"`
	// RedisErrors counts Redis commands that failed (not a nil reply):
	// Redis down, failing over, refusing writes, or a command refused.
	RedisErrors uint64 `json:"redis_errors"`
}

// PushStats counts downstream traffic.
type PushStats struct {
	Requests   uint64 `json:"requests"`   // push API calls accepted (unicast, group, broadcast)
	Deliveries uint64 `json:"deliveries"` // PUSH frames handed to connections
	Offline    uint64 `json:"offline"`    // unicast targets that were not connected
	Recovered  uint64 `json:"recovered"`  // pushes redelivered by resume
	Acks       uint64 `json:"acks"`       // PUSH_ACK frames received
	// Unrouted counts unicast targets (with -redis) that could not be
	// reached: the route or their node was unreachable; their push was
	// not kept for resume.
	Unrouted uint64 `json:"unrouted"`
	// NoReply counts unicast deliveries (with -redis) that another node
	// received but did not confirm in time, counted as delivered.
	NoReply uint64 `json:"no_reply"`
	// RouteCached counts unicast targets (with -redis) delivered on
	// another node found in the route cache, without a route lookup;
	// RouteStale those whose cached node no longer held them (or could not
	// be reached), looked up anew.
	RouteCached uint64 `json:"route_cached"`
	RouteStale  uint64 `json:"route_stale"`
}

// Histogram is one histogram in Prometheus' shape: one network type's
// client round trips, or the heartbeat intervals granted (Net empty).
type Histogram struct {
	Net        string    `json:"net,omitempty"`
	Bounds     []float64 `json:"le"`         // upper bounds, seconds
	Cumulative []uint64  `json:"cumulative"` // reports at or under each bound
	Count      uint64    `json:"count"`      // every report, those above the last bound included
	Sum        float64   `json:"sum_seconds"`
}

// BizStats is one business's forwarding group.
type BizStats struct {
	ID       uint16 `json:"id"`
	Target   string `json:"target"` // "echo" or the backend URL
	Requests uint64 `json:"requests"`
	// Results counts answers by status name (OK, TIMEOUT, OVERLOADED...).
	Results  map[string]uint64 `json:"results"`
	Workers  int               `json:"workers"`   // forwarding goroutines (0 for echo, answered inline)
	QueueCap int               `json:"queue_cap"` // requests the queue holds at most
	Queued   int64             `json:"queued"`    // requests waiting now
	InFlight int64             `json:"in_flight"`
	Breaker  string            `json:"breaker"` // closed, open or half-open
	// LatencySeconds and LatencyCount give the mean latency; /metrics
	// exposes the same two as a summary.
	LatencySeconds float64 `json:"latency_seconds_sum"`
	LatencyCount   uint64  `json:"latency_count"`
}

// QueueStats is a bounded queue's depth and capacity, so every bound the
// gateway enforces is visible.
type QueueStats struct {
	Name    string `json:"name"`
	Len     int64  `json:"len"`
	Cap     int64  `json:"cap"`
	Dropped uint64 `json:"dropped"`
}
