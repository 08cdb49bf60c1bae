package api

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bytedance/sonic"

	"github.com/longlink/longlink/auth"
)

// escapeDevice is how a caller puts a device id in a path: percent-encode
// it as one segment. "." and ".." are encoded entirely, which
// url.PathEscape (like JavaScript's encodeURIComponent) would leave as dot
// segments, so that the request reaches the handler and is refused there.
func escapeDevice(id string) string {
	if id == "." || id == ".." {
		return strings.Repeat("%2E", len(id))
	}
	return url.PathEscape(id)
}

// TestDeviceIDRule checks that every device id the API takes follows
// auth.ValidDevice, the rule of a LOGIN sub: C1 control characters and
// invalid UTF-8 are refused everywhere, naming the id.
func TestDeviceIDRule(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, body string
		msg                      string
	}{
		{"push C1", "POST", "/v1/push", `{"devices":["ok","a\u0085"]}`, `devices[1] "a\u0085" contains the control character U+0085`},
		{"push DEL", "POST", "/v1/push", `{"devices":["a\u007f"]}`, `devices[0] "a\x7f" contains the control character U+007F`},
		{"join C1", "PUT", "/v1/groups/g/members", `{"devices":["\u0085"]}`, `devices[0] "\u0085" contains the control character U+0085`},
		{"leave C1", "DELETE", "/v1/groups/g/members", `{"devices":["\u009f"]}`, `devices[0] "\u009f" contains the control character U+009F`},
		{"lookup C1", "GET", "/v1/devices/a%C2%85", "", `device "a\u0085" contains the control character U+0085`},
		{"kick C1", "DELETE", "/v1/devices/a%C2%85", "", `device "a\u0085" contains the control character U+0085`},
		{"lookup not UTF-8", "GET", "/v1/devices/a%FFb", "", `device "a\xffb" is not valid UTF-8`},
		{"kick NUL", "DELETE", "/v1/devices/a%00", "", `device "a\x00" contains the control character U+0000`},
		{"push ..", "POST", "/v1/push", `{"devices":[".."]}`, `devices[0] ".." is not allowed: ".", ".." and "/" cannot be named in a URL path`},
		{"push /", "POST", "/v1/push", `{"devices":["a","/"]}`, `devices[1] "/" is not allowed`},
		{"lookup %2E", "GET", "/v1/devices/%2E", "", `device "." is not allowed`},
		{"token .", "POST", "/v1/tokens", `{"device":".","ttl_seconds":60}`, `device "." is not allowed`},
		{"token C1", "POST", "/v1/tokens", `{"device":"a\u0085","ttl_seconds":60}`, `device "a\u0085" contains the control character U+0085`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, Options{})
			ts.do(t, tc.method, tc.path, tc.body).wantError(t, 400, tc.msg)
			if n := ts.gw.callCount(); n != 0 {
				t.Errorf("the gateway was called %d times for a bad device id", n)
			}
		})
	}
}

// TestDeviceIDsInPaths checks that valid ids with characters that mean
// something in a URL reach the gateway unchanged from a percent-encoded
// path, and from JSON bodies.
func TestDeviceIDsInPaths(t *testing.T) {
	ts := newTestServer(t, Options{})
	for _, id := range []string{"a/b ü%", "a%2Fb", "...", "./", "a/../b", "//", "a/", "?x=1#f", "a+b;c,d", "设备 1", "\u00a0", strings.Repeat("é", 64)} {
		t.Run(id, func(t *testing.T) {
			path := "/v1/devices/" + escapeDevice(id)
			ts.do(t, "GET", path, "").want(t, 200)
			if c := ts.gw.onlyCall(t); c.Method != "Device" || c.Device != id {
				t.Errorf("GET %s reached the gateway as %+v, want device %q", path, c, id)
			}
			ts.do(t, "DELETE", path, "").want(t, 200)
			if c := ts.gw.onlyCall(t); c.Method != "Kick" || c.Device != id {
				t.Errorf("DELETE %s reached the gateway as %+v, want device %q", path, c, id)
			}
			body, err := sonic.ConfigStd.Marshal(map[string]any{"devices": []string{id}})
			if err != nil {
				t.Fatal(err)
			}
			ts.do(t, "POST", "/v1/push", string(body)).want(t, 200)
			if c := ts.gw.onlyCall(t); !slices.Equal(c.Devices, []string{id}) {
				t.Errorf("push %s reached the gateway as %+v", body, c)
			}
		})
	}
}

// FuzzDeviceID checks that the API and login agree on device ids: a
// percent-encoded path or a push body naming s is refused with 400
// exactly when auth.ValidDevice refuses s, and otherwise reaches the
// gateway as s.
func FuzzDeviceID(f *testing.F) {
	for _, s := range []string{"d", "a/b ü%", "a\u0085", "a\x85", "..", ".", "%", "a\x00", "\u2028", strings.Repeat("d", 129)} {
		f.Add(s)
	}
	gw := &fakeGateway{groups: make(map[string]map[string]bool)}
	h := New(gw, Options{APIKey: testKey})
	serve := func(t *testing.T, method, target, body string) (int, string) {
		req := httptest.NewRequest(method, "http://api"+target, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" || s == "/" {
			return // both are invalid, and no path reaches the device endpoint with them
		}
		valid := auth.ValidDevice(s) == nil
		code, answer := serve(t, "GET", "/v1/devices/"+escapeDevice(s), "")
		gw.mu.Lock()
		calls := gw.calls
		gw.calls = nil
		gw.mu.Unlock()
		switch {
		case valid && (code != http.StatusOK || len(calls) != 1 || calls[0].Device != s):
			t.Fatalf("valid id %q: %d %s, calls %+v", s, code, answer, calls)
		case !valid && (code != http.StatusBadRequest || len(calls) != 0 || !strings.Contains(answer, "device ")):
			t.Fatalf("invalid id %q: %d %s, calls %+v", s, code, answer, calls)
		}
		if !utf8.ValidString(s) {
			return // JSON cannot carry it; the body would be refused as not UTF-8
		}
		body, err := sonic.ConfigStd.Marshal(map[string]any{"devices": []string{s}})
		if err != nil {
			t.Fatal(err)
		}
		code, answer = serve(t, "POST", "/v1/push", string(body))
		gw.mu.Lock()
		calls = gw.calls
		gw.calls = nil
		gw.mu.Unlock()
		switch {
		case valid && (code != http.StatusOK || len(calls) != 1 || !slices.Equal(calls[0].Devices, []string{s})):
			t.Fatalf("valid id %q: push %d %s, calls %+v", s, code, answer, calls)
		case !valid && (code != http.StatusBadRequest || len(calls) != 0 || !strings.Contains(answer, "devices[0] ")):
			t.Fatalf("invalid id %q: push %d %s, calls %+v", s, code, answer, calls)
		}
	})
}
