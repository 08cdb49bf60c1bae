package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testSecret = "test-secret"
	testAPIKey = "test-key"
)

// runGenerator runs the generator like `go run ./loadtest args...` and
// returns its exit status, its JSON summary and its stdout.
func runGenerator(t *testing.T, args ...string) (int, *Summary, map[string]any, string) {
	t.Helper()
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "summary.json")
	htmlFile := filepath.Join(dir, "report.html")
	args = append(args, "-quiet", "-json", jsonFile, "-html", htmlFile)
	var stdout, stderr bytes.Buffer
	code := realMain(args, &stdout, &stderr)
	if stderr.Len() > 0 {
		t.Logf("stderr: %s", stderr.String())
	}
	t.Logf("report:\n%s", stdout.String())
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatalf("exit %d, no JSON summary: %v", code, err)
	}
	m := checkSummaryJSON(t, b)
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	h, err := os.ReadFile(htmlFile)
	if err != nil || !bytes.Contains(h, []byte("echarts.init(")) {
		t.Fatalf("no HTML report: %v", err)
	}
	return code, &s, m, stdout.String()
}

// TestScenariosFakeGateway runs every scenario briefly against the fake
// gateway, over each transport (TCP, WebSocket, TLS), and checks the
// accounting end to end.
func TestScenariosFakeGateway(t *testing.T) {
	g := startFakeGateway(t, testSecret, testAPIKey)
	base := []string{"-api", g.http.URL, "-api-key", testAPIKey,
		"-jwt-secret", testSecret, "-conns", "40", "-dial-concurrency", "8", "-duration", "1s", "-drain", "2s"}
	cases := []struct {
		scenario string
		extra    []string
		check    func(t *testing.T, s *Summary)
	}{
		{"hold", []string{"-hb", "200ms"}, func(t *testing.T, s *Summary) {
			if s.Pongs == 0 || s.LatencyKind != "ping" {
				t.Errorf("pongs %d, latency kind %s", s.Pongs, s.LatencyKind)
			}
		}},
		{"request", []string{"-rate", "400", "-size", "100"}, func(t *testing.T, s *Summary) {
			if s.Requests < 300 || s.Responses != s.Requests || s.LatencyMs.Count != s.Requests {
				t.Errorf("requests %d responses %d latency samples %d", s.Requests, s.Responses, s.LatencyMs.Count)
			}
			if s.ThroughputPerSec < 250 {
				t.Errorf("throughput %.0f/s at 400/s", s.ThroughputPerSec)
			}
		}},
		{"push", []string{"-rate", "200", "-batch", "2", "-ack"}, func(t *testing.T, s *Summary) {
			if s.PushCalls < 150 || s.Deliveries != 2*s.PushCalls || s.MissingDeliveries != 0 {
				t.Errorf("push calls %d deliveries %d missing %d", s.PushCalls, s.Deliveries, s.MissingDeliveries)
			}
			if s.LatencyMs.Count != s.Deliveries {
				t.Errorf("latency samples %d, deliveries %d", s.LatencyMs.Count, s.Deliveries)
			}
		}},
		{"group", []string{"-pushes", "20", "-size", "64"}, func(t *testing.T, s *Summary) {
			if s.GroupMembers != 40 || s.Deliveries != 40*20 || s.ExpectedDeliveries != 800 {
				t.Errorf("members %d deliveries %d expected %d", s.GroupMembers, s.Deliveries, s.ExpectedDeliveries)
			}
			if s.DeliveriesPerSec <= 0 || s.Server.PushDeliveries != 800 {
				t.Errorf("deliveries/s %.0f, server deliveries %d", s.DeliveriesPerSec, s.Server.PushDeliveries)
			}
		}},
		{"mixed", []string{"-rate", "200", "-push-rate", "50", "-churn", "10", "-hb", "500ms"}, func(t *testing.T, s *Summary) {
			if s.Reconnects < 5 || s.Requests < 100 || s.PushCalls < 20 {
				t.Errorf("reconnects %d requests %d push calls %d", s.Reconnects, s.Requests, s.PushCalls)
			}
			if s.Resumed != s.Reconnects {
				t.Errorf("%d of %d reconnects resumed", s.Resumed, s.Reconnects)
			}
			if s.Connections != 40 || s.Logins != 40+s.Reconnects {
				t.Errorf("connections %d logins %d reconnects %d", s.Connections, s.Logins, s.Reconnects)
			}
		}},
	}
	for _, transport := range []string{"tcp", "ws", "tls"} {
		for _, c := range cases {
			t.Run(transport+"/"+c.scenario, func(t *testing.T) {
				args := append(append(append([]string{"-scenario", c.scenario}, base...), g.args(transport)...), c.extra...)
				args = append(args, "-device-prefix", "fake-"+transport+"-"+c.scenario+"-")
				code, s, _, out := runGenerator(t, args...)
				if code != 0 || s.Errors != 0 {
					t.Fatalf("exit %d, errors %d: %v %v", code, s.Errors, s.ErrorDetail, s.ErrorSample)
				}
				if s.Scenario != c.scenario || s.Connections != 40 || s.LoginsPerSec <= 0 {
					t.Errorf("scenario %s connections %d logins/s %.0f", s.Scenario, s.Connections, s.LoginsPerSec)
				}
				if s.Transport != transport || (transport == "tls") != (s.TLS != nil) {
					t.Errorf("transport %q, tls %+v", s.Transport, s.TLS)
				}
				if !s.Server.Available || s.Server.Goroutines == 0 || s.Server.RSSBytes == 0 {
					t.Errorf("server stats %+v", s.Server)
				}
				if len(s.Series) == 0 {
					t.Error("no time series")
				}
				if !strings.Contains(out, "scenario "+c.scenario) || !strings.Contains(out, "("+transport+")") {
					t.Error("no text report")
				}
				c.check(t, s)
			})
		}
	}
	g.checkAllClosed(t)
}

// TestTokensFromAPI logs in with tokens from POST /v1/tokens (no
// -jwt-secret).
func TestTokensFromAPI(t *testing.T) {
	g := startFakeGateway(t, testSecret, testAPIKey)
	code, s, _, _ := runGenerator(t, "-scenario", "group", "-addr", g.ln.Addr().String(), "-api", g.http.URL,
		"-api-key", testAPIKey, "-jwt-secret", "", "-conns", "10", "-pushes", "3", "-duration", "1s")
	if code != 0 || s.Connections != 10 || s.Deliveries != 30 {
		t.Fatalf("exit %d connections %d deliveries %d errors %v", code, s.Connections, s.Deliveries, s.ErrorDetail)
	}
}

// TestMaxErrors: a wrong secret makes every login fail, and the exit
// status says so unless -max-errors allows it.
func TestMaxErrors(t *testing.T) {
	g := startFakeGateway(t, testSecret, testAPIKey)
	args := []string{"-addr", g.ln.Addr().String(), "-api", g.http.URL, "-api-key", testAPIKey,
		"-jwt-secret", "wrong", "-conns", "5", "-duration", "100ms"}
	code, s, _, _ := runGenerator(t, args...)
	if code != exitErrors || s.Errors != 5 || s.ErrorDetail["login"] != 5 || s.Connections != 0 {
		t.Fatalf("exit %d errors %d %v connections %d", code, s.Errors, s.ErrorDetail, s.Connections)
	}
	if code, _, _, _ := runGenerator(t, append(args, "-max-errors", "5")...); code != 0 {
		t.Fatalf("exit %d with -max-errors 5", code)
	}
}

// TestNoServer: nothing listening; the run ends by itself with errors,
// and a scenario that needs the API refuses to start.
func TestNoServer(t *testing.T) {
	var out, errb bytes.Buffer
	code := realMain([]string{"-addr", "127.0.0.1:1", "-api", "http://127.0.0.1:1", "-conns", "3", "-duration", "100ms", "-quiet"}, &out, &errb)
	if code != exitErrors || !strings.Contains(out.String(), "dial 3") {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	code = realMain([]string{"-scenario", "push", "-addr", "127.0.0.1:1", "-api", "http://127.0.0.1:1", "-quiet"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "needs the API") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
