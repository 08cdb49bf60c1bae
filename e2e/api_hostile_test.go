package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// apiHostileClient makes one connection per request, so that no idle
// keep-alive connection of the test holds a slot of -api-max-conns.
var apiHostileClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// apiHostileGet GETs path on the API with key ("" for none) and returns
// the status and the body.
func apiHostileGet(s *server, path, key string) (int, string, error) {
	req, err := http.NewRequest("GET", s.API+path, nil)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := apiHostileClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("GET %s: reading the body: %w", path, err)
	}
	return resp.StatusCode, string(body), nil
}

// mustGet is apiHostileGet failing the test on a transport error.
func mustGet(t *testing.T, s *server, path, key string) (int, string) {
	t.Helper()
	code, body, err := apiHostileGet(s, path, key)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// apiDial opens a raw TCP connection to the API port, closed at the end
// of the test.
func apiDial(t *testing.T, s *server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.API, "http://"), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the API: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// apiWrite writes raw bytes to an API connection.
func apiWrite(t *testing.T, c net.Conn, b string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, b); err != nil {
		t.Fatalf("write to the API: %v", err)
	}
}

// readUntilClosed reads c until it ends, and returns what it read and nil
// when it ended with EOF or a reset before deadline, or an error saying
// how it did not.
func readUntilClosed(c net.Conn, deadline time.Time) ([]byte, error) {
	_ = c.SetReadDeadline(deadline)
	got, err := io.ReadAll(c)
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, syscall.ECONNRESET):
		return got, nil
	case errors.As(err, &ne) && ne.Timeout():
		return got, fmt.Errorf("still open at the deadline, after reading %q", got)
	default:
		return got, fmt.Errorf("read: %w (after %q)", err, got)
	}
}

// TestAPIHostileSlowBodies: authorized POSTs that promise a large body,
// send a few bytes of it and then nothing are each cut off by
// -api-read-timeout, while the API keeps answering other callers; and the
// goroutines they held are given back.
func TestAPIHostileSlowBodies(t *testing.T) {
	const conns, readTimeout = 200, 2 * time.Second
	s := startServer(t, "-api-read-timeout", readTimeout.String())
	baseGoroutines := s.snapshot().Goroutines

	host := strings.TrimPrefix(s.API, "http://")
	head := "POST /v1/push HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + testAPIKey +
		"\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n" + `{"devices":["`
	cs := make([]net.Conn, conns)
	dialed := make([]time.Time, conns)
	for i := range cs {
		dialed[i] = time.Now()
		cs[i] = apiDial(t, s)
		apiWrite(t, cs[i], head)
	}

	// With every slow body held, the API still answers.
	if code := s.api("GET", "/v1/stats", nil, nil); code != 200 {
		t.Fatalf("GET /v1/stats while %d bodies hang: %d", conns, code)
	}
	// The youngest slow connection cannot have been cut off yet: the stats
	// call above ran while they were held.
	_ = cs[conns-1].SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if n, err := cs[conns-1].Read(make([]byte, 1)); n > 0 || !isTimeout(err) {
		t.Fatalf("the last slow connection was answered before the stats call ended (%d bytes, %v): the test did not overlap them", n, err)
	}

	var wg sync.WaitGroup
	errs := make([]error, conns)
	lifetimes := make([]time.Duration, conns)
	firstLine := make([]string, conns)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := readUntilClosed(c, dialed[i].Add(readTimeout+20*time.Second))
			lifetimes[i] = time.Since(dialed[i])
			firstLine[i], _, _ = strings.Cut(string(got), "\r\n")
			errs[i] = err
		}()
	}
	wg.Wait()
	failed := 0
	for i, err := range errs {
		switch {
		case err != nil:
			failed++
			if failed <= 5 {
				t.Errorf("slow connection %d: %v", i, err)
			}
		case lifetimes[i] < readTimeout:
			t.Errorf("slow connection %d closed after %v, before -api-read-timeout %v: not by the timeout", i, lifetimes[i], readTimeout)
		case strings.HasPrefix(firstLine[i], "HTTP/1.1 2"):
			t.Errorf("slow connection %d was answered %q", i, firstLine[i])
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d slow connections were not closed by the server", failed, conns)
	}
	t.Logf("every slow connection closed; the first answered %q", firstLine[0])

	// The goroutines that served them are gone.
	checkFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if g := s.snapshot().Goroutines; g > baseGoroutines+conns/4 {
			return fmt.Errorf("%d goroutines, %d before the slow bodies", g, baseGoroutines)
		}
		return nil
	})
	if code := s.api("GET", "/v1/stats", nil, nil); code != 200 {
		t.Fatalf("GET /v1/stats after: %d", code)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestAPIHostileMaxConns: with -api-max-conns held by idle keep-alive
// connections, one more gets a 503 and is closed, and the API serves
// again once they are gone.
func TestAPIHostileMaxConns(t *testing.T) {
	const maxConns = 50
	s := startServer(t, "-api-max-conns", itoa(maxConns))

	// Each held connection has had an answer, so the server has accepted
	// it: it holds a slot, idle, until it is closed.
	held := make([]net.Conn, maxConns)
	for i := range held {
		held[i] = apiDial(t, s)
		apiWrite(t, held[i], "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
		_ = held[i].SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(held[i]), nil)
		if err != nil {
			t.Fatalf("held connection %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("held connection %d: %s, close %v; want 200 kept alive", i, resp.Status, resp.Close)
		}
	}

	over := apiDial(t, s)
	apiWrite(t, over, "GET /v1/stats HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "+testAPIKey+"\r\n\r\n")
	_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(over)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("connection %d: %v", maxConns+1, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close ||
		strings.TrimSpace(string(body)) != `{"error":"too many API connections"}` {
		t.Fatalf("connection %d: %s, close %v, body %q; want 503 too many API connections, Connection: close", maxConns+1, resp.Status, resp.Close, body)
	}
	if rest, err := readUntilClosed(&bufferedConn{Conn: over, r: br}, time.Now().Add(10*time.Second)); err != nil || len(rest) > 0 {
		t.Fatalf("connection %d after the 503: %q, %v; want it closed", maxConns+1, rest, err)
	}

	// The held connections still work.
	apiWrite(t, held[0], "GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	if got, err := readUntilClosed(held[0], time.Now().Add(10*time.Second)); err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 200") {
		t.Fatalf("held connection after the refusal: %q, %v", got, err)
	}

	for _, c := range held {
		c.Close()
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		code, _, err := apiHostileGet(s, "/v1/stats", testAPIKey)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("GET /v1/stats after closing the held connections: %d", code)
		}
		return nil
	})
}

// bufferedConn reads what r buffered from Conn first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// TestAPIHostilePprof: /debug/pprof/ is not served by default; with -pprof
// key it is behind the API key, and cmdline never shows the secrets the
// harness passes as flags. -metrics-key puts /metrics behind the key;
// the health probes stay open.
func TestAPIHostilePprof(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		s := startServer(t)
		for _, key := range []string{"", testAPIKey} {
			for _, p := range []string{"/debug/pprof/cmdline", "/debug/pprof/", "/debug/pprof/heap"} {
				if code, body := mustGet(t, s, p, key); code != 404 {
					t.Errorf("GET %s (key %v): %d %.200q, want 404", p, key != "", code, body)
				}
			}
		}
		if code, _ := mustGet(t, s, "/metrics", ""); code != 200 {
			t.Errorf("GET /metrics without a key: %d, want 200 without -metrics-key", code)
		}
	})

	t.Run("key", func(t *testing.T) {
		s := startServer(t, "-pprof", "key", "-metrics-key")
		if !strings.Contains(strings.Join(s.Cmd.Args, " "), "-api-key "+testAPIKey) ||
			!strings.Contains(strings.Join(s.Cmd.Args, " "), "-jwt-secret "+testSecret) {
			t.Fatalf("the harness no longer passes the secrets as flags: %q", s.Cmd.Args)
		}
		for _, p := range []string{"/debug/pprof/cmdline", "/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/metrics"} {
			if code, body := mustGet(t, s, p, ""); code != 401 {
				t.Errorf("GET %s without a key: %d %.200q, want 401", p, code, body)
			}
			if code, body := mustGet(t, s, p, "wrong-key"); code != 401 {
				t.Errorf("GET %s with a wrong key: %d %.200q, want 401", p, code, body)
			}
		}
		code, body := mustGet(t, s, "/debug/pprof/cmdline", testAPIKey)
		if code != 200 {
			t.Fatalf("GET /debug/pprof/cmdline with the key: %d %q", code, body)
		}
		for _, secret := range []string{testAPIKey, testSecret} {
			if strings.Contains(body, secret) {
				t.Errorf("cmdline %q shows a secret", body)
			}
		}
		if !strings.Contains(body, "-api-key\x00[redacted]") || !strings.Contains(body, "-jwt-secret\x00[redacted]") {
			t.Errorf("cmdline %q, want -api-key and -jwt-secret with [redacted] values", body)
		}
		if !strings.Contains(body, "\x00-pprof\x00key") {
			t.Errorf("cmdline %q lacks the other flags", body)
		}
		for _, p := range []string{"/debug/pprof/goroutine?debug=1", "/metrics"} {
			if code, body := mustGet(t, s, p, testAPIKey); code != 200 {
				t.Errorf("GET %s with the key: %d %.200q", p, code, body)
			}
		}
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, body := mustGet(t, s, p, ""); code != 200 {
				t.Errorf("GET %s without a key: %d %q", p, code, body)
			}
		}
	})
}
