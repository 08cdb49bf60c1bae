package api

import (
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
)

// pprofPaths are answered by the profiling endpoints when they are served.
var pprofPaths = []string{
	"/debug/pprof/",
	"/debug/pprof/cmdline",
	"/debug/pprof/goroutine?debug=1",
	"/debug/pprof/symbol",
}

func TestPprofOffIsNotFound(t *testing.T) {
	for _, opts := range []Options{{}, {Pprof: PprofOff}} {
		ts := newTestServer(t, opts)
		for _, p := range append(pprofPaths, "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1", "/debug/pprof/heap") {
			for _, auth := range []string{"", "Bearer " + testKey} {
				ts.doAuth(t, "GET", p, "", auth).wantError(t, 404, "no such endpoint")
			}
		}
		ts.doAuth(t, "POST", "/debug/pprof/symbol", "", "").wantError(t, 404, "no such endpoint")
	}
}

func TestPprofUnknownModeIsOff(t *testing.T) {
	ts := newTestServer(t, Options{Pprof: "on"})
	ts.doAuth(t, "GET", "/debug/pprof/", "", "Bearer "+testKey).wantError(t, 404, "no such endpoint")
	if !strings.Contains(ts.log.String(), "unknown pprof mode") {
		t.Errorf("no warning about the unknown mode; log:\n%s", ts.log)
	}
}

func TestPprofKey(t *testing.T) {
	ts := newTestServer(t, Options{Pprof: PprofKey})
	for _, p := range append(pprofPaths,
		"/debug/pprof",                   // redirected to the index once the key is checked
		"/debug/pprof/no-such-profile",   // no probing without the key
		"/debug/%70prof/cmdline",         // an escaped spelling of the path
		"/debug/pprof/profile?seconds=1", // refused before a second is spent
	) {
		r := ts.doAuth(t, "GET", p, "", "")
		r.wantError(t, 401, "missing API key")
		if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
			t.Errorf("GET %s: WWW-Authenticate = %q", p, h)
		}
		ts.doAuth(t, "GET", p, "", "Bearer wrong-key").wantError(t, 401, "invalid API key")
	}
	ts.doAuth(t, "POST", "/debug/pprof/symbol", "", "").wantError(t, 401, "missing API key")
	for _, p := range pprofPaths {
		if r := ts.do(t, "GET", p, ""); r.Status != 200 {
			t.Errorf("GET %s with the key: %d %.200q", p, r.Status, r.Raw)
		}
	}
	// The rest of the operations endpoints are as open as before.
	ts.doAuth(t, "GET", "/healthz", "", "").want(t, 200)
	ts.doAuth(t, "GET", "/readyz", "", "").want(t, 200)
}

func TestPprofOpen(t *testing.T) {
	ts := newTestServer(t, Options{Pprof: PprofOpen})
	for _, p := range pprofPaths {
		if r := ts.doAuth(t, "GET", p, "", ""); r.Status != 200 {
			t.Errorf("GET %s without a key: %d %.200q", p, r.Status, r.Raw)
		}
	}
	r := ts.doAuth(t, "GET", "/debug/pprof/goroutine?debug=1", "", "")
	if !strings.Contains(r.Raw, "goroutine profile:") {
		t.Errorf("goroutine profile = %.200q", r.Raw)
	}
	// /v1 still needs the key.
	ts.doAuth(t, "GET", "/v1/stats", "", "").wantError(t, 401, "missing API key")
}

func TestMetricsKey(t *testing.T) {
	metricsHandler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "longlink_connections 3\n")
	})
	ts := newTestServer(t, Options{Metrics: metricsHandler, MetricsKey: true})
	ts.doAuth(t, "GET", "/metrics", "", "").wantError(t, 401, "missing API key")
	ts.doAuth(t, "GET", "/metrics", "", "Bearer wrong").wantError(t, 401, "invalid API key")
	if r := ts.do(t, "GET", "/metrics", ""); r.Status != 200 || r.Raw != "longlink_connections 3\n" {
		t.Errorf("metrics with the key = %d %q", r.Status, r.Raw)
	}
	ts.doAuth(t, "GET", "/healthz", "", "").want(t, 200)
	ts.doAuth(t, "GET", "/readyz", "", "").want(t, 200)
	ts.doAuth(t, "GET", "/demo/", "", "")

	// Without MetricsKey, no key is needed.
	open := newTestServer(t, Options{Metrics: metricsHandler})
	if r := open.doAuth(t, "GET", "/metrics", "", ""); r.Status != 200 {
		t.Errorf("metrics without MetricsKey = %d %q", r.Status, r.Raw)
	}
}

func TestCmdlineIsRedacted(t *testing.T) {
	saved := os.Args
	t.Cleanup(func() { os.Args = saved })
	os.Args = []string{"longlink", "-api-key", "key-one", "--jwt-secret=secret-two",
		"-redis-password=pass-three", "-node", "n1", "--api-key", "key-four"}

	for _, mode := range []PprofMode{PprofKey, PprofOpen} {
		ts := newTestServer(t, Options{Pprof: mode})
		r := ts.do(t, "GET", "/debug/pprof/cmdline", "")
		if r.Status != 200 {
			t.Fatalf("%s: cmdline = %d %q", mode, r.Status, r.Raw)
		}
		for _, secret := range []string{"key-one", "secret-two", "pass-three", "key-four"} {
			if strings.Contains(r.Raw, secret) {
				t.Errorf("%s: cmdline %q shows %q", mode, r.Raw, secret)
			}
		}
		want := "longlink\x00-api-key\x00[redacted]\x00--jwt-secret=[redacted]\x00-redis-password=[redacted]\x00-node\x00n1\x00--api-key\x00[redacted]"
		if r.Raw != want {
			t.Errorf("%s: cmdline = %q, want %q", mode, r.Raw, want)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("%s: Content-Type %q", mode, ct)
		}
	}
}

func TestRedactArgs(t *testing.T) {
	const r = redacted
	tests := []struct {
		name      string
		args      []string
		want      []string
		forbidden []string // must not survive anywhere
	}{
		{"-f v", []string{"gw", "-api-key", "k1"}, []string{"gw", "-api-key", r}, []string{"k1"}},
		{"-f=v", []string{"gw", "-api-key=k1"}, []string{"gw", "-api-key=" + r}, []string{"k1"}},
		{"--f v", []string{"gw", "--api-key", "k1"}, []string{"gw", "--api-key", r}, []string{"k1"}},
		{"--f=v", []string{"gw", "--api-key=k1"}, []string{"gw", "--api-key=" + r}, []string{"k1"}},
		{"jwt-secret every form",
			[]string{"gw", "-jwt-secret", "s1", "-jwt-secret=s2", "--jwt-secret", "s3", "--jwt-secret=s4"},
			[]string{"gw", "-jwt-secret", r, "-jwt-secret=" + r, "--jwt-secret", r, "--jwt-secret=" + r},
			[]string{"s1", "s2", "s3", "s4"}},
		{"redis-password every form",
			[]string{"gw", "-redis-password", "p1", "-redis-password=p2", "--redis-password", "p3", "--redis-password=p4"},
			[]string{"gw", "-redis-password", r, "-redis-password=" + r, "--redis-password", r, "--redis-password=" + r},
			[]string{"p1", "p2", "p3", "p4"}},
		{"value with = and spaces", []string{"gw", "-api-key=a=b c"}, []string{"gw", "-api-key=" + r}, []string{"a=b c", "b c"}},
		{"empty value", []string{"gw", "-api-key="}, []string{"gw", "-api-key=" + r}, nil},
		{"value that looks like a flag", []string{"gw", "-api-key", "-node", "x"}, []string{"gw", "-api-key", r, "x"}, nil},
		{"value that is a secret flag", []string{"gw", "-api-key", "-jwt-secret=s1"}, []string{"gw", "-api-key", r}, []string{"s1", "jwt"}},
		{"secret flag last", []string{"gw", "-node", "n", "-api-key"}, []string{"gw", "-node", "n", "-api-key"}, nil},
		{"after --", []string{"gw", "--", "-api-key", "k1"}, []string{"gw", "--", "-api-key", r}, []string{"k1"}},
		{"other flags untouched",
			[]string{"gw", "-node", "api-key", "-api-key-file", "f", "-api-keys=x", "-api-listen", "127.0.0.1:0", "api-key", "v"},
			[]string{"gw", "-node", "api-key", "-api-key-file", "f", "-api-keys=x", "-api-listen", "127.0.0.1:0", "api-key", "v"}, nil},
		{"program name is never a flag", []string{"-api-key", "x"}, []string{"-api-key", "x"}, nil},
		{"no arguments", []string{"gw"}, []string{"gw"}, nil},
		{"nil", nil, []string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]string(nil), tt.args...)
			got := redactArgs(tt.args)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("redactArgs(%q) = %q, want %q", tt.args, got, tt.want)
			}
			if !reflect.DeepEqual(tt.args, in) {
				t.Errorf("redactArgs changed its argument to %q", tt.args)
			}
			joined := strings.Join(got, "\x00")
			for _, f := range tt.forbidden {
				if strings.Contains(joined, f) {
					t.Errorf("redactArgs(%q) = %q still shows %q", tt.args, got, f)
				}
			}
		})
	}
}
