package main

import (
	"context"
	"errors"
	"net/http"

	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/gatewaytest"
)

// realGateway is a gateway process started by startRealGateway, with the
// addresses it reported.
type realGateway struct {
	tcp, ws, tls, api string // host:port of each listener
	caFile            string // the TLS listener's self-signed certificate
}

// args are the generator's flags that dial g over transport.
func (g *realGateway) args(transport string) []string {
	switch transport {
	case "ws":
		return []string{"-ws", "-ws-addr", g.ws}
	case "tls":
		return []string{"-tls", "-tls-addr", g.tls, "-tls-ca", g.caFile}
	}
	return []string{"-addr", g.tcp}
}

// startRealGateway builds the gateway (github.com/longlink/longlink) and
// starts it with TCP, WebSocket, TLS (a certificate made here) and the API
// on free loopback ports, which it reads back from the gateway's log. A
// gateway that does not build fails the test: a skip would pass CI.
func startRealGateway(t *testing.T) *realGateway {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := gatewaytest.BuildBinary(ctx, dir, false)
	if err != nil {
		t.Fatalf("the gateway does not build: %v", err)
	}
	certFile, keyFile, _ := writeTestCert(t, dir)
	deadline := time.Now().Add(15 * time.Second)
	p, err := gatewaytest.StartWithin(bin, []string{"-listen", "127.0.0.1:0", "-ws-listen", "127.0.0.1:0",
		"-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile,
		"-api-listen", "127.0.0.1:0", "-node", "smoke",
		"-api-key", testAPIKey, "-jwt-secret", testSecret, "-biz", "1=echo", "-log-level", "info"},
		gatewaytest.Listeners{TCP: true, WS: true, TLS: true, API: true}, time.Until(deadline))
	var se *gatewaytest.StartError
	switch {
	case errors.As(err, &se) && se.Exited:
		t.Fatalf("the gateway exited: %v\n%s", se.Err, se.Logs)
	case errors.As(err, &se):
		t.Fatalf("the gateway did not come up (tcp %q ws %q tls %q api %q)\n%s", se.TCP, se.WS, se.TLS, strings.TrimPrefix(se.API, "http://"), se.Logs)
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("gateway output:\n%s", p.Logs())
		}
	})
	g := &realGateway{tcp: p.TCP, ws: p.WS, tls: p.TLS, api: strings.TrimPrefix(p.API, "http://"), caFile: certFile}
	for {
		select {
		case err := <-p.Exited():
			t.Fatalf("the gateway exited: %v\n%s", err, p.Logs())
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, p.API+"/v1/stats", nil)
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not come up (tcp %q ws %q tls %q api %q)\n%s", g.tcp, g.ws, g.tls, g.api, p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSmokeRealGateway runs each scenario briefly against the real
// gateway.
func TestSmokeRealGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the gateway")
	}
	g := startRealGateway(t)
	const conns = 100
	base := []string{"-api", "http://" + g.api, "-api-key", testAPIKey, "-jwt-secret", testSecret,
		"-conns", strconv.Itoa(conns), "-dial-concurrency", "20", "-duration", "1s", "-drain", "3s",
		"-dial-timeout", "3s", "-connect-timeout", "10s"}
	cases := []struct {
		scenario string
		extra    []string
		check    func(t *testing.T, s *Summary)
	}{
		{"hold", []string{"-hb", "200ms"}, func(t *testing.T, s *Summary) {
			if s.Pongs == 0 {
				t.Error("no PONG")
			}
			if s.Server.RSSPerConn == 0 || s.Server.Goroutines == 0 {
				t.Errorf("server stats %+v", s.Server)
			}
		}},
		{"request", []string{"-rate", "500"}, func(t *testing.T, s *Summary) {
			if s.Requests < 400 || s.Responses != s.Requests {
				t.Errorf("requests %d responses %d", s.Requests, s.Responses)
			}
		}},
		{"push", []string{"-rate", "200", "-ack"}, func(t *testing.T, s *Summary) {
			if s.PushCalls < 150 || s.Deliveries != s.PushCalls {
				t.Errorf("push calls %d deliveries %d", s.PushCalls, s.Deliveries)
			}
		}},
		{"group", []string{"-pushes", "20"}, func(t *testing.T, s *Summary) {
			if s.Deliveries != conns*20 || s.GroupMembers != conns {
				t.Errorf("deliveries %d, members %d", s.Deliveries, s.GroupMembers)
			}
			checkArrival(t, s)
		}},
		{"mixed", []string{"-rate", "200", "-push-rate", "50", "-churn", "10"}, func(t *testing.T, s *Summary) {
			if s.Reconnects == 0 || s.Requests == 0 || s.Deliveries == 0 {
				t.Errorf("reconnects %d requests %d deliveries %d", s.Reconnects, s.Requests, s.Deliveries)
			}
			// Every device holds far fewer pushes than -recover-size, so
			// every resume must be complete.
			if s.Resumed != s.Reconnects {
				t.Errorf("%d of %d reconnects resumed", s.Resumed, s.Reconnects)
			}
		}},
	}
	// Every scenario over TCP; hold and request over WebSocket and TLS
	// too (the fake gateway runs every scenario over every transport).
	for _, transport := range []string{"tcp", "ws", "tls"} {
		for _, c := range cases {
			if transport != "tcp" && c.scenario != "hold" && c.scenario != "request" {
				continue
			}
			t.Run(transport+"/"+c.scenario, func(t *testing.T) {
				args := append(append(append([]string{"-scenario", c.scenario}, base...), g.args(transport)...), c.extra...)
				args = append(args, "-device-prefix", "smoke-"+transport+"-"+c.scenario+"-")
				code, s, _, _ := runGenerator(t, args...)
				if code != 0 || s.Errors != 0 {
					t.Fatalf("exit %d, errors %d: %v\n%s", code, s.Errors, s.ErrorDetail, strings.Join(s.ErrorSample, "\n"))
				}
				if s.Connections != conns || !s.Server.Available || s.Server.Node != "smoke" {
					t.Errorf("connections %d, server %+v", s.Connections, s.Server)
				}
				if want := map[string]string{"tcp": g.tcp, "ws": g.ws, "tls": g.tls}[transport]; s.Transport != transport || s.Addr != want {
					t.Errorf("transport %s, addr %s", s.Transport, s.Addr)
				}
				c.check(t, s)
			})
		}
	}

	// -sdk: every device a client.Client of the Go SDK. hold, request,
	// push and mixed over TCP; request over WebSocket and TLS.
	const sdkConns = 200
	sdkBase := []string{"-sdk", "-api", "http://" + g.api, "-api-key", testAPIKey, "-jwt-secret", testSecret,
		"-conns", strconv.Itoa(sdkConns), "-dial-concurrency", "20", "-duration", "1s", "-drain", "3s",
		"-dial-timeout", "3s", "-connect-timeout", "10s"}
	sdkCases := []struct {
		transport, scenario string
		extra               []string
		check               func(t *testing.T, s *Summary)
	}{
		{"tcp", "hold", []string{"-hb", "500ms"}, func(t *testing.T, s *Summary) {
			if s.Pongs < sdkConns || s.LatencyKind != "ping" {
				t.Errorf("pongs %d, latency kind %s", s.Pongs, s.LatencyKind)
			}
		}},
		{"tcp", "request", []string{"-rate", "500"}, func(t *testing.T, s *Summary) {
			if s.Requests < 400 || s.Responses != s.Requests || s.SDK.RequestsFailed != 0 {
				t.Errorf("requests %d responses %d sdk %+v", s.Requests, s.Responses, *s.SDK)
			}
		}},
		{"ws", "request", []string{"-rate", "500"}, func(t *testing.T, s *Summary) {
			if s.Requests < 400 || s.Responses != s.Requests {
				t.Errorf("requests %d responses %d", s.Requests, s.Responses)
			}
		}},
		{"tls", "request", []string{"-rate", "500"}, func(t *testing.T, s *Summary) {
			if s.Requests < 400 || s.Responses != s.Requests {
				t.Errorf("requests %d responses %d", s.Requests, s.Responses)
			}
		}},
		{"tcp", "push", []string{"-rate", "200", "-ack"}, func(t *testing.T, s *Summary) {
			if s.PushCalls < 150 || s.Deliveries != s.PushCalls || s.SDK.PushesReceived != uint64(s.Deliveries) {
				t.Errorf("push calls %d deliveries %d sdk pushes %d", s.PushCalls, s.Deliveries, s.SDK.PushesReceived)
			}
			if s.SDK.AcksSent == 0 {
				t.Error("no PUSH_ACK")
			}
		}},
		{"tcp", "mixed", []string{"-rate", "200", "-push-rate", "50", "-churn", "10"}, func(t *testing.T, s *Summary) {
			st := s.SDK
			if st.ChurnCuts == 0 || s.Requests == 0 || s.Deliveries == 0 {
				t.Errorf("churn cuts %d requests %d deliveries %d", st.ChurnCuts, s.Requests, s.Deliveries)
			}
			// The SDK reconnects after each cut by itself and resumes
			// completely (far fewer pushes than -recover-size).
			if s.Reconnects != st.ChurnCuts || s.Resumed != s.Reconnects || st.Gaps != 0 {
				t.Errorf("cuts %d reconnects %d resumed %d gaps %d", st.ChurnCuts, s.Reconnects, s.Resumed, st.Gaps)
			}
		}},
	}
	for _, c := range sdkCases {
		t.Run("sdk/"+c.transport+"/"+c.scenario, func(t *testing.T) {
			args := append(append(append([]string{"-scenario", c.scenario}, sdkBase...), g.args(c.transport)...), c.extra...)
			args = append(args, "-device-prefix", "smoke-sdk-"+c.transport+"-"+c.scenario+"-")
			code, s, _, _ := runGenerator(t, args...)
			if code != 0 || s.Errors != 0 {
				t.Fatalf("exit %d, errors %d: %v\n%s", code, s.Errors, s.ErrorDetail, strings.Join(s.ErrorSample, "\n"))
			}
			if s.Connections != sdkConns || s.SDK == nil || s.SDK.Clients != sdkConns || s.Transport != c.transport {
				t.Fatalf("connections %d, transport %s, sdk %+v", s.Connections, s.Transport, s.SDK)
			}
			c.check(t, s)
		})
	}
}

// checkArrival: over plain TCP on Linux every delivery also has an
// arrival latency (up to the kernel's receive time), and a frame reaches
// the socket before the generator reads it, so no arrival percentile may
// exceed the delivery one (beyond the histogram's 3-digit precision).
func checkArrival(t *testing.T, s *Summary) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	a, d := s.Latencies["arrival"], s.Latencies["delivery"]
	if a.Count != d.Count || a.Count != s.Deliveries {
		t.Fatalf("%d arrival latencies for %d deliveries (%d delivery latencies)", a.Count, s.Deliveries, d.Count)
	}
	for _, q := range []struct {
		name string
		a, d float64
	}{{"p50", a.P50, d.P50}, {"p99", a.P99, d.P99}, {"max", a.Max, d.Max}} {
		if q.a > q.d*1.001+0.001 {
			t.Errorf("arrival %s %.3f ms after delivery %s %.3f ms", q.name, q.a, q.name, q.d)
		}
	}
}
