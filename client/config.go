package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/longlink/longlink/codec"
)

// Endpoint is an access point of the gateway. Its JSON form is the one
// POST /v1/tokens and GET /v1/endpoints return, so an app can pass those
// endpoints straight to Config.
type Endpoint struct {
	Proto string `json:"proto"` // "tcp" or "tls"; others need Config.Dialer
	Addr  string `json:"addr"`  // host:port
}

func (ep Endpoint) String() string { return ep.Proto + "://" + ep.Addr }

// Backoff is the delay between reconnection attempts: exponential with full
// jitter and a cap. Attempt n waits a random duration in
// [0, min(Max, Initial*Multiplier^n)].
type Backoff struct {
	Initial    time.Duration // ceiling of the first delay; zero means 500ms
	Max        time.Duration // cap on every delay; zero means 30s
	Multiplier float64       // growth of the ceiling per attempt; zero (or < 1) means 2
}

// Defaults, applied to zero fields of Config and Backoff.
const (
	DefaultBackoffInitial = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	DefaultMultiplier     = 2
	DefaultHeartbeat      = 30 * time.Second // when neither Config nor LOGIN_ACK give one
	DefaultMissedPongs    = 2
	DefaultQueueSize      = 1024
	DefaultDedupWindow    = 1024
	DefaultDialTimeout    = 10 * time.Second
	DefaultAckDelay       = 20 * time.Millisecond
	DefaultAckBatch       = 32
)

// maxIncoming bounds the size of a frame the client accepts from the
// gateway, so a corrupt header cannot make it allocate gigabytes.
const maxIncoming = 16 << 20

// Config configures a Client. Only Endpoints and Token are required; every
// other zero field takes the default its comment states.
type Config struct {
	// Endpoints are tried in order, rotating: a failed attempt moves on to
	// the next one, a lost connection retries the same one first. A KICK's
	// redirect is tried before them.
	Endpoints []Endpoint

	// Token returns the login token (a JWT). It is called before every
	// connection attempt, so a token that expired is replaced on
	// reconnect. An error counts as a failed attempt (retried with
	// backoff); the context ends with the attempt's DialTimeout.
	Token func(ctx context.Context) (string, error)

	// Dialer opens the byte stream to an endpoint. Zero: a net.Dialer for
	// "tcp", a tls.Dialer with TLSConfig for "tls". This is the transport
	// seam: a WebSocket dialer returns a net.Conn that writes each frame
	// (codec.ParseHeader gives its length) as one binary message and reads
	// messages back as a stream.
	Dialer func(ctx context.Context, ep Endpoint) (net.Conn, error)

	// TLSConfig is used by the default dialer for "tls" endpoints. Zero: the
	// system roots, the server name taken from the endpoint's host.
	TLSConfig *tls.Config

	// DialTimeout bounds one attempt: token, dial and LOGIN up to its
	// LOGIN_ACK. Zero means 10s.
	DialTimeout time.Duration

	// Heartbeat is the PING interval when it is shorter than the "hb" of
	// LOGIN_ACK (a longer one would get the connection closed as idle).
	// Zero: LOGIN_ACK's hb, or 30s if the gateway gives none.
	Heartbeat time.Duration

	// Network is the kind of network the device is on, sent with each
	// PING as meta "net" beside its last measured round trip ("rtt"), for
	// the gateway's longlink_client_rtt_seconds{net}: "wifi", "cell",
	// "eth" or "other". Empty: the round trip is sent without it (counted
	// as other). A device that changes network may set it through
	// Client.SetNetwork.
	Network string

	// MissedPongs is how many PINGs may go unanswered: when a heartbeat is
	// due and that many are still outstanding, the connection is declared
	// dead and closed. Zero means 2.
	MissedPongs int

	// Backoff is the delay between reconnection attempts.
	Backoff Backoff

	// Handlers are the push handlers by business, installed before the
	// first connection so that pushes redelivered at login are not missed.
	// Handle adds or replaces handlers later.
	Handlers map[uint16]func(Push)

	// OnState is told of every state change; err is why the client is
	// disconnected or closed (nil otherwise). See State.
	OnState func(s State, err error)

	// OnGap is called when the gateway could not redeliver everything sent
	// since lastSeq (LOGIN_ACK resumed=0): the app must fetch what it missed
	// from its own backend. It is called before any push of the new
	// connection is handled.
	OnGap func(lastSeq uint32)

	// QueueSize bounds the requests waiting while disconnected; a request
	// beyond it fails at once with ErrQueueFull. Zero means 1024; a
	// negative value disables the queue (requests made while disconnected
	// fail at once with ErrDisconnected).
	QueueSize int

	// DedupWindow is how many recent push ids are remembered to drop
	// duplicates. Zero means 1024.
	DedupWindow int

	// AckDelay and AckBatch bound the batching of PUSH_ACKs: an ack is sent
	// at most AckDelay after the first unacknowledged push, or as soon as
	// AckBatch pushes wait. Zero: 20ms and 32.
	AckDelay time.Duration
	AckBatch int

	// MaxFrame is the gateway's -max-frame: a request whose frame would be
	// larger fails with ErrTooLarge instead of costing the connection a
	// KICK(FRAME_TOO_LARGE). Zero means codec.DefaultMaxFrame.
	MaxFrame int

	// Logger receives connection events. Zero: nothing is logged.
	Logger *slog.Logger
}

// withDefaults returns a copy of cfg with every zero field set, or an error
// if cfg cannot work.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Endpoints) == 0 {
		return cfg, errors.New("client: Config.Endpoints is empty")
	}
	if cfg.Token == nil {
		return cfg, errors.New("client: Config.Token is nil")
	}
	cfg.Endpoints = append([]Endpoint(nil), cfg.Endpoints...)
	for _, ep := range cfg.Endpoints {
		if ep.Addr == "" {
			return cfg, fmt.Errorf("client: endpoint %v has no address", ep)
		}
		if cfg.Dialer == nil && ep.Proto != "tcp" && ep.Proto != "tls" {
			return cfg, fmt.Errorf("client: endpoint %v: proto %q needs Config.Dialer", ep, ep.Proto)
		}
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MissedPongs <= 0 {
		cfg.MissedPongs = DefaultMissedPongs
	}
	cfg.Backoff = cfg.Backoff.withDefaults()
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = DefaultDedupWindow
	}
	if cfg.AckDelay <= 0 {
		cfg.AckDelay = DefaultAckDelay
	}
	if cfg.AckBatch <= 0 {
		cfg.AckBatch = DefaultAckBatch
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = codec.DefaultMaxFrame
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dialer == nil {
		cfg.Dialer = defaultDialer(cfg.TLSConfig)
	}
	return cfg, nil
}

func defaultDialer(tc *tls.Config) func(ctx context.Context, ep Endpoint) (net.Conn, error) {
	return func(ctx context.Context, ep Endpoint) (net.Conn, error) {
		switch ep.Proto {
		case "tcp":
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ep.Addr)
		case "tls":
			d := tls.Dialer{Config: tc}
			return d.DialContext(ctx, "tcp", ep.Addr)
		}
		return nil, fmt.Errorf("client: proto %q needs Config.Dialer", ep.Proto)
	}
}
