package config

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/dispatch/upstream"
)

// Secrets long enough to listen beyond loopback.
const (
	realKey    = "0123456789abcdef"                 // MinAPIKeyLen bytes
	realSecret = "0123456789abcdef0123456789abcdef" // MinJWTSecretLen bytes
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefault(t *testing.T) {
	c := Default()
	want := Config{
		Listen: "127.0.0.1:7000", WSListen: "127.0.0.1:7001", APIListen: "127.0.0.1:7080",
		Node: c.Node, APIKey: DevAPIKey, JWTSecret: DevJWTSecret,
		Biz:       []upstream.Business{{ID: 1, Echo: true}},
		Heartbeat: 60 * time.Second, LoginTimeout: 10 * time.Second,
		HeartbeatMax: 10 * time.Minute, SessionExpiry: true,
		MaxConns: 1000000, MaxFrame: 65536, MaxPending: 1 << 20, DownQueue: 1 << 20,
		Rate: 100, RateBurst: 200, RecoverSize: 64, RecoverTTL: 2 * time.Minute,
		LogLevel: "info", ProfilePath: ".", DrainTimeout: 10 * time.Second, ReadBuffer: 1024,
		RedisPrefix: "longlink:", NodeTTL: 15 * time.Second, LinkListen: "127.0.0.1:0",
		APIReadTimeout: 30 * time.Second, APIWriteTimeout: time.Minute, APIIdleTimeout: 2 * time.Minute,
		APIMaxConns: 1024, Pprof: "off", MetricsKey: false,
		FrameRate: 1000, MaxInput: 65536, TLSHandshake: 5 * time.Second, MaxUnauthIP: 1024,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", c, want)
	}
	if c.Node == "" {
		t.Error("Node is empty; want the hostname")
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate(): %v", err)
	}
	if !c.DevSecrets() {
		t.Error("DevSecrets() = false with the development secrets")
	}
	if got := c.EffectiveHeartbeatMin(); got != 30*time.Second {
		t.Errorf("EffectiveHeartbeatMin() = %v, want 30s", got)
	}
	parsed, err := Parse(nil, nil)
	if err != nil {
		t.Fatalf("Parse(nil, nil): %v", err)
	}
	if !reflect.DeepEqual(parsed, c) {
		t.Errorf("Parse with nothing =\n%+v\nwant Default()\n%+v", parsed, c)
	}
}

// flagCases sets every flag once. also holds flags a case needs to pass
// Validate.
var flagCases = []struct {
	flag, value string
	also        map[string]string
	get         func(*Config) any
	want        any
}{
	{"listen", "127.0.0.2:8000", nil, func(c *Config) any { return c.Listen }, "127.0.0.2:8000"},
	{"ws-listen", "[::1]:8001", nil, func(c *Config) any { return c.WSListen }, "[::1]:8001"},
	{"ws-origins", "https://app.example.com, http://localhost:8080", nil, func(c *Config) any { return c.WSOrigins }, []string{"https://app.example.com", "http://localhost:8080"}},
	{"tls-listen", "127.0.0.1:8443", map[string]string{"tls-cert": "c.pem", "tls-key": "k.pem"}, func(c *Config) any { return c.TLSListen }, "127.0.0.1:8443"},
	{"tls-cert", "/etc/longlink/cert.pem", nil, func(c *Config) any { return c.TLSCert }, "/etc/longlink/cert.pem"},
	{"tls-key", "/etc/longlink/key.pem", nil, func(c *Config) any { return c.TLSKey }, "/etc/longlink/key.pem"},
	{"api-listen", "localhost:9090", nil, func(c *Config) any { return c.APIListen }, "localhost:9090"},
	{"api-read-timeout", "5s", nil, func(c *Config) any { return c.APIReadTimeout }, 5 * time.Second},
	{"api-write-timeout", "2m", nil, func(c *Config) any { return c.APIWriteTimeout }, 2 * time.Minute},
	{"api-idle-timeout", "45s", nil, func(c *Config) any { return c.APIIdleTimeout }, 45 * time.Second},
	{"api-max-conns", "50", nil, func(c *Config) any { return c.APIMaxConns }, 50},
	{"pprof", "key", nil, func(c *Config) any { return c.Pprof }, "key"},
	{"metrics-key", "true", nil, func(c *Config) any { return c.MetricsKey }, true},
	{"advertise", "gw1.example.com", nil, func(c *Config) any { return c.Advertise }, "gw1.example.com"},
	{"node", "node-7", nil, func(c *Config) any { return c.Node }, "node-7"},
	{"api-key", realKey, nil, func(c *Config) any { return c.APIKey }, realKey},
	{"jwt-secret", realSecret, nil, func(c *Config) any { return c.JWTSecret }, realSecret},
	{"biz", "2=http://127.0.0.1:9002/rpc,timeout=2s", nil, func(c *Config) any { return c.Biz },
		[]upstream.Business{{ID: 2, URL: "http://127.0.0.1:9002/rpc", Timeout: 2 * time.Second}}},
	{"loops", "4", nil, func(c *Config) any { return c.Loops }, 4},
	{"down-workers", "8", nil, func(c *Config) any { return c.DownWorkers }, 8},
	{"down-queue", "300000", nil, func(c *Config) any { return c.DownQueue }, 300000},
	{"hb", "30s", nil, func(c *Config) any { return c.Heartbeat }, 30 * time.Second},
	{"hb-min", "20s", nil, func(c *Config) any { return c.HeartbeatMin }, 20 * time.Second},
	{"hb-max", "5m", nil, func(c *Config) any { return c.HeartbeatMax }, 5 * time.Minute},
	{"session-expiry", "false", nil, func(c *Config) any { return c.SessionExpiry }, false},
	{"idle-timeout", "100s", nil, func(c *Config) any { return c.IdleTimeout }, 100 * time.Second},
	{"login-timeout", "3s", nil, func(c *Config) any { return c.LoginTimeout }, 3 * time.Second},
	{"max-conns", "5000", nil, func(c *Config) any { return c.MaxConns }, 5000},
	{"max-frame", "2048", nil, func(c *Config) any { return c.MaxFrame }, 2048},
	{"max-pending", "70000", nil, func(c *Config) any { return c.MaxPending }, 70000},
	{"rate", "2.5", nil, func(c *Config) any { return c.Rate }, 2.5},
	{"rate-burst", "7", nil, func(c *Config) any { return c.RateBurst }, 7},
	{"frame-rate", "50", nil, func(c *Config) any { return c.FrameRate }, 50.0},
	{"frame-burst", "80", nil, func(c *Config) any { return c.FrameBurst }, 80},
	{"max-input", "8192", nil, func(c *Config) any { return c.MaxInput }, 8192},
	{"tls-handshake-timeout", "2s", nil, func(c *Config) any { return c.TLSHandshake }, 2 * time.Second},
	{"max-unauth-per-ip", "16", nil, func(c *Config) any { return c.MaxUnauthIP }, 16},
	{"max-conns-per-ip", "100", nil, func(c *Config) any { return c.MaxConnsIP }, 100},
	{"connect-rate-per-ip", "5", nil, func(c *Config) any { return c.ConnRateIP }, 5.0},
	{"recover-size", "10", nil, func(c *Config) any { return c.RecoverSize }, 10},
	{"recover-ttl", "30s", nil, func(c *Config) any { return c.RecoverTTL }, 30 * time.Second},
	{"events-url", "https://biz.example/events", nil, func(c *Config) any { return c.EventsURL }, "https://biz.example/events"},
	{"redis", "127.0.0.1:6379", nil, func(c *Config) any { return c.Redis }, "127.0.0.1:6379"},
	{"redis-prefix", "staging:", nil, func(c *Config) any { return c.RedisPrefix }, "staging:"},
	{"redis-password", "s3cret", nil, func(c *Config) any { return c.RedisPass }, "s3cret"},
	{"redis-master", "mymaster", map[string]string{"redis": "127.0.0.1:26379"}, func(c *Config) any { return c.RedisMaster }, "mymaster"},
	{"node-ttl", "5s", nil, func(c *Config) any { return c.NodeTTL }, 5 * time.Second},
	{"link-listen", "127.0.0.1:7090", map[string]string{"redis": "127.0.0.1:6379"}, func(c *Config) any { return c.LinkListen }, "127.0.0.1:7090"},
	{"log-level", "debug", nil, func(c *Config) any { return c.LogLevel }, "debug"},
	{"profile", "cpu", nil, func(c *Config) any { return c.Profile }, "cpu"},
	{"profile-path", "/tmp/prof", nil, func(c *Config) any { return c.ProfilePath }, "/tmp/prof"},
	{"drain-timeout", "1s", nil, func(c *Config) any { return c.DrainTimeout }, time.Second},
	{"read-buffer", "4096", nil, func(c *Config) any { return c.ReadBuffer }, 4096},
	{"sndbuf", "65536", nil, func(c *Config) any { return c.SendBuffer }, 65536},
}

// TestFlagCasesComplete keeps flagCases, the flag set and Config in step:
// a field added without a flag, or a flag without a case, fails here.
func TestFlagCasesComplete(t *testing.T) {
	c := Default()
	fs, _ := newFlagSet(&c)
	flags := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { flags[f.Name] = true })
	if n := reflect.TypeFor[Config]().NumField(); len(flags) != n {
		t.Errorf("%d flags for %d Config fields", len(flags), n)
	}
	for _, tc := range flagCases {
		if !flags[tc.flag] {
			t.Errorf("case for unknown flag -%s", tc.flag)
		}
		delete(flags, tc.flag)
	}
	for name := range flags {
		t.Errorf("no case sets -%s", name)
	}
}

func TestEachFlag(t *testing.T) {
	for _, tc := range flagCases {
		t.Run(tc.flag, func(t *testing.T) {
			args := []string{"-" + tc.flag + "=" + tc.value}
			for k, v := range tc.also {
				args = append(args, "-"+k+"="+v)
			}
			c, err := Parse(args, nil)
			if err != nil {
				t.Fatalf("Parse(%q): %v", args, err)
			}
			if got := tc.get(&c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("-%s=%s: got %#v, want %#v", tc.flag, tc.value, got, tc.want)
			}
			if reflect.DeepEqual(tc.get(ptr(Default())), tc.want) {
				t.Errorf("case value %#v is the default: the test proves nothing", tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestEachEnv(t *testing.T) {
	for _, tc := range flagCases {
		t.Run(tc.flag, func(t *testing.T) {
			env := map[string]string{EnvName(tc.flag): tc.value}
			for k, v := range tc.also {
				env[EnvName(k)] = v
			}
			c, err := Parse(nil, envOf(env))
			if err != nil {
				t.Fatalf("Parse with %v: %v", env, err)
			}
			if got := tc.get(&c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s=%s: got %#v, want %#v", EnvName(tc.flag), tc.value, got, tc.want)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"listen": "LONGLINK_LISTEN", "ws-listen": "LONGLINK_WS_LISTEN",
		"hb": "LONGLINK_HB", "rate-burst": "LONGLINK_RATE_BURST",
	} {
		if got := EnvName(flagName); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	env := envOf(map[string]string{
		"LONGLINK_HB":        "30s",
		"LONGLINK_MAX_CONNS": "10",
		"LONGLINK_BIZ":       "2=echo; 3=http://127.0.0.1:9003/rpc,workers=2 ;",
		"LONGLINK_LISTEN":    "", // empty counts as unset
	})
	c, err := Parse([]string{"-hb", "45s"}, env)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Heartbeat != 45*time.Second {
		t.Errorf("Heartbeat = %v, want the flag's 45s over the environment's 30s", c.Heartbeat)
	}
	if c.MaxConns != 10 {
		t.Errorf("MaxConns = %d, want the environment's 10 over the default", c.MaxConns)
	}
	if c.Listen != DefaultListen {
		t.Errorf("Listen = %q, want the default (empty variable ignored)", c.Listen)
	}
	wantEnvBiz := []upstream.Business{{ID: 2, Echo: true}, {ID: 3, URL: "http://127.0.0.1:9003/rpc", Workers: 2}}
	if !reflect.DeepEqual(c.Biz, wantEnvBiz) {
		t.Errorf("Biz = %+v, want the environment's %+v", c.Biz, wantEnvBiz)
	}

	c, err = Parse([]string{"-biz", "4=echo", "-biz", "5=echo"}, env)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if want := []upstream.Business{{ID: 4, Echo: true}, {ID: 5, Echo: true}}; !reflect.DeepEqual(c.Biz, want) {
		t.Errorf("Biz = %+v, want the flags' %+v replacing the environment's", c.Biz, want)
	}

	c, err = Parse([]string{"-listen="}, nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Listen != "" {
		t.Errorf("-listen= left Listen = %q, want TCP disabled", c.Listen)
	}
}

func TestRateBurstDerived(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want int
	}{
		{[]string{"-rate", "2.5"}, nil, 5},
		{[]string{"-rate", "0.2"}, nil, 1},
		{[]string{"-rate", "0"}, nil, 1},
		{[]string{"-rate", "10", "-rate-burst", "3"}, nil, 3},
		{[]string{"-rate-burst", "0"}, nil, 200},
		{nil, map[string]string{"LONGLINK_RATE": "50"}, 100},
		{[]string{"-rate", "7"}, map[string]string{"LONGLINK_RATE_BURST": "9"}, 9},
	}
	for _, tt := range tests {
		c, err := Parse(tt.args, envOf(tt.env))
		if err != nil {
			t.Fatalf("Parse(%q, %v): %v", tt.args, tt.env, err)
		}
		if c.RateBurst != tt.want {
			t.Errorf("Parse(%q, %v): RateBurst = %d, want %d", tt.args, tt.env, c.RateBurst, tt.want)
		}
	}
}

func TestBadEnv(t *testing.T) {
	tests := map[string]string{
		"LONGLINK_HB":        "sixty",
		"LONGLINK_MAX_CONNS": "many",
		"LONGLINK_RATE":      "fast",
		"LONGLINK_BIZ":       "2=echo;two=echo",
	}
	for name, value := range tests {
		_, err := Parse(nil, envOf(map[string]string{name: value}))
		if err == nil {
			t.Errorf("%s=%q accepted", name, value)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error %q does not name the variable", name, value, err)
		}
	}
	// Several bad variables are all reported.
	_, err := Parse(nil, envOf(map[string]string{"LONGLINK_HB": "x", "LONGLINK_LOOPS": "y"}))
	if err == nil || !strings.Contains(err.Error(), "LONGLINK_HB") || !strings.Contains(err.Error(), "LONGLINK_LOOPS") {
		t.Errorf("two bad variables: err = %v, want both named", err)
	}
}

func TestBizForms(t *testing.T) {
	tests := []struct {
		spec string
		want upstream.Business
	}{
		{"1=echo", upstream.Business{ID: 1, Echo: true}},
		{"65535=echo", upstream.Business{ID: 65535, Echo: true}},
		{"2=http://127.0.0.1:9002/rpc", upstream.Business{ID: 2, URL: "http://127.0.0.1:9002/rpc"}},
		{"3=https://biz.example/rpc?v=1,timeout=1500ms", upstream.Business{ID: 3, URL: "https://biz.example/rpc?v=1", Timeout: 1500 * time.Millisecond}},
		{"4=http://b:1/x,workers=8", upstream.Business{ID: 4, URL: "http://b:1/x", Workers: 8}},
		{"5=http://b:1/x,queue=100", upstream.Business{ID: 5, URL: "http://b:1/x", Queue: 100}},
		{"6=http://b:1/x,queue=100,timeout=2s,workers=3", upstream.Business{ID: 6, URL: "http://b:1/x", Timeout: 2 * time.Second, Workers: 3, Queue: 100}},
	}
	for _, tt := range tests {
		c, err := Parse([]string{"-biz", tt.spec}, nil)
		if err != nil {
			t.Errorf("-biz %s: %v", tt.spec, err)
			continue
		}
		if want := []upstream.Business{tt.want}; !reflect.DeepEqual(c.Biz, want) {
			t.Errorf("-biz %s: Biz = %+v, want %+v", tt.spec, c.Biz, want)
		}
		// String writes what Set reads back, as the usage's default does.
		again, err := parseBusiness(formatBusiness(c.Biz[0]))
		if err != nil || again != tt.want {
			t.Errorf("-biz %s: formatted %q reads back as %+v, %v", tt.spec, formatBusiness(c.Biz[0]), again, err)
		}
	}
}

func TestBizErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-biz", ""}, "want ID=echo"},
		{[]string{"-biz", "echo"}, "want ID=echo"},
		{[]string{"-biz", "0=echo"}, "want 1..65535"},
		{[]string{"-biz", "65536=echo"}, "want 1..65535"},
		{[]string{"-biz", "-1=echo"}, "want 1..65535"},
		{[]string{"-biz", "x=echo"}, "want 1..65535"},
		{[]string{"-biz", "2="}, "missing echo or URL"},
		{[]string{"-biz", "2=,workers=1"}, "missing echo or URL"},
		{[]string{"-biz", "2=ftp://b/x"}, `scheme "ftp"`},
		{[]string{"-biz", "2=b:9002/rpc"}, `scheme "b"`},
		{[]string{"-biz", "2=http:///rpc"}, "no host"},
		{[]string{"-biz", "2=http://b/x%zz"}, "parsing URL"},
		{[]string{"-biz", "2=http://b/x,timeout=0"}, "positive duration"},
		{[]string{"-biz", "2=http://b/x,timeout=-1s"}, "positive duration"},
		{[]string{"-biz", "2=http://b/x,timeout=soon"}, "positive duration"},
		{[]string{"-biz", "2=http://b/x,workers=0"}, "positive integer"},
		{[]string{"-biz", "2=http://b/x,workers=many"}, "positive integer"},
		{[]string{"-biz", "2=http://b/x,queue=-5"}, "positive integer"},
		{[]string{"-biz", "2=http://b/x,color=red"}, `unknown option "color"`},
		{[]string{"-biz", "2=http://b/x,workers"}, "want key=value"},
		{[]string{"-biz", "2=http://b/x,timeout=1s,timeout=2s"}, "timeout given twice"},
		{[]string{"-biz", "2=http://b/x,queue=1,queue=1"}, "queue given twice"},
		{[]string{"-biz", "2=echo", "-biz", "2=http://b/x"}, "-biz 2: id given twice"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.args, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q): err = %v, want it to contain %q", tt.args, err, tt.want)
		}
	}
	if _, err := Parse(nil, envOf(map[string]string{"LONGLINK_BIZ": " ; ;"})); err == nil || !strings.Contains(err.Error(), "no business") {
		t.Errorf("LONGLINK_BIZ of separators only: err = %v, want no business", err)
	}
}

func TestLoopbackRule(t *testing.T) {
	exposed := []string{"0.0.0.0:7000", ":7000", "[::]:7000", "10.1.2.3:7000", "[2001:db8::1]:7000", "example.com:7000", "127.0.0.1.nip.io:7000"}
	loopback := []string{"127.0.0.1:0", "127.9.9.9:7000", "[::1]:7000", "localhost:7000", "LOCALHOST:7000"}
	listeners := []string{"listen", "ws-listen", "tls-listen", "api-listen"}
	tls := []string{"-tls-cert=c.pem", "-tls-key=k.pem"}

	secrets := []struct {
		name string
		args []string
		ok   bool // may listen beyond loopback
	}{
		{"development defaults", nil, false},
		{"development API key", []string{"-jwt-secret=" + realSecret}, false},
		{"development JWT secret", []string{"-api-key=" + realKey}, false},
		{"short JWT secret", []string{"-api-key=" + realKey, "-jwt-secret=" + realSecret[1:]}, false},
		{"short API key", []string{"-api-key=" + realKey[1:], "-jwt-secret=" + realSecret}, false},
		{"real secrets", []string{"-api-key=" + realKey, "-jwt-secret=" + realSecret}, true},
	}
	for _, s := range secrets {
		t.Run(s.name, func(t *testing.T) {
			for _, l := range listeners {
				for _, addr := range exposed {
					args := append(append([]string{"-" + l + "=" + addr}, tls...), s.args...)
					_, err := Parse(args, nil)
					switch {
					case s.ok && err != nil:
						t.Errorf("-%s=%s with %s: %v", l, addr, s.name, err)
					case !s.ok && err == nil:
						t.Errorf("-%s=%s with %s: accepted", l, addr, s.name)
					case !s.ok && (!strings.Contains(err.Error(), "-"+l+" ") || !strings.Contains(err.Error(), "loopback")):
						t.Errorf("-%s=%s with %s: error %q does not name the listener and the rule", l, addr, s.name, err)
					}
				}
				for _, addr := range loopback {
					args := append(append([]string{"-" + l + "=" + addr}, tls...), s.args...)
					if _, err := Parse(args, nil); err != nil {
						t.Errorf("-%s=%s with %s: %v", l, addr, s.name, err)
					}
				}
			}
		})
	}

	c := Default()
	c.APIKey, c.JWTSecret = realKey, realSecret
	if c.DevSecrets() {
		t.Error("DevSecrets() = true with real secrets")
	}
	c.JWTSecret = DevJWTSecret
	if !c.DevSecrets() {
		t.Error("DevSecrets() = false with the development JWT secret")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no listener", func(c *Config) { c.Listen, c.WSListen = "", "" }, "no client listener"},
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" }, "-listen \"127.0.0.1\": want host:port"},
		{"named port", func(c *Config) { c.WSListen = "127.0.0.1:http" }, `port "http"`},
		{"port out of range", func(c *Config) { c.APIListen = "127.0.0.1:65536" }, `port "65536"`},
		{"tls without cert", func(c *Config) { c.TLSListen = "127.0.0.1:7443"; c.TLSKey = "k.pem" }, "-tls-listen needs -tls-cert and -tls-key"},
		{"advertise with port", func(c *Config) { c.Advertise = "gw.example.com:7000" }, "-advertise"},
		{"ws origin with a path", func(c *Config) { c.WSOrigins = []string{"https://app.example.com/"} }, `-ws-origins "https://app.example.com/": want scheme://host[:port], without a path`},
		{"ws origin null", func(c *Config) { c.WSOrigins = []string{"null"} }, `-ws-origins "null": want scheme://host[:port]`},
		{"advertise with space", func(c *Config) { c.Advertise = "gw example" }, "-advertise"},
		{"empty node", func(c *Config) { c.Node = "" }, "-node"},
		{"negative frame rate", func(c *Config) { c.FrameRate = -1 }, "-frame-rate -1"},
		{"negative frame burst", func(c *Config) { c.FrameBurst = -1 }, "-frame-burst -1"},
		{"tiny max input", func(c *Config) { c.MaxInput = 100 }, "-max-input 100: want 4096..67108864 bytes"},
		{"zero tls handshake", func(c *Config) { c.TLSHandshake = 0 }, "-tls-handshake-timeout 0s"},
		{"negative unauth cap", func(c *Config) { c.MaxUnauthIP = -1 }, "-max-unauth-per-ip -1"},
		{"negative conns cap", func(c *Config) { c.MaxConnsIP = -2 }, "-max-conns-per-ip -2"},
		{"negative connect rate", func(c *Config) { c.ConnRateIP = -3 }, "-connect-rate-per-ip -3"},
		{"node with space", func(c *Config) { c.Node = "a b" }, "-node"},
		{"long node", func(c *Config) { c.Node = strings.Repeat("n", MaxNodeLen+1) }, "-node"},
		{"empty api key", func(c *Config) { c.APIKey = "" }, "-api-key is empty"},
		{"empty jwt secret", func(c *Config) { c.JWTSecret = "" }, "-jwt-secret is empty"},
		{"biz id 0", func(c *Config) { c.Biz = []upstream.Business{{ID: 0, Echo: true}} }, "-biz 0: id 0"},
		{"biz twice", func(c *Config) { c.Biz = append(c.Biz, upstream.Business{ID: 1, URL: "http://b/x"}) }, "-biz 1: id given twice"},
		{"biz neither", func(c *Config) { c.Biz = []upstream.Business{{ID: 2}} }, "neither echo nor a URL"},
		{"biz both", func(c *Config) { c.Biz = []upstream.Business{{ID: 2, Echo: true, URL: "http://b/x"}} }, "both echo and URL"},
		{"biz negative", func(c *Config) { c.Biz = []upstream.Business{{ID: 2, URL: "http://b/x", Workers: -1}} }, "must not be negative"},
		{"echo with workers", func(c *Config) { c.Biz = []upstream.Business{{ID: 7, Echo: true, Workers: 2, Queue: 10}} }, "-biz 7: echo is answered on the reading goroutine"},
		{"negative loops", func(c *Config) { c.Loops = -1 }, "-loops"},
		{"negative down workers", func(c *Config) { c.DownWorkers = -1 }, "-down-workers"},
		{"zero down queue", func(c *Config) { c.DownQueue = 0 }, "-down-queue"},
		{"huge down queue", func(c *Config) { c.DownQueue = MaxDownQueue + 1 }, "-down-queue"},
		{"zero heartbeat", func(c *Config) { c.Heartbeat = 0 }, "-hb 0s: want a positive duration"},
		{"negative heartbeat", func(c *Config) { c.Heartbeat = -time.Second }, "-hb -1s"},
		{"zero login timeout", func(c *Config) { c.LoginTimeout = 0 }, "-login-timeout"},
		{"zero recover ttl", func(c *Config) { c.RecoverTTL = 0 }, "-recover-ttl"},
		{"zero drain timeout", func(c *Config) { c.DrainTimeout = 0 }, "-drain-timeout"},
		{"negative idle timeout", func(c *Config) { c.IdleTimeout = -time.Second }, "-idle-timeout"},
		{"idle timeout within heartbeat", func(c *Config) { c.IdleTimeout = c.Heartbeat }, "longer than -hb"},
		{"negative hb-min", func(c *Config) { c.HeartbeatMin = -time.Second }, "-hb-min -1s"},
		{"sub-second hb-min", func(c *Config) { c.HeartbeatMin = 500 * time.Millisecond }, "-hb-min 500ms: at least 1s"},
		{"hb-min over hb", func(c *Config) { c.HeartbeatMin = 2 * c.Heartbeat }, "not be longer than -hb"},
		{"hb-max under hb", func(c *Config) { c.HeartbeatMax = c.Heartbeat / 2 }, "not be shorter than -hb"},
		{"huge hb-max", func(c *Config) { c.HeartbeatMax = 2 * time.Hour }, "-hb-max 2h0m0s: at most 1h0m0s"},
		{"zero max conns", func(c *Config) { c.MaxConns = 0 }, "-max-conns"},
		{"small max frame", func(c *Config) { c.MaxFrame = MinMaxFrame - 1 }, "-max-frame 1023"},
		{"huge max frame", func(c *Config) { c.MaxFrame = MaxMaxFrame + 1; c.MaxPending = 1 << 30 }, "-max-frame"},
		{"max pending under max frame", func(c *Config) { c.MaxPending = c.MaxFrame - 1 }, "-max-pending"},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "-rate -1"},
		{"NaN rate", func(c *Config) { c.Rate = math.NaN() }, "-rate NaN"},
		{"infinite rate", func(c *Config) { c.Rate = math.Inf(1) }, "-rate +Inf"},
		{"zero burst", func(c *Config) { c.RateBurst = 0 }, "-rate-burst 0"},
		{"zero recover size", func(c *Config) { c.RecoverSize = 0 }, "-recover-size 0"},
		{"huge recover size", func(c *Config) { c.RecoverSize = MaxRecoverSize + 1 }, "-recover-size"},
		{"zero read buffer", func(c *Config) { c.ReadBuffer = 0 }, "-read-buffer 0"},
		{"small sndbuf", func(c *Config) { c.SendBuffer = MinSendBuffer - 1 }, "-sndbuf 4095"},
		{"huge sndbuf", func(c *Config) { c.SendBuffer = MaxSendBuffer + 1 }, "-sndbuf 67108865"},
		{"negative sndbuf", func(c *Config) { c.SendBuffer = -1 }, "-sndbuf -1"},
		{"events url scheme", func(c *Config) { c.EventsURL = "ftp://b/events" }, "-events-url"},
		{"events url relative", func(c *Config) { c.EventsURL = "/events" }, "-events-url"},
		{"redis without port", func(c *Config) { c.Redis = "redis.local" }, "-redis"},
		{"redis seed without port", func(c *Config) { c.Redis = "127.0.0.1:7000,127.0.0.1" }, "-redis \"127.0.0.1:7000,127.0.0.1\": 127.0.0.1"},
		{"redis master without sentinels", func(c *Config) { c.RedisMaster = "mymaster" }, "-redis-master"},
		{"link listen on every interface", func(c *Config) { c.Redis = "127.0.0.1:6379"; c.LinkListen = "0.0.0.0:7090" }, "-link-listen \"0.0.0.0:7090\": want the address other nodes dial"},
		{"link listen without a host", func(c *Config) { c.Redis = "127.0.0.1:6379"; c.LinkListen = ":7090" }, "-link-listen \":7090\": want the address"},
		{"link listen without a port", func(c *Config) { c.Redis = "127.0.0.1:6379"; c.LinkListen = "10.0.0.5" }, "-link-listen \"10.0.0.5\": want host:port"},
		{"link listen beyond loopback with dev secrets", func(c *Config) { c.Redis = "127.0.0.1:6379"; c.LinkListen = "10.0.0.5:7090" }, "-link-listen \"10.0.0.5:7090\": refusing to listen beyond loopback"},
		{"redis prefix with a brace", func(c *Config) { c.RedisPrefix = "a{b" }, "-redis-prefix"},
		{"empty redis prefix", func(c *Config) { c.RedisPrefix = "" }, "-redis-prefix"},
		{"redis prefix with space", func(c *Config) { c.RedisPrefix = "a b" }, "-redis-prefix"},
		{"long redis prefix", func(c *Config) { c.RedisPrefix = strings.Repeat("p", MaxRedisPrefix+1) }, "-redis-prefix"},
		{"short node ttl", func(c *Config) { c.NodeTTL = MinNodeTTL - time.Millisecond }, "-node-ttl 999ms"},
		{"long node ttl", func(c *Config) { c.NodeTTL = MaxNodeTTL + time.Second }, "-node-ttl 31s"},
		{"zero api read timeout", func(c *Config) { c.APIReadTimeout = 0 }, "-api-read-timeout 0s: want a positive duration"},
		{"negative api write timeout", func(c *Config) { c.APIWriteTimeout = -time.Second }, "-api-write-timeout -1s: want a positive duration"},
		{"zero api idle timeout", func(c *Config) { c.APIIdleTimeout = 0 }, "-api-idle-timeout 0s: want a positive duration"},
		{"zero api max conns", func(c *Config) { c.APIMaxConns = 0 }, "-api-max-conns 0: want at least 1"},
		{"negative api max conns", func(c *Config) { c.APIMaxConns = -1 }, "-api-max-conns -1"},
		{"pprof mode", func(c *Config) { c.Pprof = "on" }, `-pprof "on": want off, key or open`},
		{"empty pprof mode", func(c *Config) { c.Pprof = "" }, `-pprof ""`},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "-log-level"},
		{"profile", func(c *Config) { c.Profile = "heap" }, "-profile \"heap\""},
		{"profile without path", func(c *Config) { c.Profile = "cpu"; c.ProfilePath = "" }, "-profile-path is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate: err = %v, want it to contain %q", err, tt.want)
			}
		})
	}

	c := Default()
	for _, size := range []int{MinSendBuffer, MaxSendBuffer} {
		c.SendBuffer = size
		if err := c.Validate(); err != nil {
			t.Errorf("-sndbuf %d: %v", size, err)
		}
	}
	c = Default()
	c.Rate, c.RateBurst = 0, 0 // unlimited: the burst is unused
	c.IdleTimeout = c.Heartbeat + time.Second
	if err := c.Validate(); err != nil {
		t.Errorf("unlimited rate, idle just above heartbeat: %v", err)
	}
	if got := c.EffectiveHeartbeatMin(); got != DefaultHeartbeatMin {
		t.Errorf("EffectiveHeartbeatMin() = %v, want %v", got, DefaultHeartbeatMin)
	}
	c.Heartbeat = 10 * time.Second
	if got := c.EffectiveHeartbeatMin(); got != c.Heartbeat {
		t.Errorf("EffectiveHeartbeatMin() with -hb 10s = %v, want -hb", got)
	}

	c = Default()
	c.Heartbeat, c.MaxConns = 0, 0
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "-hb") || !strings.Contains(err.Error(), "-max-conns") {
		t.Errorf("two problems: err = %v, want both reported", err)
	}
}

func TestAPIReadHeaderTimeout(t *testing.T) {
	for read, want := range map[time.Duration]time.Duration{
		DefaultAPIReadTimeout: MaxAPIHeaderTimeout,
		MaxAPIHeaderTimeout:   MaxAPIHeaderTimeout,
		2 * time.Second:       2 * time.Second,
		time.Millisecond:      time.Millisecond,
	} {
		c := Default()
		c.APIReadTimeout = read
		if got := c.APIReadHeaderTimeout(); got != want {
			t.Errorf("-api-read-timeout %v: APIReadHeaderTimeout() = %v, want %v", read, got, want)
		}
	}
}

func TestPprofAndMetricsKeyForms(t *testing.T) {
	for _, mode := range []string{PprofOff, PprofKey, PprofOpen} {
		c, err := Parse([]string{"-pprof", mode}, nil)
		if err != nil || c.Pprof != mode {
			t.Errorf("-pprof %s: Pprof = %q, err %v", mode, c.Pprof, err)
		}
	}
	// A bool flag: bare on the command line, any strconv.ParseBool form in
	// the environment.
	c, err := Parse([]string{"-metrics-key"}, nil)
	if err != nil || !c.MetricsKey {
		t.Errorf("-metrics-key: MetricsKey = %v, err %v", c.MetricsKey, err)
	}
	c, err = Parse([]string{"-metrics-key=false"}, envOf(map[string]string{"LONGLINK_METRICS_KEY": "1"}))
	if err != nil || c.MetricsKey {
		t.Errorf("-metrics-key=false over LONGLINK_METRICS_KEY=1: MetricsKey = %v, err %v", c.MetricsKey, err)
	}
	if _, err := Parse(nil, envOf(map[string]string{"LONGLINK_METRICS_KEY": "maybe"})); err == nil || !strings.Contains(err.Error(), "LONGLINK_METRICS_KEY") {
		t.Errorf("LONGLINK_METRICS_KEY=maybe: err = %v, want it refused by name", err)
	}
	if _, err := Parse([]string{"-pprof", "yes"}, nil); err == nil || !strings.Contains(err.Error(), `-pprof "yes"`) {
		t.Errorf("-pprof yes: err = %v", err)
	}
}

func TestBadDurations(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-hb", "sixty"}, "invalid value"},
		{[]string{"-hb", "60"}, "invalid value \"60\" for flag -hb"},
		{[]string{"-hb", "0s"}, "-hb 0s"},
		{[]string{"-hb", "500ms"}, "-hb 500ms: at least 1s"},
		{[]string{"-login-timeout", "-1s"}, "-login-timeout -1s"},
		{[]string{"-recover-ttl", "0"}, "-recover-ttl 0s"},
		{[]string{"-drain-timeout", "1y"}, "invalid value"},
		{[]string{"-idle-timeout", "30s"}, "longer than -hb"},
		{[]string{"-api-read-timeout", "0s"}, "-api-read-timeout 0s"},
		{[]string{"-api-write-timeout", "60"}, "invalid value \"60\" for flag -api-write-timeout"},
		{[]string{"-api-idle-timeout", "-2m"}, "-api-idle-timeout -2m0s"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.args, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q): err = %v, want it to contain %q", tt.args, err, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}} {
		if _, err := Parse(args, nil); err != flag.ErrHelp {
			t.Errorf("Parse(%q): err = %v, want flag.ErrHelp", args, err)
		}
	}
	if _, err := Parse([]string{"-no-such-flag"}, nil); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("unknown flag: err = %v", err)
	}
	if _, err := Parse([]string{"-loops", "2", "extra"}, nil); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("positional argument: err = %v", err)
	}
}

func TestUsage(t *testing.T) {
	c := Default()
	fs, _ := newFlagSet(&c)
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	fs.Usage()
	out := buf.String()
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(out, "  -"+f.Name+" ") {
			t.Errorf("usage does not list -%s", f.Name)
		}
		if !strings.Contains(out, "("+EnvName(f.Name)) {
			t.Errorf("usage does not name %s", EnvName(f.Name))
		}
	})
	for _, want := range []string{
		`(LONGLINK_LISTEN; default "127.0.0.1:7000")`,
		`(LONGLINK_BIZ; default "1=echo")`,
		`(LONGLINK_HB; default 1m0s)`,
		`(LONGLINK_MAX_FRAME; default 65536)`,
		`(LONGLINK_RATE; default 100)`,
		`(LONGLINK_API_KEY; default "` + DevAPIKey + `")`,
		"(LONGLINK_TLS_LISTEN)\n",
		"(LONGLINK_READ_BUFFER; default 1024)",
		`(LONGLINK_PPROF; default "off")`,
		"(LONGLINK_API_WRITE_TIMEOUT; default 1m0s)",
		"(LONGLINK_API_MAX_CONNS; default 1024)",
		"-pprof mode\n",
		"-max-pending bytes\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("usage lacks %q:\n%s", want, out)
		}
	}
}

func TestParseDoesNotShareDefaults(t *testing.T) {
	a, err := Parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Biz[0].ID = 9
	b, err := Parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.Biz[0].ID != DefaultBizID {
		t.Errorf("changing one Config's Biz changed another's: %+v", b.Biz)
	}
}

func TestValidateJoinsWithPrefix(t *testing.T) {
	c := Default()
	c.LogLevel = "x"
	err := c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "config: ") {
		t.Fatalf("err = %v, want a config: prefix", err)
	}
	if errors.Unwrap(err) == nil {
		t.Error("Validate's error wraps nothing")
	}
}
