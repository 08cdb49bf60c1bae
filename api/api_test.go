package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/longlink/longlink/internal/gatewaytest"
	"github.com/longlink/longlink/metrics"
	"github.com/longlink/longlink/route"
)

const testKey = "s3cret-key"

// call is one Gateway call as fakeGateway recorded it.
type call struct {
	Method  string
	Devices []string
	Group   string
	Device  string
	Reason  string
	App     string
	TTL     time.Duration
	Groups  []string
	Msg     Message
}

// fakeGateway records calls and answers from its fields. Groups are real
// sets, so that member counts follow Join and Leave.
type fakeGateway struct {
	mu        sync.Mutex
	calls     []call
	groups    map[string]map[string]bool
	err       error // returned by every method that can fail
	panicWith any   // every method panics with it when set
	ready     atomic.Bool

	pushResult PushResult
	delivered  int
	device     DeviceInfo
	kicked     bool
	endpoints  []Endpoint
	nodes      []Node
	snapshot   metrics.Snapshot
}

func (g *fakeGateway) record(c call) error {
	if g.panicWith != nil {
		panic(g.panicWith)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, c)
	return g.err
}

// onlyCall returns the only call recorded since the last onlyCall, and
// fails unless there was exactly one.
func (g *fakeGateway) onlyCall(t *testing.T) call {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.calls) != 1 {
		t.Fatalf("gateway calls = %+v, want exactly one", g.calls)
	}
	c := g.calls[0]
	g.calls = nil
	return c
}

func (g *fakeGateway) callCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls)
}

func (g *fakeGateway) Push(_ context.Context, devices []string, msg Message) (PushResult, error) {
	return g.pushResult, g.record(call{Method: "Push", Devices: devices, Msg: msg})
}

func (g *fakeGateway) PushGroup(_ context.Context, group string, msg Message) (int, error) {
	return g.delivered, g.record(call{Method: "PushGroup", Group: group, Msg: msg})
}

func (g *fakeGateway) Broadcast(_ context.Context, msg Message) (int, error) {
	return g.delivered, g.record(call{Method: "Broadcast", Msg: msg})
}

func (g *fakeGateway) Join(_ context.Context, group string, devices []string) error {
	if err := g.record(call{Method: "Join", Group: group, Devices: devices}); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.groups[group] == nil {
		g.groups[group] = make(map[string]bool)
	}
	for _, d := range devices {
		g.groups[group][d] = true
	}
	return nil
}

func (g *fakeGateway) Leave(_ context.Context, group string, devices []string) error {
	if err := g.record(call{Method: "Leave", Group: group, Devices: devices}); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range devices {
		delete(g.groups[group], d)
	}
	return nil
}

// GroupSize is not recorded: members calls make it after Join or Leave.
func (g *fakeGateway) GroupSize(_ context.Context, group string) (int, error) {
	if g.panicWith != nil {
		panic(g.panicWith)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.groups[group]), g.err
}

func (g *fakeGateway) Device(_ context.Context, device string) (DeviceInfo, error) {
	return g.device, g.record(call{Method: "Device", Device: device})
}

func (g *fakeGateway) Kick(_ context.Context, device, reason string) (bool, error) {
	return g.kicked, g.record(call{Method: "Kick", Device: device, Reason: reason})
}

func (g *fakeGateway) Token(device, app string, ttl time.Duration, groups []string) (string, error) {
	return "tok-" + device, g.record(call{Method: "Token", Device: device, App: app, TTL: ttl, Groups: groups})
}

// Endpoints is not recorded: tokens calls make it after Token.
func (g *fakeGateway) Endpoints(context.Context) ([]Endpoint, error) {
	if g.panicWith != nil {
		panic(g.panicWith)
	}
	return g.endpoints, g.err
}

func (g *fakeGateway) Nodes(context.Context) ([]Node, error) {
	return g.nodes, g.record(call{Method: "Nodes"})
}

func (g *fakeGateway) Stats() metrics.Snapshot {
	if g.panicWith != nil {
		panic(g.panicWith)
	}
	return g.snapshot
}

func (g *fakeGateway) Ready() bool { return g.ready.Load() }

var _ Gateway = (*fakeGateway)(nil)

type testServer struct {
	*httptest.Server
	gw  *fakeGateway
	log *gatewaytest.LogBuffer
}

func newTestServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	gw := &fakeGateway{groups: make(map[string]map[string]bool)}
	gw.ready.Store(true)
	logs := &gatewaytest.LogBuffer{}
	if opts.APIKey == "" {
		opts.APIKey = testKey
	}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(New(gw, opts))
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, gw: gw, log: logs}
}

// response is an answer with its body decoded as a JSON object.
type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

// do sends a request with the test API key.
func (ts *testServer) do(t *testing.T, method, path, body string) response {
	t.Helper()
	return ts.doAuth(t, method, path, body, "Bearer "+testKey)
}

// doAuth sends a request with the given Authorization header ("" for none).
func (ts *testServer) doAuth(t *testing.T, method, path, body, auth string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	res := response{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := sonic.ConfigStd.Unmarshal(raw, &res.Body); err != nil {
			t.Fatalf("%s %s: answer is not a JSON object: %v: %s", method, path, err, raw)
		}
	}
	return res
}

// want fails unless the answer has the status and is a JSON object.
func (r response) want(t *testing.T, status int) response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %s", r.Status, status, r.Raw)
	}
	if r.Body == nil {
		t.Fatalf("answer is not a JSON object: Content-Type %q, body %q", r.Header.Get("Content-Type"), r.Raw)
	}
	return r
}

// wantError fails unless the answer is status with {"error": "...substr..."}.
func (r response) wantError(t *testing.T, status int, substr string) {
	t.Helper()
	r.want(t, status)
	msg, ok := r.Body["error"].(string)
	if !ok || msg == "" {
		t.Fatalf("error body = %s, want {\"error\":\"...\"}", r.Raw)
	}
	if !strings.Contains(msg, substr) {
		t.Fatalf("error = %q, want it to mention %q", msg, substr)
	}
}

// field returns r.Body[key] and fails unless it exists with type T.
func field[T any](t *testing.T, r response, key string) T {
	t.Helper()
	v, ok := r.Body[key]
	if !ok {
		t.Fatalf("answer lacks %q: %s", key, r.Raw)
	}
	tv, ok := v.(T)
	if !ok {
		t.Fatalf("%q = %#v (%T), want a %T: %s", key, v, v, *new(T), r.Raw)
	}
	return tv
}

func TestPush(t *testing.T) {
	ts := newTestServer(t, Options{})
	ts.gw.pushResult = PushResult{Delivered: 1, Offline: []string{"d2"}}
	r := ts.do(t, "POST", "/v1/push", `{"devices":["d1","d2"],"biz":7,"data":"héllo","id":"m1","ack":true,"extra":{"ignored":1}}`).want(t, 200)
	if got := field[float64](t, r, "delivered"); got != 1 {
		t.Errorf("delivered = %v, want 1", got)
	}
	if got := field[[]any](t, r, "offline"); !reflect.DeepEqual(got, []any{"d2"}) {
		t.Errorf("offline = %v, want [d2]", got)
	}
	if _, ok := r.Body["unrouted"]; ok {
		t.Errorf("unrouted present though empty: %s", r.Raw)
	}
	c := ts.gw.onlyCall(t)
	want := call{Method: "Push", Devices: []string{"d1", "d2"}, Msg: Message{Biz: 7, Data: []byte("héllo"), ID: "m1", Ack: true}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("call = %+v, want %+v", c, want)
	}

	// Nobody offline is [], not null; unrouted devices are reported.
	ts.gw.pushResult = PushResult{Delivered: 2, Unrouted: []string{"d3"}}
	r = ts.do(t, "POST", "/v1/push", `{"devices":["d1"]}`).want(t, 200)
	if got := field[[]any](t, r, "offline"); len(got) != 0 {
		t.Errorf("offline = %v, want []", got)
	}
	if got := field[[]any](t, r, "unrouted"); !reflect.DeepEqual(got, []any{"d3"}) {
		t.Errorf("unrouted = %v, want [d3]", got)
	}
	// No data is an empty body; biz defaults to 0.
	if c := ts.gw.onlyCall(t); len(c.Msg.Data) != 0 || c.Msg.Biz != 0 || c.Msg.Ack || c.Msg.ID != "" {
		t.Errorf("message = %+v, want the zero message", c.Msg)
	}
}

func TestPushDataBase64(t *testing.T) {
	ts := newTestServer(t, Options{})
	payload := []byte{0xfb, 0xff, 0x00, 0x01, 0xfe}
	for _, enc := range []string{
		"+/8AAf4=", // standard
		"+/8AAf4",  // standard, unpadded
		"-_8AAf4=", // URL-safe
		"-_8AAf4",  // URL-safe, unpadded
	} {
		ts.do(t, "POST", "/v1/push", `{"devices":["d"],"data_base64":"`+enc+`"}`).want(t, 200)
		if got := ts.gw.onlyCall(t).Msg.Data; !bytes.Equal(got, payload) {
			t.Errorf("data_base64 %q decoded to %x, want %x", enc, got, payload)
		}
	}
}

func TestPushGroupAndBroadcast(t *testing.T) {
	ts := newTestServer(t, Options{})
	ts.gw.delivered = 42
	r := ts.do(t, "POST", "/v1/groups/room%2F1/push", `{"biz":2,"data":"hi"}`).want(t, 200)
	if got := field[float64](t, r, "delivered"); got != 42 {
		t.Errorf("delivered = %v, want 42", got)
	}
	want := call{Method: "PushGroup", Group: "room/1", Msg: Message{Biz: 2, Data: []byte("hi")}}
	if c := ts.gw.onlyCall(t); !reflect.DeepEqual(c, want) {
		t.Errorf("call = %+v, want %+v", c, want)
	}

	r = ts.do(t, "POST", "/v1/broadcast", `{"biz":65535,"data_base64":"AQI=","ack":true}`).want(t, 200)
	if got := field[float64](t, r, "delivered"); got != 42 {
		t.Errorf("delivered = %v, want 42", got)
	}
	want = call{Method: "Broadcast", Msg: Message{Biz: 65535, Data: []byte{1, 2}, Ack: true}}
	if c := ts.gw.onlyCall(t); !reflect.DeepEqual(c, want) {
		t.Errorf("call = %+v, want %+v", c, want)
	}
}

func TestGroupMembers(t *testing.T) {
	ts := newTestServer(t, Options{})
	check := func(r response, members float64) {
		t.Helper()
		if got := field[string](t, r, "group"); got != "g1" {
			t.Errorf("group = %q, want g1", got)
		}
		if got := field[float64](t, r, "members"); got != members {
			t.Errorf("members = %v, want %v", got, members)
		}
	}
	check(ts.do(t, "PUT", "/v1/groups/g1/members", `{"devices":["a","b","c"]}`).want(t, 200), 3)
	if c := ts.gw.onlyCall(t); c.Method != "Join" || c.Group != "g1" || !slices.Equal(c.Devices, []string{"a", "b", "c"}) {
		t.Errorf("call = %+v", c)
	}
	check(ts.do(t, "DELETE", "/v1/groups/g1/members", `{"devices":["b"]}`).want(t, 200), 2)
	if c := ts.gw.onlyCall(t); c.Method != "Leave" || c.Group != "g1" || !slices.Equal(c.Devices, []string{"b"}) {
		t.Errorf("call = %+v", c)
	}
	check(ts.do(t, "GET", "/v1/groups/g1", "").want(t, 200), 2)
}

func TestDevice(t *testing.T) {
	ts := newTestServer(t, Options{})
	ts.gw.device = DeviceInfo{Online: true, Node: "n1", Conn: "17"}
	r := ts.do(t, "GET", "/v1/devices/d1", "").want(t, 200)
	if !field[bool](t, r, "online") || field[string](t, r, "node") != "n1" || field[string](t, r, "conn") != "17" {
		t.Errorf("answer = %s", r.Raw)
	}
	if c := ts.gw.onlyCall(t); c.Method != "Device" || c.Device != "d1" {
		t.Errorf("call = %+v", c)
	}

	// Offline: no node or conn even if the gateway left some behind.
	ts.gw.device = DeviceInfo{Online: false, Node: "stale"}
	r = ts.do(t, "GET", "/v1/devices/d1", "").want(t, 200)
	if field[bool](t, r, "online") || len(r.Body) != 1 {
		t.Errorf("answer = %s, want {\"online\":false}", r.Raw)
	}
}

func TestKick(t *testing.T) {
	ts := newTestServer(t, Options{})
	for _, tc := range []struct {
		name, path, body, reason string
		kicked                   bool
	}{
		{"no reason", "/v1/devices/d1", "", "", true},
		{"query", "/v1/devices/d1?reason=spam", "", "spam", false},
		{"body", "/v1/devices/d1", `{"reason":"abuse"}`, "abuse", true},
		{"body wins", "/v1/devices/d1?reason=spam", `{"reason":"abuse"}`, "abuse", true},
		{"body without reason", "/v1/devices/d1?reason=spam", `{}`, "spam", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.gw.kicked = tc.kicked
			r := ts.do(t, "DELETE", tc.path, tc.body).want(t, 200)
			if got := field[bool](t, r, "kicked"); got != tc.kicked {
				t.Errorf("kicked = %v, want %v", got, tc.kicked)
			}
			if c := ts.gw.onlyCall(t); c.Method != "Kick" || c.Device != "d1" || c.Reason != tc.reason {
				t.Errorf("call = %+v, want Kick d1 reason %q", c, tc.reason)
			}
		})
	}
}

func TestToken(t *testing.T) {
	ts := newTestServer(t, Options{})
	ts.gw.endpoints = []Endpoint{
		{Proto: "tcp", Addr: "10.0.0.2:7000", Node: "n2", Load: 5},
		{Proto: "ws", Addr: "10.0.0.1:7001", Node: "n1", Load: 9},
	}
	before := time.Now().Unix()
	r := ts.do(t, "POST", "/v1/tokens", `{"device":"d1","app":"chat","ttl_seconds":3600,"groups":["g1","g2"]}`).want(t, 200)
	if got := field[string](t, r, "token"); got != "tok-d1" {
		t.Errorf("token = %q", got)
	}
	if exp := int64(field[float64](t, r, "expires_at")); exp < before+3600 || exp > time.Now().Unix()+3600 {
		t.Errorf("expires_at = %d, want about %d", exp, before+3600)
	}
	eps := field[[]any](t, r, "endpoints")
	if len(eps) != 2 {
		t.Fatalf("endpoints = %v", eps)
	}
	first, ok := eps[0].(map[string]any)
	if !ok || first["proto"] != "tcp" || first["addr"] != "10.0.0.2:7000" {
		t.Errorf("endpoints[0] = %v, want the gateway's first (least loaded)", eps[0])
	}
	want := call{Method: "Token", Device: "d1", App: "chat", TTL: time.Hour, Groups: []string{"g1", "g2"}}
	if c := ts.gw.onlyCall(t); !reflect.DeepEqual(c, want) {
		t.Errorf("call = %+v, want %+v", c, want)
	}

	// No endpoints known: [], not null.
	ts.gw.endpoints = nil
	r = ts.do(t, "POST", "/v1/tokens", `{"device":"d1","ttl_seconds":1}`).want(t, 200)
	if got := field[[]any](t, r, "endpoints"); len(got) != 0 {
		t.Errorf("endpoints = %v, want []", got)
	}
}

func TestEndpoints(t *testing.T) {
	ts := newTestServer(t, Options{})
	r := ts.do(t, "GET", "/v1/endpoints", "").want(t, 200)
	if got := field[[]any](t, r, "endpoints"); len(got) != 0 {
		t.Errorf("endpoints = %v, want []", got)
	}
	ts.gw.endpoints = []Endpoint{{Proto: "tcp", Addr: "a:1", Load: 1}, {Proto: "tls", Addr: "b:2", Load: 2}}
	r = ts.do(t, "GET", "/v1/endpoints", "").want(t, 200)
	var addrs []any
	for _, e := range field[[]any](t, r, "endpoints") {
		addrs = append(addrs, e.(map[string]any)["addr"])
	}
	if !reflect.DeepEqual(addrs, []any{"a:1", "b:2"}) {
		t.Errorf("endpoint addrs = %v, want the gateway's order", addrs)
	}
}

// TestNodes: GET /v1/nodes lists the gateway's nodes in its order, each
// with its endpoints ([] for none), and asks for the key.
func TestNodes(t *testing.T) {
	ts := newTestServer(t, Options{})
	r := ts.do(t, "GET", "/v1/nodes", "").want(t, 200)
	if got := field[[]any](t, r, "nodes"); len(got) != 0 {
		t.Errorf("nodes = %v, want []", got)
	}
	if c := ts.gw.onlyCall(t); c.Method != "Nodes" {
		t.Errorf("call = %+v, want Nodes", c)
	}
	ts.gw.nodes = []Node{
		{Node: "a", Connections: 3, LoggedIn: 2, MaxConns: 10, Load: 0.3, Beating: true, Self: true, Endpoints: []Endpoint{{Proto: "tcp", Addr: "a:1"}}},
		{Node: "b", Draining: true},
	}
	r = ts.do(t, "GET", "/v1/nodes", "").want(t, 200)
	ns := field[[]any](t, r, "nodes")
	if len(ns) != 2 {
		t.Fatalf("nodes = %v", ns)
	}
	a, b := ns[0].(map[string]any), ns[1].(map[string]any)
	if a["node"] != "a" || a["connections"] != 3.0 || a["logged_in"] != 2.0 || a["load"] != 0.3 || a["self"] != true || a["beating"] != true || len(a["endpoints"].([]any)) != 1 {
		t.Errorf("nodes[0] = %v", a)
	}
	if b["node"] != "b" || b["draining"] != true || b["endpoints"] == nil {
		t.Errorf("nodes[1] = %v, want draining and endpoints []", b)
	}
	ts.doAuth(t, "GET", "/v1/nodes", "", "").want(t, 401)
}

func TestStats(t *testing.T) {
	ts := newTestServer(t, Options{})
	r := ts.do(t, "GET", "/v1/stats", "").want(t, 200)
	// An idle node: lists and maps are empty, not null.
	field[map[string]any](t, r, "kicks")
	field[[]any](t, r, "businesses")
	field[[]any](t, r, "queues")

	ts.gw.snapshot = metrics.Snapshot{
		Node: "n1", Connections: 3, RSS: 1 << 20, CPUSeconds: 1.5,
		Kicks:      map[string]uint64{"IDLE_TIMEOUT": 2},
		Push:       metrics.PushStats{Requests: 9},
		Businesses: []metrics.BizStats{{ID: 1, Target: "echo", Breaker: "closed"}},
	}
	r = ts.do(t, "GET", "/v1/stats", "").want(t, 200)
	if field[string](t, r, "node") != "n1" || field[float64](t, r, "connections") != 3 ||
		field[float64](t, r, "rss") != 1<<20 || field[float64](t, r, "cpu_seconds") != 1.5 {
		t.Errorf("stats = %s", r.Raw)
	}
	if got := field[map[string]any](t, r, "kicks")["IDLE_TIMEOUT"]; got != 2.0 {
		t.Errorf("kicks.IDLE_TIMEOUT = %v, want 2", got)
	}
	if got := field[map[string]any](t, r, "push")["requests"]; got != 9.0 {
		t.Errorf("push.requests = %v, want 9", got)
	}
	biz := field[[]any](t, r, "businesses")
	if len(biz) != 1 {
		t.Fatalf("businesses = %v", biz)
	}
	b := biz[0].(map[string]any)
	if b["target"] != "echo" || b["breaker"] != "closed" {
		t.Errorf("businesses[0] = %v", b)
	}
	if _, ok := b["results"].(map[string]any); !ok {
		t.Errorf("businesses[0].results = %#v, want {}", b["results"])
	}
	if ts.gw.snapshot.Businesses[0].Results != nil {
		t.Errorf("the handler wrote into the gateway's snapshot")
	}
}

func TestOperations(t *testing.T) {
	metricsHandler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "longlink_connections 3\n")
	})
	ts := newTestServer(t, Options{Metrics: metricsHandler, Pprof: PprofOpen})

	// None of these needs the API key.
	r := ts.doAuth(t, "GET", "/healthz", "", "").want(t, 200)
	if got := field[string](t, r, "status"); got != "ok" {
		t.Errorf("healthz status = %q", got)
	}
	r = ts.doAuth(t, "GET", "/readyz", "", "").want(t, 200)
	if got := field[string](t, r, "status"); got != "ok" {
		t.Errorf("readyz status = %q", got)
	}
	ts.gw.ready.Store(false)
	r = ts.doAuth(t, "GET", "/readyz", "", "").want(t, 503)
	if got := field[string](t, r, "status"); got != "draining" {
		t.Errorf("readyz status = %q, want draining", got)
	}
	ts.gw.ready.Store(true)
	ts.doAuth(t, "GET", "/readyz", "", "").want(t, 200)

	r = ts.doAuth(t, "GET", "/metrics", "", "")
	if r.Status != 200 || r.Raw != "longlink_connections 3\n" {
		t.Errorf("metrics = %d %q", r.Status, r.Raw)
	}
	r = ts.doAuth(t, "GET", "/debug/pprof/", "", "")
	if r.Status != 200 || !strings.Contains(r.Raw, "goroutine") {
		t.Errorf("pprof index = %d %.200q", r.Status, r.Raw)
	}
	r = ts.doAuth(t, "GET", "/debug/pprof/goroutine?debug=1", "", "")
	if r.Status != 200 || !strings.Contains(r.Raw, "goroutine profile:") {
		t.Errorf("pprof goroutine = %d %.200q", r.Status, r.Raw)
	}

	// Without Options.Metrics, /metrics does not exist.
	newTestServer(t, Options{}).doAuth(t, "GET", "/metrics", "", "").wantError(t, 404, "/metrics")
}

func TestAuth(t *testing.T) {
	ts := newTestServer(t, Options{})
	for _, tc := range []struct {
		name, auth, msg string
	}{
		{"missing", "", "missing API key"},
		{"wrong", "Bearer " + strings.Repeat("x", len(testKey)), "invalid API key"},
		{"prefix of the key", "Bearer " + testKey[:3], "invalid API key"},
		{"key plus more", "Bearer " + testKey + "x", "invalid API key"},
		{"empty", "Bearer ", "invalid API key"},
		{"other scheme", "Basic " + testKey, "Bearer scheme"},
		{"no scheme", testKey, "Bearer scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.doAuth(t, "GET", "/v1/endpoints", "", tc.auth)
			r.wantError(t, 401, tc.msg)
			if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want Bearer", h)
			}
		})
	}
	// The scheme is case-insensitive (RFC 9110).
	ts.doAuth(t, "GET", "/v1/endpoints", "", "bearer "+testKey).want(t, 200)
	// Unknown /v1 paths are behind the key too: no probing without it.
	ts.doAuth(t, "GET", "/v1/nope", "", "").wantError(t, 401, "missing API key")
	if n := ts.gw.callCount(); n != 0 {
		t.Errorf("the gateway was called %d times without a valid key", n)
	}
}

func TestEmptyAPIKeyRefusesEverything(t *testing.T) {
	gw := &fakeGateway{}
	logs := &gatewaytest.LogBuffer{}
	srv := httptest.NewServer(New(gw, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}))
	defer srv.Close()
	if !strings.Contains(logs.String(), "no API key") {
		t.Errorf("no warning about the missing API key; log:\n%s", logs)
	}
	ts := &testServer{Server: srv, gw: gw}
	for _, auth := range []string{"", "Bearer ", "Bearer x"} {
		ts.doAuth(t, "GET", "/v1/endpoints", "", auth).wantError(t, 401, "API key")
	}
}

func TestBadInput(t *testing.T) {
	long := strings.Repeat("a", 129)
	manyDevices := `{"devices":["a","b","c","d"]}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		msg                      string // part of the error message
	}{
		{"empty body", "POST", "/v1/push", "", 400, "empty"},
		{"malformed JSON", "POST", "/v1/push", `{"devices":["a"]`, 400, "malformed JSON"},
		{"trailing garbage", "POST", "/v1/push", `{"devices":["a"]} x`, 400, "malformed JSON"},
		{"not an object", "POST", "/v1/push", `["a"]`, 400, "JSON object"},
		{"devices not a list", "POST", "/v1/push", `{"devices":"a"}`, 400, "devices: expected an array of strings, found string"},
		{"device not a string", "POST", "/v1/push", `{"devices":["a",1]}`, 400, "devices: expected a string, found number"},
		{"biz a string", "POST", "/v1/push", `{"devices":["a"],"biz":"1"}`, 400, "biz: expected an integer, found string"},
		{"biz a fraction", "POST", "/v1/push", `{"devices":["a"],"biz":1.5}`, 400, "biz: expected an integer"},
		{"biz huge", "POST", "/v1/push", `{"devices":["a"],"biz":99999999999999999999}`, 400, "biz: expected an integer"},
		{"biz negative", "POST", "/v1/push", `{"devices":["a"],"biz":-1}`, 400, "biz must be from 0 to 65535"},
		{"biz over 65535", "POST", "/v1/push", `{"devices":["a"],"biz":65536}`, 400, "biz must be from 0 to 65535"},
		{"ack a number", "POST", "/v1/push", `{"devices":["a"],"ack":1}`, 400, "ack: expected true or false"},
		{"data an object", "POST", "/v1/push", `{"devices":["a"],"data":{}}`, 400, "data: expected a string"},
		{"invalid UTF-8", "POST", "/v1/push", "{\"devices\":[\"a\"],\"data\":\"\xff\"}", 400, "not valid UTF-8"},
		{"both data fields", "POST", "/v1/push", `{"devices":["a"],"data":"x","data_base64":"eA=="}`, 400, "not both"},
		{"bad base64", "POST", "/v1/push", `{"devices":["a"],"data_base64":"!!!"}`, 400, "not valid base64"},
		{"mixed base64 alphabets", "POST", "/v1/push", `{"devices":["a"],"data_base64":"+/8A-_8A"}`, 400, "not valid base64"},
		{"incomplete padding", "POST", "/v1/push", `{"devices":["a"],"data_base64":"AQ="}`, 400, "not valid base64"},
		{"no devices", "POST", "/v1/push", `{"data":"x"}`, 400, "at least one device"},
		{"empty devices", "POST", "/v1/push", `{"devices":[]}`, 400, "at least one device"},
		{"too many devices", "POST", "/v1/push", manyDevices, 400, "over the limit of 3"},
		{"empty device", "POST", "/v1/push", `{"devices":["a",""]}`, 400, "devices[1] is empty"},
		{"null device", "POST", "/v1/push", `{"devices":[null]}`, 400, "devices[0] is empty"},
		{"long device", "POST", "/v1/push", `{"devices":["` + long + `"]}`, 400, "devices[0] is 129 bytes"},
		{"control in device", "POST", "/v1/push", `{"devices":["a\nb"]}`, 400, "control character"},
		{"long id", "POST", "/v1/push", `{"devices":["a"],"id":"` + long + `"}`, 400, "id is 129 bytes"},
		{"body too large", "POST", "/v1/push", `{"devices":["a"],"data":"` + strings.Repeat("x", 5000) + `"}`, 413, "over the limit of 4096 bytes"},

		{"group push bad biz", "POST", "/v1/groups/g/push", `{"biz":70000}`, 400, "biz must be"},
		{"group push long group", "POST", "/v1/groups/" + long + "/push", `{}`, 400, "group is 129 bytes"},
		{"group push control in group", "POST", "/v1/groups/a%07b/push", `{}`, 400, "group contains the control character U+0007"},
		{"group push bad UTF-8 group", "POST", "/v1/groups/a%ffb/push", `{}`, 400, "group is not valid UTF-8"},
		{"broadcast malformed", "POST", "/v1/broadcast", `{`, 400, "malformed JSON"},
		{"broadcast empty body", "POST", "/v1/broadcast", ``, 400, "empty"},

		{"join no devices", "PUT", "/v1/groups/g/members", `{"devices":[]}`, 400, "at least one device"},
		{"join too many", "PUT", "/v1/groups/g/members", manyDevices, 400, "over the limit of 3"},
		{"join long group", "PUT", "/v1/groups/" + long + "/members", `{"devices":["a"]}`, 400, "group is 129 bytes"},
		{"leave empty device", "DELETE", "/v1/groups/g/members", `{"devices":[""]}`, 400, "devices[0] is empty"},
		{"leave malformed", "DELETE", "/v1/groups/g/members", `{"devices":`, 400, "malformed JSON"},
		{"size long group", "GET", "/v1/groups/" + long, "", 400, "group is 129 bytes"},

		{"device long", "GET", "/v1/devices/" + long, "", 400, "device is 129 bytes"},
		{"device control", "GET", "/v1/devices/a%0Ab", "", 400, "control character"},
		{"kick long device", "DELETE", "/v1/devices/" + long, "", 400, "device is 129 bytes"},
		{"kick malformed", "DELETE", "/v1/devices/d", `{"reason":`, 400, "malformed JSON"},
		{"kick reason type", "DELETE", "/v1/devices/d", `{"reason":1}`, 400, "reason: expected a string"},
		{"kick reason control", "DELETE", "/v1/devices/d?reason=a%00b", "", 400, "reason contains"},

		{"token no device", "POST", "/v1/tokens", `{"ttl_seconds":60}`, 400, "device is empty"},
		{"token long device", "POST", "/v1/tokens", `{"device":"` + long + `","ttl_seconds":60}`, 400, "device is 129 bytes"},
		{"token control in app", "POST", "/v1/tokens", `{"device":"d","app":"a\u0001","ttl_seconds":60}`, 400, "app contains"},
		{"token no ttl", "POST", "/v1/tokens", `{"device":"d"}`, 400, "ttl_seconds is required"},
		{"token zero ttl", "POST", "/v1/tokens", `{"device":"d","ttl_seconds":0}`, 400, "ttl_seconds must be from 1 to 3600"},
		{"token negative ttl", "POST", "/v1/tokens", `{"device":"d","ttl_seconds":-5}`, 400, "ttl_seconds must be"},
		{"token ttl over max", "POST", "/v1/tokens", `{"device":"d","ttl_seconds":3601}`, 400, "ttl_seconds must be from 1 to 3600, got 3601"},
		{"token ttl a string", "POST", "/v1/tokens", `{"device":"d","ttl_seconds":"60"}`, 400, "ttl_seconds: expected an integer"},
		{"token empty group", "POST", "/v1/tokens", `{"device":"d","ttl_seconds":60,"groups":["g",""]}`, 400, "groups[1] is empty"},
		{"token too many groups", "POST", "/v1/tokens", `{"device":"d","ttl_seconds":60,"groups":[` + strings.TrimSuffix(strings.Repeat(`"g",`, 65), ",") + `]}`, 400, "over the limit of 64"},

		{"unknown path", "GET", "/v1/nope", "", 404, "no such endpoint: /v1/nope"},
		{"unknown root path", "GET", "/nope", "", 404, "no such endpoint"},
		{"wrong method", "GET", "/v1/push", "", 405, "allowed: POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, Options{MaxBody: 4096, MaxDevices: 3, MaxTTL: time.Hour})
			ts.do(t, tc.method, tc.path, tc.body).wantError(t, tc.status, tc.msg)
			if n := ts.gw.callCount(); n != 0 {
				t.Errorf("the gateway was called %d times for a bad request", n)
			}
		})
	}
}

func TestMethodNotAllowedListsAllowed(t *testing.T) {
	ts := newTestServer(t, Options{})
	r := ts.do(t, "POST", "/v1/groups/g/members", `{"devices":["a"]}`)
	r.wantError(t, 405, "not allowed")
	if got := r.Header.Get("Allow"); got != "DELETE, PUT" && got != "PUT, DELETE" {
		t.Errorf("Allow = %q, want DELETE and PUT", got)
	}
	r = ts.doAuth(t, "POST", "/healthz", "", "")
	r.wantError(t, 405, "not allowed")
	if got := r.Header.Get("Allow"); !strings.Contains(got, "GET") {
		t.Errorf("Allow = %q, want GET", got)
	}
}

func TestDefaultLimits(t *testing.T) {
	ts := newTestServer(t, Options{})
	devices := make([]string, DefaultMaxDevices+1)
	for i := range devices {
		devices[i] = fmt.Sprint(i)
	}
	body, err := sonic.ConfigStd.Marshal(map[string]any{"devices": devices})
	if err != nil {
		t.Fatal(err)
	}
	ts.do(t, "POST", "/v1/push", string(body)).wantError(t, 400, "over the limit of 10000")
	body, err = sonic.ConfigStd.Marshal(map[string]any{"devices": devices[:DefaultMaxDevices]})
	if err != nil {
		t.Fatal(err)
	}
	ts.do(t, "POST", "/v1/push", string(body)).want(t, 200)
	ts.gw.onlyCall(t)

	big := `{"devices":["a"],"data":"` + strings.Repeat("x", DefaultMaxBody) + `"}`
	ts.do(t, "POST", "/v1/push", big).wantError(t, 413, "over the limit of 1048576 bytes")

	ts.do(t, "POST", "/v1/tokens", `{"device":"d","ttl_seconds":2592000}`).want(t, 200)
	ts.do(t, "POST", "/v1/tokens", `{"device":"d","ttl_seconds":2592001}`).wantError(t, 400, "ttl_seconds must be from 1 to 2592000")
}

func TestGatewayErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		msg    string
	}{
		{"route unavailable", fmt.Errorf("redis: %w", route.ErrUnavailable), 503, "route: unavailable"},
		{"peers unavailable", fmt.Errorf("%w: delivered here only", ErrPeersUnavailable), 503, "api: other nodes unreachable: delivered here only"},
		{"deadline", fmt.Errorf("lookup: %w", context.DeadlineExceeded), 503, "deadline exceeded"},
		{"canceled", fmt.Errorf("lookup: %w", context.Canceled), 499, "canceled"},
		{"invalid", fmt.Errorf("body over the maximum frame: %w", ErrInvalid), 400, "body over the maximum frame"},
		{"other", errors.New("disk on fire"), 500, "disk on fire"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, Options{})
			ts.gw.err = tc.err
			for _, req := range []struct{ method, path, body string }{
				{"POST", "/v1/push", `{"devices":["a"]}`},
				{"POST", "/v1/groups/g/push", `{}`},
				{"POST", "/v1/broadcast", `{}`},
				{"PUT", "/v1/groups/g/members", `{"devices":["a"]}`},
				{"DELETE", "/v1/groups/g/members", `{"devices":["a"]}`},
				{"GET", "/v1/groups/g", ""},
				{"GET", "/v1/devices/d", ""},
				{"DELETE", "/v1/devices/d", ""},
				{"POST", "/v1/tokens", `{"device":"d","ttl_seconds":60}`},
				{"GET", "/v1/endpoints", ""},
			} {
				ts.do(t, req.method, req.path, req.body).wantError(t, tc.status, tc.msg)
			}
			if tc.status >= 500 && !strings.Contains(ts.log.String(), tc.msg) {
				t.Errorf("a %d was not logged; log:\n%s", tc.status, ts.log)
			}
		})
	}
}

func TestPanicIsA500AndServingGoesOn(t *testing.T) {
	ts := newTestServer(t, Options{})
	ts.gw.panicWith = "boom"
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v1/push", `{"devices":["a"]}`},
		{"GET", "/v1/stats", ""},
		{"GET", "/v1/groups/g", ""},
		{"GET", "/v1/endpoints", ""},
	} {
		ts.do(t, req.method, req.path, req.body).wantError(t, 500, "internal error")
	}
	if log := ts.log.String(); !strings.Contains(log, "panicked") || !strings.Contains(log, "boom") {
		t.Errorf("the panic was not logged; log:\n%s", log)
	}
	ts.gw.panicWith = nil
	ts.do(t, "GET", "/v1/groups/g", "").want(t, 200)
	ts.doAuth(t, "GET", "/healthz", "", "").want(t, 200)
}

func TestPanicAfterWritingAbortsTheAnswer(t *testing.T) {
	ts := newTestServer(t, Options{Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "partial")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the API's writer: %v", err)
		}
		panic("late boom")
	})})
	resp, err := ts.Client().Get(ts.URL + "/metrics")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a panic after the answer started was passed off as a complete answer")
	}
	if !strings.Contains(ts.log.String(), "late boom") {
		t.Errorf("the panic was not logged; log:\n%s", ts.log)
	}
	ts.doAuth(t, "GET", "/healthz", "", "").want(t, 200)
}
