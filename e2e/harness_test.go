package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/internal/gatewaytest"
)

const (
	testAPIKey = "e2e-api-key-0123456789"
	testSecret = "e2e-jwt-secret-0123456789abcdef0123456789"
)

var gatewayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "longlink-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gatewayBin, err = gatewaytest.BuildBinary(context.Background(), dir, true)
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the gateway:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running gateway process: TCP, WS ("" unless started with
// -ws-listen), TLS ("" unless started with -tls-listen) and API (base
// URL) are its bound addresses.
type server struct {
	*gatewaytest.Process
	t    *testing.T
	Node string
}

// startServer runs the gateway with the test secrets on free loopback
// ports; extra flags are appended (later flags win).
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	return startServerBin(t, gatewayBin, extra...)
}

// stop terminates the gateway with SIGTERM and waits for it.
func (s *server) stop() {
	select {
	case <-s.Exited():
		return
	default:
	}
	if err := s.Stop(15 * time.Second); errors.Is(err, gatewaytest.ErrStopTimeout) {
		s.t.Errorf("%v:\n%s", err, s.Logs())
	}
	if strings.Contains(s.Logs(), "DATA RACE") || strings.Contains(s.Logs(), "panic:") {
		s.t.Errorf("gateway reported a race or panic:\n%s", s.Logs())
	}
}

// token mints a login token for device.
func token(t *testing.T, device string, ttl time.Duration, groups ...string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": device, "exp": time.Now().Add(ttl).Unix()}
	if len(groups) > 0 {
		claims["groups"] = groups
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// client is a raw protocol client over TCP.
type client struct {
	t   *testing.T
	nc  net.Conn
	buf []byte
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc}
}

// meta encodes key/value pairs as a meta section.
func meta(kv ...string) []byte {
	var m []byte
	for i := 0; i+1 < len(kv); i += 2 {
		m = codec.AppendMetaString(m, kv[i], kv[i+1])
	}
	return m
}

func (c *client) send(h codec.Header, m, body []byte) {
	c.t.Helper()
	c.write(codec.AppendFrame(nil, h, m, body))
}

func (c *client) write(b []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next frame, failing the test after timeout.
func (c *client) read(timeout time.Duration) codec.Frame {
	c.t.Helper()
	f, err := c.tryRead(timeout)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// tryRead returns the next frame or the read error. The frame's slices
// are copies the test may keep.
func (c *client) tryRead(timeout time.Duration) (codec.Frame, error) {
	deadline := time.Now().Add(timeout)
	for {
		f, n, err := codec.Decode(c.buf, 1<<24)
		if err != nil {
			return codec.Frame{}, err
		}
		if n > 0 {
			f.Meta = codec.Meta(bytes.Clone(f.Meta))
			f.Body = bytes.Clone(f.Body)
			c.buf = c.buf[n:]
			return f, nil
		}
		_ = c.nc.SetReadDeadline(deadline)
		var tmp [4096]byte
		k, err := c.nc.Read(tmp[:])
		c.buf = append(c.buf, tmp[:k]...)
		if err != nil && k == 0 {
			return codec.Frame{}, err
		}
	}
}

// expectClosed asserts the server closes the connection (EOF or reset)
// within timeout, allowing no further frames.
func (c *client) expectClosed(timeout time.Duration) {
	c.t.Helper()
	f, err := c.tryRead(timeout)
	if err == nil {
		c.t.Fatalf("expected the connection to close, got frame %v status %v", f.Op, f.Status)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatalf("connection still open after %v", timeout)
	}
}

// login logs in and returns the LOGIN_ACK.
func (c *client) login(tok string, extra ...string) codec.Frame {
	c.t.Helper()
	c.send(codec.Header{Op: codec.OpLogin, Seq: 1}, meta(append([]string{"token", tok}, extra...)...), nil)
	f := c.read(5 * time.Second)
	if f.Op != codec.OpLoginAck {
		c.t.Fatalf("expected LOGIN_ACK, got %v", f.Op)
	}
	return f
}

// loggedIn dials and logs device in, failing unless LOGIN_ACK is OK.
func loggedIn(t *testing.T, s *server, device string, groups ...string) (*client, codec.Frame) {
	t.Helper()
	c := dial(t, s.TCP)
	ack := c.login(token(t, device, time.Hour, groups...))
	if ack.Status != codec.StatusOK {
		reason, _ := ack.Meta.Get("reason")
		t.Fatalf("login %s: status %v (%s)", device, ack.Status, reason)
	}
	return c, ack
}

func metaString(f codec.Frame, key string) string {
	v, _ := f.Meta.Get(key)
	return string(v)
}

// api calls the gateway's HTTP API and decodes the JSON answer into out
// (when not nil); it returns the status code.
func (s *server) api(method, path string, body any, out any) int {
	s.t.Helper()
	return s.apiKey(testAPIKey, method, path, body, out)
}

func (s *server) apiKey(key, method, path string, body any, out any) int {
	s.t.Helper()
	var r io.Reader
	if body != nil {
		if b, ok := body.(string); ok {
			r = strings.NewReader(b)
		} else {
			b, err := json.Marshal(body)
			if err != nil {
				s.t.Fatal(err)
			}
			r = bytes.NewReader(b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.API+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: status %d, body %q is not JSON: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// stats fetches /v1/stats.
func (s *server) stats() map[string]any {
	s.t.Helper()
	var st map[string]any
	if code := s.api("GET", "/v1/stats", nil, &st); code != 200 {
		s.t.Fatalf("stats: %d", code)
	}
	return st
}

// checkFor polls fn until it returns nil or timeout passes.
func checkFor(t *testing.T, timeout, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(every)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
