package websocket_test

import (
	"bytes"
	"strings"
	"testing"

	ws "github.com/longlink/longlink/websocket"
)

func TestParseOrigin(t *testing.T) {
	valid := map[string]string{
		"https://app.example.com":       "https://app.example.com",
		"HTTPS://App.Example.COM":       "https://app.example.com",
		"http://localhost:8080":         "http://localhost:8080",
		"http://127.0.0.1:3000":         "http://127.0.0.1:3000",
		"http://[::1]:8080":             "http://[::1]:8080",
		"https://xn--bcher-kva.example": "https://xn--bcher-kva.example",
		"chrome-extension://abcdef":     "chrome-extension://abcdef",
	}
	for in, want := range valid {
		if got, err := ws.ParseOrigin(in); err != nil || got != want {
			t.Errorf("ParseOrigin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	invalid := map[string]string{
		"":                          "want scheme://host[:port]",
		"null":                      "want scheme://host[:port]",
		"app.example.com":           "want scheme://host[:port]",
		"//app.example.com":         "want scheme://host[:port]",
		"https:app.example.com":     "want scheme://host[:port]",
		"https://":                  "want scheme://host[:port]",
		"https://app.example.com/":  "without a path",
		"https://app.example.com/x": "without a path",
		"https://app.example.com?":  "without a path",
		"https://app.example.com#f": "without a path",
		"https://u:p@example.com":   "without user info",
		"https://example.com:":      "port",
		"https://example.com:0":     "port",
		"https://example.com:65536": "port",
		"https://example.com:http":  "parsing the origin",
		"https://:443":              "with a host",
		" https://example.com":      "ASCII",
		"https://bücher.example":    "ASCII",
		"https://a.com,https://b":   "without a path", // one origin per entry
	}
	for in, want := range invalid {
		got, err := ws.ParseOrigin(in)
		if err == nil {
			t.Errorf("ParseOrigin(%q) = %q, want an error mentioning %q", in, got, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseOrigin(%q): %v, want it to mention %q", in, err, want)
		}
	}
}

func TestParseOrigins(t *testing.T) {
	o, err := ws.ParseOrigins([]string{"https://A.example", "http://b.example:8080"})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.List(); len(got) != 2 || got[0] != "https://a.example" || got[1] != "http://b.example:8080" {
		t.Errorf("List() = %q", got)
	}
	if _, err := ws.ParseOrigins([]string{"https://a.example", "https://b.example/"}); err == nil || !strings.Contains(err.Error(), `"https://b.example/"`) {
		t.Errorf("bad entry: err = %v, want it to name the entry", err)
	}
	if o, err := ws.ParseOrigins(nil); err != nil || len(o.List()) != 0 {
		t.Errorf("empty list: %v %v", o.List(), err)
	}
}

func TestOriginsAllow(t *testing.T) {
	var any ws.Origins
	for _, origin := range []string{"", "https://evil.example", "null"} {
		if !any.Allow([]byte(origin)) {
			t.Errorf("zero Origins refused %q", origin)
		}
	}
	o, err := ws.ParseOrigins([]string{"https://app.example.com", "http://localhost:8080", "https://k.example"})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"":                            true, // no Origin header: not a browser
		"https://app.example.com":     true,
		"HTTPS://APP.EXAMPLE.COM":     true,
		"http://localhost:8080":       true,
		"https://app.example.co":      false,
		"https://app.example.com.":    false,
		"https://app.example.com/":    false,
		"http://app.example.com":      false, // another scheme is another origin
		"https://app.example.com:443": false, // exact match: browsers omit the default port
		"http://localhost:8081":       false,
		"null":                        false,
		"https://evil.example":        false,
		"https://\u212a.example":      false, // a Kelvin sign folds to 'k' in Unicode, not in an origin
		"https://K.example":           true,
	} {
		if got := o.Allow([]byte(origin)); got != want {
			t.Errorf("Allow(%q) = %v, want %v", origin, got, want)
		}
	}
	origin := []byte("https://App.Example.com")
	if allocs := testing.AllocsPerRun(100, func() { o.Allow(origin) }); allocs != 0 {
		t.Errorf("Allow allocates %v times", allocs)
	}
}

func TestParseHandshakeOrigin(t *testing.T) {
	req := request("GET / HTTP/1.1", append(validHeaders(), "Origin:  https://app.example.com ")...)
	h, n, err := ws.ParseHandshake(req)
	if err != nil || n != len(req) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if string(h.Origin) != "https://app.example.com" {
		t.Errorf("Origin = %q", h.Origin)
	}
	if i := bytes.Index(req, h.Origin); i < 0 || &req[i] != &h.Origin[0] {
		t.Errorf("Origin does not alias the request")
	}
	checkPrefixes(t, req)

	for name, headers := range map[string][]string{
		"absent": validHeaders(),
		"empty":  append(validHeaders(), "Origin: "),
	} {
		if h, _, err := ws.ParseHandshake(request("GET / HTTP/1.1", headers...)); err != nil || h.Origin != nil {
			t.Errorf("%s: Origin = %q, err %v; want nil", name, h.Origin, err)
		}
	}

	_, n, err = ws.ParseHandshake(request("GET / HTTP/1.1", append(validHeaders(), "Origin: https://app.example.com", "origin: https://evil.example")...))
	if e := wsError(t, err); n != 0 || e.Status != 400 || e.Reason != "more than one Origin header" {
		t.Errorf("two Origin headers: n=%d err=%+v", n, e)
	}
}

func TestAppendRejectOrigin(t *testing.T) {
	resp, body := readResponse(t, ws.AppendReject(nil, ws.ErrOrigin))
	if resp.StatusCode != 403 || resp.Status != "403 Forbidden" || !resp.Close || string(body) != "origin not allowed" {
		t.Errorf("got %q close=%v body %q", resp.Status, resp.Close, body)
	}
}
