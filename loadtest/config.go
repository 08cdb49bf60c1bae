package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/longlink/longlink/codec"
)

// The development defaults of the gateway (`go run .`), so that
// `go run ./loadtest` with no flags drives it.
const (
	DefaultAddr      = "127.0.0.1:7000"
	DefaultWSAddr    = "127.0.0.1:7001"
	DefaultAPI       = "http://127.0.0.1:7080"
	DefaultAPIKey    = "longlink-dev-api-key"
	DefaultJWTSecret = "longlink-dev-jwt-secret-do-not-use-in-production"
)

// Defaults of the generator's own knobs.
const (
	DefaultScenario        = "hold"
	DefaultConns           = 1000
	DefaultDialConcurrency = 200
	DefaultSize            = 64
	DefaultBiz             = 1
	DefaultDuration        = 10 * time.Second
	DefaultPushes          = 100
	DefaultAPIConcurrency  = 32
	DefaultDrain           = 5 * time.Second
	DefaultDialTimeout     = 10 * time.Second
	DefaultConnectTimeout  = 60 * time.Second
	DefaultApp             = "loadtest"
	DefaultPushRate        = 50 // mixed: unicast pushes per second
	DefaultChurn           = 10 // mixed: reconnects per second
	DefaultHTMLAssets      = "embed"

	// Scenario defaults of -rate when it is left at 0.
	DefaultRequestRate = 1000 // request: REQUEST frames per second
	DefaultPushAPIRate = 1000 // push: push API calls per second
	DefaultMixedRate   = 200  // mixed: REQUEST frames per second

	// fallbackHB is the heartbeat interval used until a LOGIN_ACK says
	// otherwise (and when it does not).
	fallbackHB = 30 * time.Second

	// minPushSize is the size of the stamp a push carries (see stamp.go).
	minPushSize = stampSize
)

// Scenarios, in the order the help lists them.
var scenarios = []string{"hold", "request", "push", "group", "mixed"}

// Config is everything a run needs. Each field is bound to one flag in
// bindFlags; a zero value means the default given in its comment, filled in
// by setDefaults.
type Config struct {
	Scenario        string        // hold, request, push, group or mixed; "" = hold
	Addr            string        // gateway TCP address
	API             string        // gateway HTTP API base URL
	APIKey          string        // bearer key of /v1
	JWTSecret       string        // HS256 secret to mint tokens locally; "" = POST /v1/tokens
	Conns           int           // connections to open; 0 = DefaultConns
	DialConcurrency int           // concurrent dial+login; 0 = DefaultDialConcurrency
	SourceIPs       string        // local addresses to dial from, round-robin; "" = the kernel's choice
	Rate            float64       // per second, see -rate's help; 0 = scenario default
	Size            int           // request body / push data size in bytes; 0 = DefaultSize
	Biz             int           // business of REQUEST and pushes; 0 = DefaultBiz
	Duration        time.Duration // load phase; 0 = DefaultDuration
	Ramp            time.Duration // spread connection setup over this; 0 = as fast as -dial-concurrency allows
	JSONFile        string        // write the JSON summary here ("-" = stdout)
	HTMLFile        string        // write the HTML report here
	HTMLAssets      string        // "embed" (inline echarts) or a URL prefix that serves echarts.min.js
	Quiet           bool          // no progress bar
	MaxErrors       int64         // exit non-zero when errors exceed this
	Pushes          int           // group: pushes to send; 0 = DefaultPushes
	Group           string        // group: group name; "" = <device-prefix>group
	HB              time.Duration // heartbeat interval; 0 = the server's (LOGIN_ACK hb)
	DevicePrefix    string        // device ids are <prefix><index>; "" = lt<pid>-
	App             string        // app claim of tokens; "" = DefaultApp
	Ack             bool          // pushes ask for PUSH_ACK
	Batch           int           // push: devices per unicast push call; 0 = 1
	PushRate        float64       // mixed: unicast pushes per second (0 = none)
	Churn           float64       // mixed: reconnects per second (0 = none)
	APIConcurrency  int           // concurrent push API calls; 0 = DefaultAPIConcurrency
	Drain           time.Duration // wait this long for outstanding answers after the load; 0 = DefaultDrain
	DialTimeout     time.Duration // per dial and per login; 0 = DefaultDialTimeout
	ConnectTimeout  time.Duration // bound on the connect phase beyond -ramp; 0 = DefaultConnectTimeout
	MaxFrame        int           // largest frame accepted from the server; 0 = codec.DefaultMaxFrame
	TokenTTL        time.Duration // token lifetime; 0 = long enough for the run plus 10m
	CPUProfile      string        // write the generator's own CPU profile here
	Pipeline        int           // request, mixed: REQUESTs per write to one connection; 0 = 1
	SDK             bool          // each device is a client.Client of the Go SDK (sdk.go)

	// Transport: TCP unless WS or TLS.
	WS            bool   // dial WebSocket (ws://WSAddr/, one frame per binary message)
	WSAddr        string // gateway WebSocket address; "" = DefaultWSAddr
	TLS           bool   // dial TLS to TLSAddr
	TLSAddr       string // gateway TLS address; required with TLS
	TLSCA         string // PEM file of the CA (or self-signed certificate) to trust; "" = the system roots
	TLSInsecure   bool   // do not verify the server's certificate
	TLSServerName string // name to verify (and send as SNI); "" = the host of TLSAddr

	sources   []netip.Addr // parsed SourceIPs
	transport string       // "tcp", "ws" or "tls"
	target    string       // the address dialed: Addr, WSAddr or TLSAddr
	tlsConf   *tls.Config  // with TLS
}

// bindFlags binds every flag to its Config field. The flag defaults are the
// zero values that setDefaults resolves, except where a literal default is
// clearer in -help.
func bindFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Scenario, "scenario", DefaultScenario, "scenario: "+strings.Join(scenarios, ", "))
	fs.StringVar(&c.Addr, "addr", DefaultAddr, "gateway TCP address")
	fs.StringVar(&c.API, "api", DefaultAPI, "gateway HTTP API base URL")
	fs.StringVar(&c.APIKey, "api-key", DefaultAPIKey, "API key (Authorization: Bearer)")
	fs.StringVar(&c.JWTSecret, "jwt-secret", DefaultJWTSecret, "HS256 secret to mint login tokens locally; empty: get tokens from POST /v1/tokens")
	fs.IntVar(&c.Conns, "conns", DefaultConns, "connections to open and log in")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", DefaultDialConcurrency, "concurrent connect+LOGIN")
	fs.StringVar(&c.SourceIPs, "source-ips", "", "local addresses to dial from, round-robin: a range 127.0.0.2-127.0.0.50, a CIDR 127.0.1.0/24, or a comma list")
	fs.Float64Var(&c.Rate, "rate", 0, "target rate per second, open loop: request: REQUESTs (default 1000); push: push API calls (default 1000); group: group pushes (0 = back to back); mixed: REQUESTs (default 200)")
	fs.IntVar(&c.Size, "size", DefaultSize, "REQUEST body and push data size, bytes (pushes at least 16)")
	fs.IntVar(&c.Biz, "biz", DefaultBiz, "business id of REQUESTs and pushes")
	fs.DurationVar(&c.Duration, "duration", DefaultDuration, "length of the load phase (group: upper bound)")
	fs.DurationVar(&c.Ramp, "ramp", 0, "spread connection setup evenly over this long (0: as fast as -dial-concurrency allows)")
	fs.StringVar(&c.JSONFile, "json", "", "write the JSON summary to `FILE` (- for stdout)")
	fs.StringVar(&c.HTMLFile, "html", "", "write the HTML report with charts to `FILE`")
	fs.StringVar(&c.HTMLAssets, "html-assets", DefaultHTMLAssets, "echarts for the HTML: embed (inline, works offline) or a URL prefix serving echarts.min.js")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress bar")
	fs.Int64Var(&c.MaxErrors, "max-errors", 0, "exit with status 1 when errors exceed this")
	fs.IntVar(&c.Pushes, "pushes", DefaultPushes, "group: number of group pushes")
	fs.StringVar(&c.Group, "group", "", "group: group name (default <device-prefix>group)")
	fs.DurationVar(&c.HB, "hb", 0, "heartbeat interval (0: the server's, from LOGIN_ACK hb)")
	fs.StringVar(&c.DevicePrefix, "device-prefix", "", "device ids are <prefix><n>; give each generator its own (default lt<pid>-)")
	fs.StringVar(&c.App, "app", DefaultApp, "app claim of the tokens")
	fs.BoolVar(&c.Ack, "ack", false, "pushes ask for PUSH_ACK (the generator acks cumulatively, once per read)")
	fs.IntVar(&c.Batch, "batch", 1, "push: devices per unicast push API call")
	fs.Float64Var(&c.PushRate, "push-rate", DefaultPushRate, "mixed: unicast pushes per second (0: none)")
	fs.Float64Var(&c.Churn, "churn", DefaultChurn, "mixed: reconnects per second, each logging in again with resume (0: none)")
	fs.IntVar(&c.APIConcurrency, "api-concurrency", DefaultAPIConcurrency, "push API calls in flight at most")
	fs.DurationVar(&c.Drain, "drain", DefaultDrain, "after the load, wait at most this long for outstanding responses and deliveries")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", DefaultDialTimeout, "timeout of each dial and of each LOGIN")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", DefaultConnectTimeout, "the connect phase ends at -ramp plus this, connected or not")
	fs.IntVar(&c.MaxFrame, "max-frame", codec.DefaultMaxFrame, "largest frame accepted from the server, bytes")
	fs.DurationVar(&c.TokenTTL, "token-ttl", 0, "token lifetime (0: the run's length plus 10m)")
	fs.IntVar(&c.Pipeline, "pipeline", 1, "request, mixed: REQUESTs written to a connection at once, in one write (fewer syscalls on both sides); -rate still counts REQUESTs")
	fs.BoolVar(&c.SDK, "sdk", false, "each device is a client.Client of the Go SDK (package client): its own heartbeats, acks, dedup, reconnects and resume; see README")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the generator's own CPU profile to `FILE` (go tool pprof)")
	fs.BoolVar(&c.WS, "ws", false, "dial WebSocket (ws://<-ws-addr>/, subprotocol longlink.v1, one frame per binary message) instead of TCP")
	fs.StringVar(&c.WSAddr, "ws-addr", DefaultWSAddr, "gateway WebSocket address (with -ws)")
	fs.BoolVar(&c.TLS, "tls", false, "dial TLS to -tls-addr instead of TCP")
	fs.StringVar(&c.TLSAddr, "tls-addr", "", "gateway TLS address (required with -tls)")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "trust the CA (or self-signed certificate) in PEM `FILE` instead of the system roots (with -tls)")
	fs.BoolVar(&c.TLSInsecure, "tls-insecure", false, "do not verify the gateway's certificate (with -tls)")
	fs.StringVar(&c.TLSServerName, "tls-server-name", "", "server name to verify and send as SNI (default: the host of -tls-addr)")
}

// parseFlags parses args (without the program name) into a resolved and
// checked Config.
func parseFlags(args []string, stderr io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./loadtest [flags]\n\nDrives a Longlink gateway; see loadtest/README.md.\n\n")
		fs.PrintDefaults()
	}
	bindFlags(fs, c)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// setDefaults fills zero fields with their defaults, the scenario's where
// they depend on it.
func (c *Config) setDefaults() {
	if c.Scenario == "" {
		c.Scenario = DefaultScenario
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.API == "" {
		c.API = DefaultAPI
	}
	c.API = strings.TrimRight(c.API, "/")
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.DialConcurrency <= 0 {
		c.DialConcurrency = DefaultDialConcurrency
	}
	if c.Size <= 0 {
		c.Size = DefaultSize
	}
	if c.Biz == 0 {
		c.Biz = DefaultBiz
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Rate == 0 {
		switch c.Scenario {
		case "request":
			c.Rate = DefaultRequestRate
		case "push":
			c.Rate = DefaultPushAPIRate
		case "mixed":
			c.Rate = DefaultMixedRate
		}
	}
	if c.Pushes <= 0 {
		c.Pushes = DefaultPushes
	}
	if c.DevicePrefix == "" {
		c.DevicePrefix = "lt" + strconv.Itoa(os.Getpid()) + "-"
	}
	if c.Group == "" {
		c.Group = c.DevicePrefix + "group"
	}
	if c.App == "" {
		c.App = DefaultApp
	}
	if c.Pipeline <= 0 {
		c.Pipeline = 1
	}
	if c.Batch <= 0 {
		c.Batch = 1
	}
	if c.APIConcurrency <= 0 {
		c.APIConcurrency = DefaultAPIConcurrency
	}
	if c.Drain <= 0 {
		c.Drain = DefaultDrain
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = codec.DefaultMaxFrame
	}
	if c.HTMLAssets == "" {
		c.HTMLAssets = DefaultHTMLAssets
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = c.Ramp + c.ConnectTimeout + c.Duration + c.Drain + 10*time.Minute
	}
	if c.WSAddr == "" {
		c.WSAddr = DefaultWSAddr
	}
}

// validate checks a Config after setDefaults and parses SourceIPs.
func (c *Config) validate() error {
	known := false
	for _, s := range scenarios {
		known = known || s == c.Scenario
	}
	if !known {
		return fmt.Errorf("unknown -scenario %q (want one of %s)", c.Scenario, strings.Join(scenarios, ", "))
	}
	if c.Conns < 0 {
		return errors.New("-conns must be positive")
	}
	if c.Biz < 0 || c.Biz > 0xFFFF {
		return fmt.Errorf("-biz %d out of range 0..65535", c.Biz)
	}
	if c.Rate < 0 || c.PushRate < 0 || c.Churn < 0 {
		return errors.New("-rate, -push-rate and -churn must not be negative")
	}
	if c.Pipeline > maxPipeline {
		return fmt.Errorf("-pipeline %d above %d", c.Pipeline, maxPipeline)
	}
	if c.Size > c.MaxFrame-codec.HeaderSize {
		return fmt.Errorf("-size %d does not fit in -max-frame %d", c.Size, c.MaxFrame)
	}
	if c.Scenario == "group" && c.Group == "" {
		return errors.New("-group is empty")
	}
	if c.HTMLAssets != "embed" && !strings.Contains(c.HTMLAssets, "://") {
		return fmt.Errorf("-html-assets %q: want embed or a URL prefix", c.HTMLAssets)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("-addr: %v", err)
	}
	srcs, err := parseSourceIPs(c.SourceIPs)
	if err != nil {
		return fmt.Errorf("-source-ips: %v", err)
	}
	c.sources = srcs
	return c.setTransport()
}

// setTransport checks the transport flags and resolves the address to
// dial and, for TLS, the client configuration.
func (c *Config) setTransport() error {
	switch {
	case c.WS && c.TLS:
		return errors.New("-ws and -tls exclude each other: the gateway's TLS listener speaks frames, not WebSocket")
	case c.WS:
		if _, _, err := net.SplitHostPort(c.WSAddr); err != nil {
			return fmt.Errorf("-ws-addr: %v", err)
		}
		c.transport, c.target = "ws", c.WSAddr
	case c.TLS:
		if c.TLSAddr == "" {
			return errors.New("-tls needs -tls-addr")
		}
		host, _, err := net.SplitHostPort(c.TLSAddr)
		if err != nil {
			return fmt.Errorf("-tls-addr: %v", err)
		}
		if c.TLSCA != "" && c.TLSInsecure {
			return errors.New("-tls-ca and -tls-insecure exclude each other")
		}
		conf := &tls.Config{ServerName: host, InsecureSkipVerify: c.TLSInsecure}
		if c.TLSServerName != "" {
			conf.ServerName = c.TLSServerName
		}
		if c.TLSCA != "" {
			pem, err := os.ReadFile(c.TLSCA)
			if err != nil {
				return fmt.Errorf("-tls-ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("-tls-ca %s: no PEM certificate in it", c.TLSCA)
			}
			conf.RootCAs = pool
		}
		c.transport, c.target, c.tlsConf = "tls", c.TLSAddr, conf
	default: // -ws-addr and the -tls-* flags are ignored, as -addr is with -ws or -tls
		c.transport, c.target = "tcp", c.Addr
	}
	return nil
}

// maxPipeline bounds -pipeline.
const maxPipeline = 64

// maxSources bounds -source-ips, so a typo cannot allocate a /8.
const maxSources = 1 << 16

// parseSourceIPs parses a comma-separated list of addresses, inclusive
// ranges (a-b) and CIDR prefixes (every address of the prefix).
func parseSourceIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var lo, hi netip.Addr
		switch {
		case strings.Contains(part, "/"):
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, err
			}
			p = p.Masked()
			if p.Addr().BitLen()-p.Bits() > 16 {
				return nil, fmt.Errorf("%s: more than %d addresses", part, maxSources)
			}
			lo, hi = p.Addr(), p.Addr()
			for a := lo; a.IsValid() && p.Contains(a); a = a.Next() {
				hi = a
			}
		case strings.Contains(part, "-"):
			a, b, _ := strings.Cut(part, "-")
			var err error
			if lo, err = netip.ParseAddr(strings.TrimSpace(a)); err != nil {
				return nil, err
			}
			if hi, err = netip.ParseAddr(strings.TrimSpace(b)); err != nil {
				return nil, err
			}
			if lo.BitLen() != hi.BitLen() || hi.Less(lo) {
				return nil, fmt.Errorf("bad range %q", part)
			}
		default:
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, err
			}
			lo, hi = a, a
		}
		for a := lo; ; a = a.Next() {
			if len(out) >= maxSources {
				return nil, fmt.Errorf("more than %d addresses", maxSources)
			}
			out = append(out, a.Unmap())
			if a == hi {
				break
			}
		}
	}
	return out, nil
}

// maxRunTime bounds a whole run: the connect phase, group setup, the load
// (plus one API call in flight), the drain, and the stats and teardown.
func (c *Config) maxRunTime() time.Duration {
	return c.Ramp + c.ConnectTimeout + groupSetupTimeout + c.Duration + apiTimeout + c.Drain + time.Minute
}
