package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startRealGateway builds the gateway (github.com/longlink/longlink) and
// starts it on free loopback ports. It skips the test when the gateway
// does not build, unless LONGLINK_SMOKE_REQUIRED=1.
func startRealGateway(t *testing.T) (addr, apiURL string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "longlink")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/longlink/longlink")
	if out, err := build.CombinedOutput(); err != nil {
		if os.Getenv("LONGLINK_SMOKE_REQUIRED") == "1" {
			t.Fatalf("the gateway does not build: %v\n%s", err, out)
		}
		t.Skipf("the gateway does not build (set LONGLINK_SMOKE_REQUIRED=1 to fail instead): %v\n%s", err, out)
	}
	addr, api := freePort(t), freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-listen", addr, "-ws-listen", "", "-api-listen", api, "-node", "smoke",
		"-api-key", testAPIKey, "-jwt-secret", testSecret, "-biz", "1=echo", "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gateway output:\n%s", logs.String())
		}
	})
	apiURL = "http://" + api
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("the gateway exited: %v\n%s", err, logs.String())
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, apiURL+"/v1/stats", nil)
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					c.Close()
					return addr, apiURL
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not come up on %s / %s\n%s", addr, api, logs.String())
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
	addr, apiURL := startRealGateway(t)
	const conns = 100
	base := []string{"-addr", addr, "-api", apiURL, "-api-key", testAPIKey, "-jwt-secret", testSecret,
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
	for _, c := range cases {
		t.Run(c.scenario, func(t *testing.T) {
			args := append(append([]string{"-scenario", c.scenario}, base...), c.extra...)
			args = append(args, "-device-prefix", "smoke-"+c.scenario+"-")
			code, s, _, _ := runGenerator(t, args...)
			if code != 0 || s.Errors != 0 {
				t.Fatalf("exit %d, errors %d: %v\n%s", code, s.Errors, s.ErrorDetail, strings.Join(s.ErrorSample, "\n"))
			}
			if s.Connections != conns || !s.Server.Available || s.Server.Node != "smoke" {
				t.Errorf("connections %d, server %+v", s.Connections, s.Server)
			}
			c.check(t, s)
		})
	}
}
