package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
	"github.com/longlink/longlink/dispatch/upstream"
)

// Development secrets: the embedded default works out of the box on
// loopback, and Validate refuses them anywhere else.
const (
	DevAPIKey    = "longlink-dev-api-key"
	DevJWTSecret = "longlink-dev-jwt-secret-do-not-use-in-production"
)

// Defaults, applied by Default.
const (
	DefaultListen       = "127.0.0.1:7000"
	DefaultWSListen     = "127.0.0.1:7001"
	DefaultAPIListen    = "127.0.0.1:7080"
	DefaultNode         = "longlink" // when the hostname is unknown
	DefaultBizID        = 1          // served by the built-in echo business
	DefaultHeartbeat    = 60 * time.Second
	DefaultLoginTimeout = 10 * time.Second
	DefaultHeartbeatMax = 10 * time.Minute
	DefaultHeartbeatMin = 30 * time.Second // or -hb when that is shorter
	DefaultMaxConns     = 1_000_000
	DefaultMaxFrame     = codec.DefaultMaxFrame
	DefaultMaxPending   = 1 << 20                    // bytes
	DefaultDownQueue    = downstream.DefaultMaxQueue // deliveries per downstream writer
	MaxDownQueue        = 1 << 24
	DefaultRate         = 100      // requests per second per connection
	DefaultFrameRate    = 1000     // frames per second per connection, every op
	DefaultMaxInput     = 64 << 10 // bytes of unprocessed input per connection
	DefaultTLSHandshake = 5 * time.Second
	DefaultMaxUnauthIP  = 1024 // connections per source address still logging in
	DefaultRecoverSize  = 64
	DefaultRecoverTTL   = 2 * time.Minute
	DefaultLogLevel     = "info"
	DefaultProfilePath  = "."
	DefaultDrainTimeout = 10 * time.Second
	DefaultReadBuffer   = 1024 // bytes
	DefaultRedisPrefix  = "longlink:"
	DefaultNodeTTL      = 15 * time.Second
	DefaultLinkListen   = "127.0.0.1:0" // nodes on one host; a port of its own per node
)

// Defaults of the HTTP API port's own limits, applied by Default. The
// write timeout bounds a whole answer, so it must stay above the 30s a
// /debug/pprof/profile takes by default.
const (
	DefaultAPIReadTimeout  = 30 * time.Second
	DefaultAPIWriteTimeout = 60 * time.Second
	DefaultAPIIdleTimeout  = 120 * time.Second
	DefaultAPIMaxConns     = 1024
	DefaultPprof           = PprofOff
)

// The values of -pprof.
const (
	PprofOff  = "off"  // /debug/pprof/ is not served (404)
	PprofKey  = "key"  // served behind the API key
	PprofOpen = "open" // served without a key: the API port must be private
)

// MaxAPIHeaderTimeout is the longest the API port waits for a request's
// headers; a shorter -api-read-timeout shortens it too.
const MaxAPIHeaderTimeout = 10 * time.Second

// Limits enforced by Validate.
const (
	MinMaxFrame     = 1024      // smallest -max-frame
	MaxMaxFrame     = 16 << 20  // largest -max-frame: a frame is buffered whole
	MaxRate         = 1e6       // largest -rate, requests per second
	MaxFrameRate    = 1e7       // largest -frame-rate, frames per second
	MinMaxInput     = 4096      // smallest -max-input
	MaxMaxInput     = 64 << 20  // largest -max-input
	MaxRecoverSize  = 1 << 16   // largest -recover-size
	MaxReadBuffer   = 8 << 20   // largest -read-buffer; netpoll grows no further
	MinSendBuffer   = 4096      // smallest non-zero -sndbuf
	MaxSendBuffer   = 64 << 20  // largest -sndbuf
	MaxNodeLen      = 128       // bytes of -node
	MinJWTSecretLen = 32        // bytes, to listen beyond loopback
	MinAPIKeyLen    = 16        // bytes, to listen beyond loopback
	MaxHeartbeat    = time.Hour // largest -hb-max: a NAT keeps no idle mapping longer
	MinNodeTTL      = time.Second
	MaxNodeTTL      = 30 * time.Second // a dead node's devices are offline within this
	MaxRedisPrefix  = 64               // bytes of -redis-prefix
)

// EnvPrefix starts the name of every environment variable.
const EnvPrefix = "LONGLINK_"

// Config is every setting of a node. Parse fills it from flags, the
// environment and Default; the flag of each field is in its comment.
type Config struct {
	Listen    string // -listen: TCP listen address host:port; "" disables TCP
	WSListen  string // -ws-listen: WebSocket listen address host:port; "" disables WebSocket
	TLSListen string // -tls-listen: TLS listen address host:port; "" (the default) disables TLS
	TLSCert   string // -tls-cert: certificate file (PEM), required with TLSListen
	TLSKey    string // -tls-key: private key file (PEM), required with TLSListen
	APIListen string // -api-listen: HTTP API address host:port; "" disables the API
	Advertise string // -advertise: host announced in endpoints; "" means the host of each listen address
	Node      string // -node: node id, 1..MaxNodeLen bytes; defaults to the hostname
	APIKey    string // -api-key: bearer key of the /v1 API; defaults to DevAPIKey
	JWTSecret string // -jwt-secret: HS256 secret of login tokens; defaults to DevJWTSecret

	// -ws-origins: the Origin header values a WebSocket handshake may
	// carry, each scheme://host[:port] (websocket.ParseOrigin); empty
	// allows any.
	WSOrigins []string

	// The HTTP API port's own limits and its operations endpoints.
	APIReadTimeout  time.Duration // -api-read-timeout: time to read a whole request, body included; > 0
	APIWriteTimeout time.Duration // -api-write-timeout: time from the end of a request's headers to the end of its answer; > 0
	APIIdleTimeout  time.Duration // -api-idle-timeout: how long a keep-alive connection may wait for its next request; > 0
	APIMaxConns     int           // -api-max-conns: connections to the API port at once; > 0
	Pprof           string        // -pprof: PprofOff, PprofKey or PprofOpen
	MetricsKey      bool          // -metrics-key: /metrics needs the API key

	// -biz: the businesses, each with its forwarding group; defaults to
	// business DefaultBizID served by echo. An empty list serves none.
	Biz []upstream.Business

	Loops         int           // -loops: netpoll event loops; zero means netpoll's default
	DownWorkers   int           // -down-workers: downstream writers; zero means one less than GOMAXPROCS, at least 1
	DownQueue     int           // -down-queue: deliveries a writer holds unwritten before push calls wait; 1..MaxDownQueue
	Heartbeat     time.Duration // -hb: heartbeat interval told to clients; > 0
	HeartbeatMin  time.Duration // -hb-min: shortest interval a LOGIN's "hb" is granted; zero means min(DefaultHeartbeatMin, Heartbeat)
	HeartbeatMax  time.Duration // -hb-max: longest interval a LOGIN's "hb" is granted; >= Heartbeat
	IdleTimeout   time.Duration // -idle-timeout: silence before KICK(IDLE_TIMEOUT); each connection gets the larger of it and conn.IdleHeartbeats x its granted interval
	SessionExpiry bool          // -session-expiry: a session ends at its token's exp (plus auth.Leeway) unless refreshed
	LoginTimeout  time.Duration // -login-timeout: time allowed from accept to LOGIN; > 0
	MaxConns      int           // -max-conns: concurrent connections; > 0
	MaxFrame      int           // -max-frame: bytes of a frame, header included; MinMaxFrame..MaxMaxFrame
	MaxPending    int           // -max-pending: bytes of unsent output per connection before KICK(SLOW_CONSUMER); >= MaxFrame
	Rate          float64       // -rate: upstream requests per second per connection; zero means unlimited
	RateBurst     int           // -rate-burst: requests above Rate allowed at once; zero means max(1, 2 x Rate), filled in by Parse
	FrameRate     float64       // -frame-rate: frames per second per connection, every op and WebSocket control frames; zero means unlimited
	FrameBurst    int           // -frame-burst: frames a connection may send at once; zero means FrameRate
	MaxInput      int           // -max-input: bytes of a connection's unprocessed input before the node stops reading it; MinMaxInput..MaxMaxInput
	TLSHandshake  time.Duration // -tls-handshake-timeout: time a TLS handshake may take from its first byte; > 0
	MaxUnauthIP   int           // -max-unauth-per-ip: connections per source address still in the TLS handshake or login; zero means no cap
	MaxConnsIP    int           // -max-conns-per-ip: connections per source address; zero means no cap
	ConnRateIP    float64       // -connect-rate-per-ip: new connections per second per source address; zero means unlimited
	RecoverSize   int           // -recover-size: pushes kept per device for resume; 1..MaxRecoverSize
	RecoverTTL    time.Duration // -recover-ttl: how long they are kept after a disconnect; > 0
	EventsURL     string        // -events-url: http(s) URL for connect/disconnect events; "" disables them
	Redis         string        // -redis: Redis host:port of the shared route, several comma-separated for Redis Cluster seeds or Sentinels; "" means the in-memory route
	RedisMaster   string        // -redis-master: with it the -redis addresses are Sentinels watching this master
	RedisPrefix   string        // -redis-prefix: starts every Redis key and channel, 1..MaxRedisPrefix bytes; deployments sharing a Redis need different ones
	RedisPass     string        // -redis-password: Redis AUTH password; "" means none
	NodeTTL       time.Duration // -node-ttl: a node's registration lifetime: a dead node's devices are offline within it; MinNodeTTL..MaxNodeTTL
	LinkListen    string        // -link-listen: with -redis, where other nodes dial this node's links (host:port they can reach); "" sends their unicast pushes and kicks through Redis
	LogLevel      string        // -log-level: debug, info, warn or error
	Profile       string        // -profile: cpu, mem, block, mutex, trace or goroutine; "" disables profiling
	ProfilePath   string        // -profile-path: directory the profile is written to
	DrainTimeout  time.Duration // -drain-timeout: how long shutdown waits for connections; > 0
	ReadBuffer    int           // -read-buffer: bytes of netpoll's per-connection read buffer; 1..MaxReadBuffer
	SendBuffer    int           // -sndbuf: SO_SNDBUF of each device socket; zero leaves the kernel's autotuning, else MinSendBuffer..MaxSendBuffer
}

// Default returns the configuration of `go run .` with no flags: loopback
// listeners, the in-memory route, business 1 = echo and the development
// secrets. It is the one place defaults are applied.
func Default() Config {
	return Config{
		Listen:        DefaultListen,
		WSListen:      DefaultWSListen,
		APIListen:     DefaultAPIListen,
		Node:          hostname(),
		APIKey:        DevAPIKey,
		JWTSecret:     DevJWTSecret,
		Biz:           []upstream.Business{{ID: DefaultBizID, Echo: true}},
		Heartbeat:     DefaultHeartbeat,
		HeartbeatMax:  DefaultHeartbeatMax,
		SessionExpiry: true,
		LoginTimeout:  DefaultLoginTimeout,
		MaxConns:      DefaultMaxConns,
		MaxFrame:      DefaultMaxFrame,
		MaxPending:    DefaultMaxPending,
		DownQueue:     DefaultDownQueue,
		Rate:          DefaultRate,
		RateBurst:     burstFor(DefaultRate),
		FrameRate:     DefaultFrameRate,
		MaxInput:      DefaultMaxInput,
		TLSHandshake:  DefaultTLSHandshake,
		MaxUnauthIP:   DefaultMaxUnauthIP,
		RecoverSize:   DefaultRecoverSize,
		RecoverTTL:    DefaultRecoverTTL,
		LogLevel:      DefaultLogLevel,
		ProfilePath:   DefaultProfilePath,
		DrainTimeout:  DefaultDrainTimeout,
		ReadBuffer:    DefaultReadBuffer,
		RedisPrefix:   DefaultRedisPrefix,
		NodeTTL:       DefaultNodeTTL,
		LinkListen:    DefaultLinkListen,

		APIReadTimeout:  DefaultAPIReadTimeout,
		APIWriteTimeout: DefaultAPIWriteTimeout,
		APIIdleTimeout:  DefaultAPIIdleTimeout,
		APIMaxConns:     DefaultAPIMaxConns,
		Pprof:           DefaultPprof,
	}
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return DefaultNode
}

// burstFor is the rate limiter's burst when -rate-burst is zero.
func burstFor(rate float64) int { return max(1, int(math.Ceil(2*rate))) }

// DevSecrets reports whether the API key or the JWT secret is still a
// development default.
func (c *Config) DevSecrets() bool {
	return c.APIKey == DevAPIKey || c.JWTSecret == DevJWTSecret
}

// APIReadHeaderTimeout is how long the API port waits for a request's
// headers: MaxAPIHeaderTimeout, or APIReadTimeout when that is shorter.
func (c *Config) APIReadHeaderTimeout() time.Duration {
	return min(MaxAPIHeaderTimeout, c.APIReadTimeout)
}

// EffectiveHeartbeatMin is HeartbeatMin, or when it is zero the shorter
// of DefaultHeartbeatMin and Heartbeat.
func (c *Config) EffectiveHeartbeatMin() time.Duration {
	if c.HeartbeatMin > 0 {
		return c.HeartbeatMin
	}
	return min(DefaultHeartbeatMin, c.Heartbeat)
}

// Parse builds a Config from the defaults, then the environment (looked
// up with getenv, typically os.Getenv; nil means none), then args (without
// the program name), and validates it. -h or -help prints the usage to
// standard error and returns flag.ErrHelp.
func Parse(args []string, getenv func(string) string) (Config, error) {
	c := Default()
	c.RateBurst = 0 // derived from the final Rate unless given
	fs, biz := newFlagSet(&c)
	if getenv != nil {
		if err := applyEnv(fs, getenv); err != nil {
			return Config{}, err
		}
	}
	biz.fresh = true // a -biz flag replaces the environment's list
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, flag.ErrHelp
		}
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	if c.RateBurst == 0 {
		c.RateBurst = burstFor(c.Rate)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// EnvName is the environment variable of a flag: -ws-listen is
// LONGLINK_WS_LISTEN.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// listValue is a flag whose environment variable holds several values
// separated by ';'.
type listValue interface {
	flag.Value
	setList(s string) error
}

// applyEnv sets every flag whose variable is non-empty, and reports every
// bad value, naming its variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := EnvName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		var err error
		if lv, ok := f.Value.(listValue); ok {
			err = lv.setList(v)
		} else {
			err = fs.Set(f.Name, v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("config: invalid %s=%q: %w", name, v, err))
		}
	})
	return errors.Join(errs...)
}

// newFlagSet binds a flag to every field of c, with c's values as the
// defaults. The flag set prints the usage on -h; its output is standard
// error unless changed.
func newFlagSet(c *Config) (*flag.FlagSet, *bizList) {
	fs := flag.NewFlagSet("longlink", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", c.Listen, "TCP listen `address` host:port; empty disables TCP")
	fs.StringVar(&c.WSListen, "ws-listen", c.WSListen, "WebSocket listen `address` host:port; empty disables WebSocket")
	fs.Var(originList{&c.WSOrigins}, "ws-origins", "comma-separated `origins` scheme://host[:port] a WebSocket handshake's Origin header may name (others get 403; no header is allowed); empty allows any")
	fs.StringVar(&c.TLSListen, "tls-listen", c.TLSListen, "TLS listen `address` host:port; empty disables TLS")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "TLS certificate `file` (PEM), required with -tls-listen")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "TLS private key `file` (PEM), required with -tls-listen")
	fs.StringVar(&c.APIListen, "api-listen", c.APIListen, "HTTP API listen `address` host:port (push API, /metrics, /debug/pprof); empty disables the API")
	fs.DurationVar(&c.APIReadTimeout, "api-read-timeout", c.APIReadTimeout, "time the API port allows to read a whole request, body included (headers: at most 10s)")
	fs.DurationVar(&c.APIWriteTimeout, "api-write-timeout", c.APIWriteTimeout, "time the API port allows from a request's headers to the end of its answer; /debug/pprof/profile?seconds=N needs N below it")
	fs.DurationVar(&c.APIIdleTimeout, "api-idle-timeout", c.APIIdleTimeout, "how long an idle keep-alive connection to the API port stays open")
	fs.IntVar(&c.APIMaxConns, "api-max-conns", c.APIMaxConns, "connections to the API port at once; over it a connection gets 503 and is closed")
	fs.StringVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof/: `mode` off, key (behind the API key) or open (no key: keep the API port private)")
	fs.BoolVar(&c.MetricsKey, "metrics-key", c.MetricsKey, "require the API key for /metrics")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "`host` announced to clients in endpoints; empty means the host of each listen address")
	fs.StringVar(&c.Node, "node", c.Node, "node `id`, unique among the nodes sharing a route")
	fs.StringVar(&c.APIKey, "api-key", c.APIKey, "bearer `key` of the /v1 HTTP API; at least 16 bytes beyond loopback")
	fs.StringVar(&c.JWTSecret, "jwt-secret", c.JWTSecret, "HS256 `secret` of login tokens; at least 32 bytes beyond loopback")
	biz := &bizList{list: &c.Biz, fresh: true}
	fs.Var(biz, "biz", "business `spec` ID=echo or ID=URL[,timeout=D][,workers=N][,queue=N]; repeat for several (environment: separated by ';')")
	fs.IntVar(&c.Loops, "loops", c.Loops, "netpoll event loops; 0 means netpoll's default")
	fs.IntVar(&c.DownWorkers, "down-workers", c.DownWorkers, "downstream writer goroutines; 0 means one less than GOMAXPROCS, at least 1")
	fs.IntVar(&c.DownQueue, "down-queue", c.DownQueue, "`deliveries` a downstream writer holds unwritten before push API calls wait; 1..16777216")
	fs.DurationVar(&c.Heartbeat, "hb", c.Heartbeat, "heartbeat interval clients are told to use")
	fs.DurationVar(&c.HeartbeatMin, "hb-min", c.HeartbeatMin, "shortest heartbeat interval granted to a LOGIN asking for one (meta hb); 0 means min(30s, -hb)")
	fs.DurationVar(&c.HeartbeatMax, "hb-max", c.HeartbeatMax, "longest heartbeat interval granted to a LOGIN asking for one (meta hb)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "close a connection silent this long, or 3 x its granted heartbeat when that is longer; 0 means 3 x the granted heartbeat")
	fs.BoolVar(&c.SessionExpiry, "session-expiry", c.SessionExpiry, "end a session at its token's exp (KICK UNAUTHORIZED \"token expired\") unless the client sends REFRESH")
	fs.DurationVar(&c.LoginTimeout, "login-timeout", c.LoginTimeout, "close a connection not logged in within this time")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "maximum concurrent connections")
	fs.IntVar(&c.MaxFrame, "max-frame", c.MaxFrame, "maximum frame size in `bytes`, header included; 1024..16777216")
	fs.IntVar(&c.MaxPending, "max-pending", c.MaxPending, "`bytes` of unsent output per connection before KICK(SLOW_CONSUMER); at least -max-frame")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "upstream requests per second per connection; 0 means unlimited")
	fs.IntVar(&c.RateBurst, "rate-burst", c.RateBurst, "requests a connection may send at once above -rate; 0 means max(1, 2 x -rate)")
	fs.Float64Var(&c.FrameRate, "frame-rate", c.FrameRate, "`frames` per second a connection may send, every op and WebSocket control frames; past it OVERLOADED, a burst further KICK(OVERLOADED); 0 means unlimited")
	fs.IntVar(&c.FrameBurst, "frame-burst", c.FrameBurst, "frames a connection may send at once; 0 means -frame-rate")
	fs.IntVar(&c.MaxInput, "max-input", c.MaxInput, "`bytes` of a connection's unprocessed input before the node stops reading it (TCP back-pressure); 4096..67108864")
	fs.DurationVar(&c.TLSHandshake, "tls-handshake-timeout", c.TLSHandshake, "time a TLS handshake may take from its first byte")
	fs.IntVar(&c.MaxUnauthIP, "max-unauth-per-ip", c.MaxUnauthIP, "connections per source address still in the TLS handshake or login phase (IPv6: per /64); 0 means no cap")
	fs.IntVar(&c.MaxConnsIP, "max-conns-per-ip", c.MaxConnsIP, "connections per source address (IPv6: per /64); 0 means no cap (behind a load balancer, only with client addresses preserved)")
	fs.Float64Var(&c.ConnRateIP, "connect-rate-per-ip", c.ConnRateIP, "new connections per second per source address (IPv6: per /64), as many at once; 0 means unlimited")
	fs.IntVar(&c.RecoverSize, "recover-size", c.RecoverSize, "pushes kept per device for resume; 1..65536")
	fs.DurationVar(&c.RecoverTTL, "recover-ttl", c.RecoverTTL, "how long a device's pushes are kept after it disconnects")
	fs.StringVar(&c.EventsURL, "events-url", c.EventsURL, "http(s) `URL` receiving connect and disconnect events; empty disables them")
	fs.StringVar(&c.Redis, "redis", c.Redis, "Redis `addresses` of the shared route: host:port of one Redis, or host:port,host:port,... the seeds of a Redis Cluster (or, with -redis-master, the Sentinels); empty means the in-memory route (one node)")
	fs.StringVar(&c.RedisMaster, "redis-master", c.RedisMaster, "Sentinel master `name`: the -redis addresses are Sentinels watching it, and the node follows its failovers")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "`prefix` of every Redis key and channel; deployments sharing one Redis need different ones")
	fs.StringVar(&c.RedisPass, "redis-password", c.RedisPass, "Redis AUTH `password`; empty means none")
	fs.StringVar(&c.LinkListen, "link-listen", c.LinkListen, "with -redis: `host:port` where other nodes dial this node's links (direct connections carrying unicast pushes and kicks, authenticated with -api-key); an address they can reach, port 0 for any; empty sends them through Redis")
	fs.DurationVar(&c.NodeTTL, "node-ttl", c.NodeTTL, "with -redis: a node's registration lifetime, renewed every third of it; a dead node's devices are offline within it (1s..30s)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log `level`: debug, info, warn or error")
	fs.StringVar(&c.Profile, "profile", c.Profile, "`profile` to record: cpu, mem, block, mutex, trace or goroutine; empty disables profiling")
	fs.StringVar(&c.ProfilePath, "profile-path", c.ProfilePath, "`directory` the profile is written to")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long shutdown waits for connections to drain")
	fs.IntVar(&c.ReadBuffer, "read-buffer", c.ReadBuffer, "`bytes` of netpoll's per-connection read buffer")
	fs.IntVar(&c.SendBuffer, "sndbuf", c.SendBuffer, "kernel send buffer (SO_SNDBUF) of each device socket in `bytes`; 0 leaves the kernel's autotuning, else 4096..67108864")
	fs.Usage = func() { usage(fs) }
	return fs, biz
}

// usage lists every flag with its environment variable and default.
func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: %s [flags]\n\n", fs.Name())
	fmt.Fprintf(w, "Each flag may also be set by the environment variable shown with it;\na flag on the command line wins over the environment.\n\n")
	fs.VisitAll(func(f *flag.Flag) { printFlag(w, f) })
}

func printFlag(w io.Writer, f *flag.Flag) {
	kind, text := flag.UnquoteUsage(f)
	fmt.Fprintf(w, "  -%s %s\n    \t%s\n    \t(%s", f.Name, kind, text, EnvName(f.Name))
	// Quote text defaults; numbers and durations read better bare.
	quote := true
	if g, ok := f.Value.(flag.Getter); ok {
		_, quote = g.Get().(string)
	}
	switch {
	case f.DefValue == "":
	case quote:
		fmt.Fprintf(w, "; default %q", f.DefValue)
	default:
		fmt.Fprintf(w, "; default %s", f.DefValue)
	}
	fmt.Fprintln(w, ")")
}

// Validate checks every field and reports all problems at once, each
// naming its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	listeners := []struct{ flag, addr string }{
		{"listen", c.Listen}, {"ws-listen", c.WSListen}, {"tls-listen", c.TLSListen}, {"api-listen", c.APIListen},
	}
	if c.Redis != "" {
		listeners = append(listeners, struct{ flag, addr string }{"link-listen", c.LinkListen})
	}
	weak := c.weakSecrets()
	for _, l := range listeners {
		if l.addr == "" {
			continue
		}
		host, err := splitAddr(l.addr)
		if err != nil {
			bad("-%s %q: %v", l.flag, l.addr, err)
			continue
		}
		if weak != "" && !isLoopback(host) {
			bad("-%s %q: refusing to listen beyond loopback with %s; set -api-key (at least %d bytes) and -jwt-secret (at least %d bytes), or listen on 127.0.0.1",
				l.flag, l.addr, weak, MinAPIKeyLen, MinJWTSecretLen)
		}
	}
	if c.Listen == "" && c.WSListen == "" && c.TLSListen == "" {
		bad("no client listener: set -listen, -ws-listen or -tls-listen")
	}
	if c.TLSListen != "" && (c.TLSCert == "" || c.TLSKey == "") {
		bad("-tls-listen needs -tls-cert and -tls-key")
	}
	validateOrigins(c.WSOrigins, bad)
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err == nil || hasSpaceOrControl(c.Advertise) {
			bad("-advertise %q: want a host name or IP address without a port", c.Advertise)
		}
	}
	if c.Node == "" || len(c.Node) > MaxNodeLen || hasSpaceOrControl(c.Node) {
		bad("-node %q: want 1..%d bytes without spaces or control characters", c.Node, MaxNodeLen)
	}
	if c.APIKey == "" {
		bad("-api-key is empty")
	}
	if c.JWTSecret == "" {
		bad("-jwt-secret is empty")
	}
	errs = append(errs, validateBiz(c.Biz)...)

	if c.Loops < 0 {
		bad("-loops %d: want 0 (netpoll's default) or more", c.Loops)
	}
	if c.DownWorkers < 0 {
		bad("-down-workers %d: want 0 (GOMAXPROCS - 1) or more", c.DownWorkers)
	}
	if c.DownQueue < 1 || c.DownQueue > MaxDownQueue {
		bad("-down-queue %d: want 1..%d", c.DownQueue, MaxDownQueue)
	}
	positive := []struct {
		flag string
		d    time.Duration
	}{
		{"hb", c.Heartbeat}, {"login-timeout", c.LoginTimeout}, {"recover-ttl", c.RecoverTTL}, {"drain-timeout", c.DrainTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			bad("-%s %v: want a positive duration", p.flag, p.d)
		}
	}
	switch {
	case c.IdleTimeout < 0:
		bad("-idle-timeout %v: want 0 (3 x the granted heartbeat) or a positive duration", c.IdleTimeout)
	case c.Heartbeat > 0 && c.Heartbeat < time.Second:
		bad("-hb %v: at least 1s (LOGIN_ACK tells clients the interval in whole seconds)", c.Heartbeat)
	case c.IdleTimeout > 0 && c.IdleTimeout <= c.Heartbeat:
		bad("-idle-timeout %v: must be longer than -hb %v, or every client is dropped between heartbeats", c.IdleTimeout, c.Heartbeat)
	}
	switch {
	case c.HeartbeatMin < 0:
		bad("-hb-min %v: want 0 (min(%v, -hb)) or a positive duration", c.HeartbeatMin, DefaultHeartbeatMin)
	case c.HeartbeatMin > 0 && c.HeartbeatMin < time.Second:
		bad("-hb-min %v: at least 1s (LOGIN_ACK tells clients the interval in whole seconds)", c.HeartbeatMin)
	case c.HeartbeatMin > c.Heartbeat:
		bad("-hb-min %v: must not be longer than -hb %v", c.HeartbeatMin, c.Heartbeat)
	case c.HeartbeatMax < c.Heartbeat:
		bad("-hb-max %v: must not be shorter than -hb %v", c.HeartbeatMax, c.Heartbeat)
	case c.HeartbeatMax > MaxHeartbeat:
		bad("-hb-max %v: at most %v", c.HeartbeatMax, MaxHeartbeat)
	}
	if c.MaxConns < 1 {
		bad("-max-conns %d: want at least 1", c.MaxConns)
	}
	if c.MaxFrame < MinMaxFrame || c.MaxFrame > MaxMaxFrame {
		bad("-max-frame %d: want %d..%d bytes", c.MaxFrame, MinMaxFrame, MaxMaxFrame)
	}
	if c.MaxPending < c.MaxFrame {
		bad("-max-pending %d: want at least -max-frame (%d), or one large push is a slow consumer", c.MaxPending, c.MaxFrame)
	}
	if !(c.Rate >= 0 && c.Rate <= MaxRate) {
		bad("-rate %v: want 0 (unlimited) to %v requests per second", c.Rate, float64(MaxRate))
	}
	if c.RateBurst < 0 || (c.Rate > 0 && c.RateBurst < 1) {
		bad("-rate-burst %d: want at least 1", c.RateBurst)
	}
	if !(c.FrameRate >= 0 && c.FrameRate <= MaxFrameRate) {
		bad("-frame-rate %v: want 0 (unlimited) to %v frames per second", c.FrameRate, float64(MaxFrameRate))
	}
	if c.FrameBurst < 0 {
		bad("-frame-burst %d: want 0 (the -frame-rate) or more", c.FrameBurst)
	}
	if c.MaxInput < MinMaxInput || c.MaxInput > MaxMaxInput {
		bad("-max-input %d: want %d..%d bytes", c.MaxInput, MinMaxInput, MaxMaxInput)
	}
	if c.TLSHandshake <= 0 {
		bad("-tls-handshake-timeout %v: want more than 0", c.TLSHandshake)
	}
	if c.MaxUnauthIP < 0 {
		bad("-max-unauth-per-ip %d: want 0 (no cap) or more", c.MaxUnauthIP)
	}
	if c.MaxConnsIP < 0 {
		bad("-max-conns-per-ip %d: want 0 (no cap) or more", c.MaxConnsIP)
	}
	if !(c.ConnRateIP >= 0 && c.ConnRateIP <= MaxFrameRate) {
		bad("-connect-rate-per-ip %v: want 0 (unlimited) to %v per second", c.ConnRateIP, float64(MaxFrameRate))
	}
	if c.RecoverSize < 1 || c.RecoverSize > MaxRecoverSize {
		bad("-recover-size %d: want 1..%d", c.RecoverSize, MaxRecoverSize)
	}
	if c.ReadBuffer < 1 || c.ReadBuffer > MaxReadBuffer {
		bad("-read-buffer %d: want 1..%d bytes", c.ReadBuffer, MaxReadBuffer)
	}
	if c.SendBuffer != 0 && (c.SendBuffer < MinSendBuffer || c.SendBuffer > MaxSendBuffer) {
		bad("-sndbuf %d: want 0 (the kernel's autotuning) or %d..%d bytes", c.SendBuffer, MinSendBuffer, MaxSendBuffer)
	}
	if c.EventsURL != "" {
		if err := checkURL(c.EventsURL); err != nil {
			bad("-events-url %q: %v", c.EventsURL, err)
		}
	}
	for _, a := range c.RedisAddrs() {
		if _, err := splitAddr(a); err != nil {
			bad("-redis %q: %s: %v", c.Redis, a, err)
		}
	}
	if c.RedisMaster != "" && (c.Redis == "" || hasSpaceOrControl(c.RedisMaster)) {
		bad("-redis-master %q: want a name without spaces, with the Sentinels' addresses in -redis", c.RedisMaster)
	}
	if c.RedisPrefix == "" || len(c.RedisPrefix) > MaxRedisPrefix || hasSpaceOrControl(c.RedisPrefix) || strings.ContainsAny(c.RedisPrefix, "{}") {
		bad("-redis-prefix %q: want 1..%d bytes without spaces, control characters or braces (keys carry {hash tags})", c.RedisPrefix, MaxRedisPrefix)
	}
	if c.Redis != "" && c.LinkListen != "" {
		// Announced as bound: other nodes need a host they can dial.
		if host, err := splitAddr(c.LinkListen); err == nil {
			if ip, perr := netip.ParseAddr(host); host == "" || (perr == nil && ip.IsUnspecified()) {
				bad("-link-listen %q: want the address other nodes dial (an IP or name of this host), not an unspecified one", c.LinkListen)
			}
		}
	}
	if c.NodeTTL < MinNodeTTL || c.NodeTTL > MaxNodeTTL {
		bad("-node-ttl %v: want %v..%v", c.NodeTTL, MinNodeTTL, MaxNodeTTL)
	}
	apiTimeouts := []struct {
		flag string
		d    time.Duration
	}{
		{"api-read-timeout", c.APIReadTimeout}, {"api-write-timeout", c.APIWriteTimeout}, {"api-idle-timeout", c.APIIdleTimeout},
	}
	for _, p := range apiTimeouts {
		if p.d <= 0 {
			bad("-%s %v: want a positive duration", p.flag, p.d)
		}
	}
	if c.APIMaxConns < 1 {
		bad("-api-max-conns %d: want at least 1", c.APIMaxConns)
	}
	switch c.Pprof {
	case PprofOff, PprofKey, PprofOpen:
	default:
		bad("-pprof %q: want %s, %s or %s", c.Pprof, PprofOff, PprofKey, PprofOpen)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("-log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.Profile {
	case "", "cpu", "mem", "block", "mutex", "trace", "goroutine":
	default:
		bad("-profile %q: want cpu, mem, block, mutex, trace, goroutine or empty", c.Profile)
	}
	if c.Profile != "" && c.ProfilePath == "" {
		bad("-profile-path is empty")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("config: %w", errors.Join(errs...))
}

// weakSecrets says why the secrets may not leave loopback, or "" when
// they may.
func (c *Config) weakSecrets() string {
	var why []string
	if c.APIKey == DevAPIKey {
		why = append(why, "the development API key")
	} else if len(c.APIKey) < MinAPIKeyLen {
		why = append(why, fmt.Sprintf("an API key shorter than %d bytes", MinAPIKeyLen))
	}
	if c.JWTSecret == DevJWTSecret {
		why = append(why, "the development JWT secret")
	} else if len(c.JWTSecret) < MinJWTSecretLen {
		why = append(why, fmt.Sprintf("a JWT secret shorter than %d bytes", MinJWTSecretLen))
	}
	return strings.Join(why, " and ")
}

// splitAddr checks a host:port address and returns its host. The port
// must be numeric; 0 asks the system for a free one.
// RedisAddrs is -redis split at its commas: one address of a standalone
// Redis, the seeds of a Redis Cluster, or (with -redis-master) Sentinels.
func (c Config) RedisAddrs() []string {
	if c.Redis == "" {
		return nil
	}
	return strings.Split(c.Redis, ",")
}

func splitAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("want host:port: %w", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("port %q: want a number 0..65535", port)
	}
	return host, nil
}

// isLoopback reports whether host names only this machine: an address in
// 127.0.0.0/8, ::1, or "localhost". An empty host means every interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkURL accepts an absolute http or https URL with a host.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("parsing URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	return nil
}

func hasSpaceOrControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}
