package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/internal/gatewaytest"
)

// The tests here and the examples run against the real gateway: TestMain
// builds it (github.com/longlink/longlink) and starts one for the
// examples; tests start their own when they kill or drain it.

const (
	testAPIKey = "client-test-api-key-0123456789"
	testSecret = "client-test-jwt-secret-0123456789abcdef"
)

var (
	gatewayBinary   string // the built gateway, or "" when it did not build
	gatewayBuildErr error

	// The gateway of the examples.
	gatewayAddr string // TCP host:port
	gatewayAPI  string // http://host:port
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "longlink-client-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gatewayBinary, err = gatewaytest.BuildBinary(context.Background(), dir, false)
	if err != nil {
		gatewayBuildErr = fmt.Errorf("building the gateway: %w", err)
		fmt.Fprintln(os.Stderr, "client tests: the gateway does not build; tests that need it are skipped, examples fail:", gatewayBuildErr)
	}
	var example *gateway
	if gatewayBinary != "" {
		example, err = launch("example", nil, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "client tests: starting the examples' gateway:", err)
		} else {
			gatewayAddr, gatewayAPI = example.tcp, example.api
		}
	}
	code := m.Run()
	if example != nil {
		example.terminate()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateway is a running gateway process. After a kill it can be started
// again on the same addresses.
type gateway struct {
	node     string
	tcp, api string // TCP host:port; API base URL
	args     []string
	extra    []string

	mu sync.Mutex
	p  *gatewaytest.Process
}

// launch starts a gateway; addresses nil means free loopback ports.
func launch(node string, addrs []string, extra []string) (*gateway, error) {
	if gatewayBinary == "" {
		return nil, gatewayBuildErr
	}
	g := &gateway{node: node, extra: extra}
	listen, api := "127.0.0.1:0", "127.0.0.1:0"
	if addrs != nil {
		listen, api = addrs[0], addrs[1]
	}
	g.args = []string{"-ws-listen", "", "-node", node, "-api-key", testAPIKey,
		"-jwt-secret", testSecret, "-biz", "1=echo", "-log-level", "debug"}
	if err := g.start(listen, api); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *gateway) start(listen, api string) error {
	args := append(append([]string{"-listen", listen, "-api-listen", api}, g.args...), g.extra...)
	p, err := gatewaytest.Start(gatewayBinary, args, gatewaytest.Listeners{TCP: true, API: true})
	var se *gatewaytest.StartError
	switch {
	case errors.As(err, &se) && se.Exited:
		return fmt.Errorf("gateway %s exited at start: %v\n%s", g.node, se.Err, se.Logs)
	case errors.As(err, &se):
		return fmt.Errorf("gateway %s did not start in time:\n%s", g.node, se.Logs)
	case err != nil:
		return err
	}
	g.mu.Lock()
	g.tcp, g.api, g.p = p.TCP, p.API, p
	g.mu.Unlock()
	return nil
}

// startGateway starts a gateway for one test, stopped at its end.
func startGateway(t *testing.T, node string, extra ...string) *gateway {
	t.Helper()
	if gatewayBinary == "" {
		t.Skipf("needs the gateway: %v", gatewayBuildErr)
	}
	g, err := launch(node, nil, extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.terminate()
		if l := g.log(); strings.Contains(l, "DATA RACE") || strings.Contains(l, "panic:") {
			t.Errorf("gateway %s reported a race or panic:\n%s", node, l)
		}
	})
	return g
}

func (g *gateway) process() *gatewaytest.Process {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.p
}

func (g *gateway) log() string { return g.process().Logs() }

// kill stops the process with SIGKILL: no drain, no KICK.
func (g *gateway) kill() { g.process().Kill() }

// terminate sends SIGTERM (the gateway drains) and waits for the exit.
func (g *gateway) terminate() error { return g.process().Stop(20 * time.Second) }

// restart starts the gateway again on the same addresses.
func (g *gateway) restart(t *testing.T) {
	t.Helper()
	tcp, api := g.tcp, strings.TrimPrefix(g.api, "http://")
	var err error
	for range 50 { // the ports may take a moment to be free again
		if err = g.start(tcp, api); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("restarting the gateway: %v", err)
}

// call sends a /v1 API request and decodes the JSON answer into out.
func call(api, method, path string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, api+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

type pushResult struct {
	Delivered int      `json:"delivered"`
	Offline   []string `json:"offline"`
}

// push sends one push to device through POST /v1/push.
func push(api, device, id, data string) (pushResult, error) {
	var r pushResult
	err := call(api, "POST", "/v1/push", map[string]any{
		"devices": []string{device}, "biz": 1, "data": data, "id": id, "ack": true,
	}, &r)
	return r, err
}

// mintToken signs a login token for device with the test secret, as a
// business backend would.
func mintToken(device string, ttl time.Duration, groups ...string) (string, error) {
	claims := jwt.MapClaims{"sub": device, "exp": time.Now().Add(ttl).Unix()}
	if len(groups) > 0 {
		claims["groups"] = groups
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
}
