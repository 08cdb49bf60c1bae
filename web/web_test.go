package web_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/web"
)

func get(t *testing.T, h http.Handler, method, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStaticFiles(t *testing.T) {
	for _, name := range []string{"longlink.js", "demo.html", "demo.js", "demo.css"} {
		b, err := fs.ReadFile(web.Static, name)
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %d bytes, %v", name, len(b), err)
		}
	}
	js, _ := fs.ReadFile(web.Static, "longlink.js")
	for _, want := range []string{"export class LonglinkClient", "export function encodeFrame", "export function decodeFrame", `binaryType = "arraybuffer"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("longlink.js lacks %q", want)
		}
	}
}

func TestHandler(t *testing.T) {
	h := web.Handler()
	cases := []struct {
		method, path string
		code         int
		ctype, has   string
	}{
		{"GET", "/", 200, "text/html", `<script type="module" src="demo.js">`},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/demo.html", 200, "text/html", "Get a token"},
		{"GET", "/longlink.js", 200, "text/javascript", "export class LonglinkClient"},
		{"GET", "/demo.js", 200, "text/javascript", `from "./longlink.js"`},
		{"GET", "/demo.css", 200, "text/css", ":root"},
		{"GET", "/missing.js", 404, "", ""},
		{"GET", "/static/longlink.js", 404, "", ""},
		{"GET", "/../web.go", 404, "", ""},
		{"POST", "/", 405, "", ""},
	}
	for _, c := range cases {
		r := get(t, h, c.method, c.path)
		b := body(t, r)
		if r.StatusCode != c.code {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, r.StatusCode, c.code)
			continue
		}
		if c.ctype != "" && !strings.HasPrefix(r.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("%s %s: Content-Type %q, want %s", c.method, c.path, r.Header.Get("Content-Type"), c.ctype)
		}
		if !strings.Contains(b, c.has) {
			t.Errorf("%s %s: body lacks %q", c.method, c.path, c.has)
		}
		if c.code == 200 {
			for _, k := range []string{"Cache-Control", "X-Content-Type-Options", "Content-Security-Policy"} {
				if r.Header.Get(k) == "" {
					t.Errorf("%s %s: no %s header", c.method, c.path, k)
				}
			}
		}
	}
}

// TestMountedOnAPI checks the API serves the demo at /demo/ without a key,
// redirects /demo, and still guards /v1.
func TestMountedOnAPI(t *testing.T) {
	h := api.New(nil, api.Options{APIKey: "test-api-key-0123456789"}) // /demo never reaches the Gateway

	r := get(t, h, "GET", "/demo")
	if r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != "/demo/" {
		t.Errorf("GET /demo: %d Location %q, want 301 to /demo/", r.StatusCode, r.Header.Get("Location"))
	}
	r = get(t, h, "GET", "/demo/")
	if b := body(t, r); r.StatusCode != 200 || !strings.Contains(b, "Longlink") {
		t.Errorf("GET /demo/ without a key: %d %.80q", r.StatusCode, b)
	}
	r = get(t, h, "GET", "/demo/longlink.js")
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("GET /demo/longlink.js: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if r = get(t, h, "GET", "/demo/nope.js"); r.StatusCode != 404 {
		t.Errorf("GET /demo/nope.js: %d, want 404", r.StatusCode)
	}
	if r = get(t, h, "GET", "/v1/stats"); r.StatusCode != 401 {
		t.Errorf("GET /v1/stats without a key: %d, want 401", r.StatusCode)
	}
	// A path that climbs out of /demo/ is cleaned by the mux into a
	// redirect; it never serves /v1 without the key.
	r = get(t, h, "GET", "/demo/../v1/stats")
	if r.StatusCode == 200 {
		t.Errorf("GET /demo/../v1/stats: 200 without a key")
	}
}

// TestLonglinkJS runs the unit tests of longlink.js (testdata/longlink_unit.mjs:
// a fake WebSocket and a virtual clock) under Node, when Node is installed.
// The e2e tests drive the same client against the real gateway.
func TestLonglinkJS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	out, err := exec.Command(node, "testdata/longlink_unit.mjs").CombinedOutput()
	if err != nil {
		t.Fatalf("longlink.js unit tests: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
