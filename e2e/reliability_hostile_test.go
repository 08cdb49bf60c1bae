package e2e

// Fault-injection tests of docs/reliability.md, part 3: hostile input.
// One node takes slowloris, oversized declarations, a PING burst, two
// thousand connections that never log in, forged and malformed tokens and
// malformed API calls, while a well-behaved connection pings it all along.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/codec"
)

// pinger keeps a logged-in connection pinging every 20ms and records the
// slowest round trip and any failure.
type pinger struct {
	c       *client
	n       atomic.Int64
	slowest atomic.Int64
	failed  atomic.Value // string
	stop    chan struct{}
	done    chan struct{}
}

func startPinger(t *testing.T, s *server) *pinger {
	t.Helper()
	c, _ := loggedIn(t, s, "dev-well-behaved")
	p := &pinger{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		frame := make([]byte, codec.HeaderSize)
		for seq := uint32(1); ; seq++ {
			select {
			case <-p.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			codec.PutHeader(frame, &codec.Header{Op: codec.OpPing, Seq: seq})
			start := time.Now()
			_ = c.nc.SetWriteDeadline(start.Add(5 * time.Second))
			if _, err := c.nc.Write(frame); err != nil {
				p.failed.Store("write: " + err.Error())
				return
			}
			f, err := c.tryRead(5 * time.Second)
			if err != nil || f.Op != codec.OpPong || f.Seq != seq {
				p.failed.Store(fmt.Sprintf("PING %d: got %v seq %d err %v", seq, f.Op, f.Seq, err))
				return
			}
			p.n.Add(1)
			if d := int64(time.Since(start)); d > p.slowest.Load() {
				p.slowest.Store(d)
			}
		}
	}()
	return p
}

// check stops the pinger and fails the test if a PING went unanswered or
// took longer than bound.
func (p *pinger) check(t *testing.T, bound time.Duration) {
	t.Helper()
	close(p.stop)
	<-p.done
	if f, _ := p.failed.Load().(string); f != "" {
		t.Fatalf("well-behaved connection: %s", f)
	}
	t.Logf("well-behaved connection: %d PINGs, slowest %v", p.n.Load(), time.Duration(p.slowest.Load()))
	if d := time.Duration(p.slowest.Load()); d > bound {
		t.Errorf("well-behaved connection: a PONG took %v, want < %v", d, bound)
	}
	if p.n.Load() < 10 {
		t.Errorf("well-behaved connection: only %d PINGs answered", p.n.Load())
	}
}

// kickedWith reads the next frame, checks it is KICK(status), and checks
// the connection then closes.
func (c *client) kickedWith(status codec.Status, within time.Duration) {
	c.t.Helper()
	f := c.read(within)
	if f.Op != codec.OpKick || f.Status != status {
		c.t.Fatalf("got %v status %v, want KICK %v", f.Op, f.Status, status)
	}
	c.expectClosed(2 * time.Second)
}

// TestReliabilityHostileInput runs every attack against one node (login
// timeout 1s) and checks each outcome, while a well-behaved connection
// keeps getting its PONGs.
func TestReliabilityHostileInput(t *testing.T) {
	const loginTimeout = time.Second
	s := startServer(t, "-login-timeout", loginTimeout.String())
	p := startPinger(t, s)

	t.Run("slowloris", func(t *testing.T) {
		// A LOGIN header sent one byte per 100ms never completes; the
		// login timeout counts from accept, whatever trickles in.
		c := dial(t, s.TCP)
		start := time.Now()
		var h [codec.HeaderSize]byte
		codec.PutHeader(h[:], &codec.Header{Op: codec.OpLogin, MetaLen: 500})
		closed := make(chan time.Duration, 1)
		go func() {
			f, err := c.tryRead(5 * time.Second)
			if err == nil && f.Op == codec.OpKick && f.Status == codec.StatusNotLoggedIn {
				_, err = c.tryRead(2 * time.Second)
				if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
					closed <- time.Since(start)
					return
				}
			}
			closed <- -1
		}()
		sent := 0
		for i := 0; ; i++ {
			select {
			case el := <-closed:
				t.Logf("slowloris closed after %v, %d bytes sent", el, sent)
				if el < 0 {
					t.Fatal("slowloris: no KICK NOT_LOGGED_IN and close")
				}
				if el < loginTimeout || el > loginTimeout+slack {
					t.Errorf("slowloris closed after %v, want the %v login timeout", el, loginTimeout)
				}
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.nc.Write([]byte{h[i%len(h)]}); err == nil {
				sent++
			}
		}
	})

	t.Run("huge declared body", func(t *testing.T) {
		c, _ := loggedIn(t, s, "dev-huge")
		var h [codec.HeaderSize]byte
		codec.PutHeader(h[:], &codec.Header{Op: codec.OpRequest, Biz: 1, BodyLen: 0xFFFFFFFF})
		start := time.Now()
		c.write(h[:]) // no body follows: the header alone is refused
		c.kickedWith(codec.StatusFrameTooLarge, fastBound)
		t.Logf("FRAME_TOO_LARGE after %v", time.Since(start))
		// One byte over -max-frame is refused just the same.
		c2 := dial(t, s.TCP)
		codec.PutHeader(h[:], &codec.Header{Op: codec.OpLogin, MetaLen: 100, BodyLen: 65536 - codec.HeaderSize - 100 + 1})
		c2.write(h[:])
		c2.kickedWith(codec.StatusFrameTooLarge, fastBound)
	})

	t.Run("ping flood", func(t *testing.T) {
		// A burst within the default frame limits (-frame-rate 1000,
		// -frame-burst 1000: with the LOGIN, 901 frames) is answered, in
		// order, all OK; a flood beyond them is TestHostilePingFlood's.
		c, _ := loggedIn(t, s, "dev-flood")
		const n = 900
		var flood []byte
		for i := range n {
			flood = codec.AppendFrame(flood, codec.Header{Op: codec.OpPing, Seq: uint32(i)}, nil, nil)
		}
		before := s.snapshot()
		got := make(chan error, 1)
		go func() {
			for i := 0; i < n; i++ {
				f, err := c.tryRead(10 * time.Second)
				if err != nil || f.Op != codec.OpPong || f.Seq != uint32(i) || f.Status != codec.StatusOK {
					got <- fmt.Errorf("PONG %d: %v seq %d status %v err %v", i, f.Op, f.Seq, f.Status, err)
					return
				}
			}
			got <- nil
		}()
		start := time.Now()
		c.write(flood) // 18 KB, one write
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		after := s.snapshot()
		t.Logf("%d PINGs in one write answered in %v", n, el)
		if el > 5*time.Second {
			t.Errorf("flood answered in %v", el)
		}
		if d := after.FramesIn - before.FramesIn; d < n {
			t.Errorf("frames in grew by %d, want at least %d", d, n)
		}
		if len(after.Kicks) != len(before.Kicks) {
			t.Errorf("kicks changed during the flood: %v -> %v", before.Kicks, after.Kicks)
		}
		if rtt := c.ping(1 << 20); rtt > fastBound {
			t.Errorf("PONG after the flood took %v", rtt)
		}
	})

	t.Run("never log in", func(t *testing.T) {
		// From two addresses, 1000 each: one address may hold at most
		// -max-unauth-per-ip (1024) connections that are not logged in.
		const n = 2000
		// Only the well-behaved connection is left from earlier subtests.
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if c := s.snapshot().Connections; c != 1 {
				return fmt.Errorf("connections %d before the test, want 1", c)
			}
			return nil
		})
		before := s.snapshot()
		conns := make([]*client, 0, n)
		var maxGoroutines int64
		sample := func() {
			if g := s.snapshot().Goroutines; g > maxGoroutines {
				maxGoroutines = g
			}
		}
		start := time.Now()
		for i := 0; i < n; i++ {
			conns = append(conns, dialFrom(t, attackerIP(i%2), s.TCP))
			if i%200 == 0 {
				sample()
			}
		}
		dialed := time.Since(start)
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			sample()
			if c := s.snapshot().Connections; c < n {
				return fmt.Errorf("connections %d, want all %d (+ the others) open", c, n)
			}
			return nil
		})
		// All of them leave at the login timeout.
		checkFor(t, loginTimeout+dialed+2*time.Second, 20*time.Millisecond, func() error {
			sample()
			if c := s.snapshot().Connections; c != before.Connections {
				return fmt.Errorf("connections %d, want %d", c, before.Connections)
			}
			return nil
		})
		closedAfter := time.Since(start)
		t.Logf("%d idle connections dialed in %v, all closed %v after the first; max goroutines %d", n, dialed, closedAfter, maxGoroutines)
		if closedAfter > dialed+loginTimeout+slack+200*time.Millisecond {
			t.Errorf("the idle connections closed %v after the first dial, want within %v + the login timeout", closedAfter, dialed)
		}
		if maxGoroutines >= 100 {
			t.Errorf("%d goroutines with %d idle connections, want < 100", maxGoroutines, n)
		}
		for i, c := range conns {
			f, err := c.tryRead(time.Second)
			if err != nil || f.Op != codec.OpKick || f.Status != codec.StatusNotLoggedIn {
				t.Fatalf("connection %d: %v %v err %v, want KICK NOT_LOGGED_IN", i, f.Op, f.Status, err)
			}
			c.expectClosed(time.Second)
			c.nc.Close()
		}
		after := s.snapshot()
		if d := after.Kicks["NOT_LOGGED_IN"] - before.Kicks["NOT_LOGGED_IN"]; d != n {
			t.Errorf("NOT_LOGGED_IN kicks grew by %d, want %d", d, n)
		}
	})

	t.Run("bad tokens", func(t *testing.T) {
		exp := time.Now().Add(time.Hour).Unix()
		secret := []byte(testSecret)
		good := token(t, "dev-bad-tok", time.Hour)
		badSig := []byte(good)
		badSig[len(badSig)-3] = otherBase64(badSig[len(badSig)-3])
		cases := []struct {
			name, token, reason string
		}{
			{"alg none", mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "d", "exp": exp}), "alg must be HS256"},
			{"HS512", mint(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "d", "exp": exp}), "alg must be HS256"},
			{"RS256 header, HMAC signature", forge(`{"alg":"RS256","typ":"JWT"}`, fmt.Sprintf(`{"sub":"d","exp":%d}`, exp), secret), "alg must be HS256"},
			{"no alg", forge(`{"typ":"JWT"}`, fmt.Sprintf(`{"sub":"d","exp":%d}`, exp), secret), "alg must be HS256"},
			{"bad signature", string(badSig), "bad signature"},
			{"other secret", mint(t, jwt.SigningMethodHS256, []byte("not-the-secret-not-the-secret-00"), jwt.MapClaims{"sub": "d", "exp": exp}), "bad signature"},
			{"missing sub", mint(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": exp}), "missing sub"},
			{"empty sub", mint(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "", "exp": exp}), "missing sub"},
			{"sub not a string", mint(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": 42, "exp": exp}), "sub must be a string"},
			{"sub too long", mint(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": strings.Repeat("d", 129), "exp": exp}), "sub too long"},
			{"missing exp", mint(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "d"}), "missing exp"},
			{"expired", token(t, "dev-bad-tok", -time.Minute), "token expired"},
			// Over the 4096-byte token limit, within the 8192 bytes a frame
			// may have before login (a larger LOGIN is FRAME_TOO_LARGE).
			{"huge token", mint(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "d", "exp": exp, "pad": strings.Repeat("x", 4500)}), "token too long"},
			{"not a JWT", "hello.world", "malformed token"},
		}
		before := s.snapshot()
		for _, tc := range cases {
			c := dial(t, s.TCP)
			if tc.name == "huge token" && (len(tc.token) <= 4096 || len(tc.token) > 8000) {
				t.Fatalf("huge token is %d bytes, want 4097..8000", len(tc.token))
			}
			start := time.Now()
			ack := c.login(tc.token)
			if ack.Status != codec.StatusUnauthorized || metaString(ack, "reason") != tc.reason {
				t.Errorf("%s: LOGIN_ACK %v reason %q, want UNAUTHORIZED %q", tc.name, ack.Status, metaString(ack, "reason"), tc.reason)
			}
			c.expectClosed(2 * time.Second)
			if el := time.Since(start); el > fastBound {
				t.Errorf("%s: refused and closed after %v", tc.name, el)
			}
		}
		after := s.snapshot()
		if d := after.LoginFail - before.LoginFail; d != uint64(len(cases)) {
			t.Errorf("login failures grew by %d, want %d", d, len(cases))
		}
		if after.Logins != before.Logins {
			t.Errorf("a bad token logged in: logins %d -> %d", before.Logins, after.Logins)
		}
	})

	t.Run("bad API input", func(t *testing.T) {
		dev := func(n int) string { return `{"devices":["` + strings.Repeat("d", n) + `"],"data":"x"}` }
		deep := `{"devices":` + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + `}`
		cases := []struct {
			name, method, path, body string
			status                   int
		}{
			{"truncated", "POST", "/v1/push", `{"devices": [`, 400},
			{"empty body", "POST", "/v1/push", ``, 400},
			{"array", "POST", "/v1/push", `["d1"]`, 400},
			{"string", "POST", "/v1/push", `"d1"`, 400},
			{"devices wrong type", "POST", "/v1/push", `{"devices":"d1","data":"x"}`, 400},
			{"device wrong type", "POST", "/v1/push", `{"devices":[1,2],"data":"x"}`, 400},
			{"no devices", "POST", "/v1/push", `{"devices":[],"data":"x"}`, 400},
			{"device too long", "POST", "/v1/push", dev(129), 400},
			{"data and data_base64", "POST", "/v1/push", `{"devices":["d"],"data":"x","data_base64":"eA=="}`, 400},
			{"bad base64", "POST", "/v1/push", `{"devices":["d"],"data_base64":"!!!"}`, 400},
			{"biz out of range", "POST", "/v1/push", `{"devices":["d"],"biz":70000,"data":"x"}`, 400},
			{"biz negative", "POST", "/v1/push", `{"devices":["d"],"biz":-1,"data":"x"}`, 400},
			{"not UTF-8", "POST", "/v1/push", "{\"devices\":[\"d\"],\"data\":\"\xff\xfe\"}", 400},
			{"push over max-frame", "POST", "/v1/push", `{"devices":["d"],"data":"` + strings.Repeat("x", 70000) + `"}`, 400},
			{"deep nesting", "POST", "/v1/push", deep, 400},
			{"body over 1 MiB", "POST", "/v1/broadcast", `{"data":"` + strings.Repeat("x", 1<<20) + `"}`, 413},
			{"group push no body", "POST", "/v1/groups/g/push", ``, 400},
			{"members wrong type", "PUT", "/v1/groups/g/members", `{"devices":{"a":1}}`, 400},
			{"token without ttl", "POST", "/v1/tokens", `{"device":"d"}`, 400},
			{"token negative ttl", "POST", "/v1/tokens", `{"device":"d","ttl_seconds":-5}`, 400},
			{"token huge ttl", "POST", "/v1/tokens", `{"device":"d","ttl_seconds":1e30}`, 400},
			{"token control char", "POST", "/v1/tokens", `{"device":"d\u0001","ttl_seconds":60}`, 400},
			{"wrong method", "GET", "/v1/push", ``, 405},
			{"no such endpoint", "POST", "/v1/nothing", `{}`, 404},
		}
		for _, tc := range cases {
			code, ctype, body := s.rawAPI(tc.method, tc.path, tc.body)
			var e struct{ Error string }
			if code != tc.status || !strings.HasPrefix(ctype, "application/json") || json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("%s: status %d %s body %.200q, want %d with a JSON error", tc.name, code, ctype, body, tc.status)
			}
		}
		var h struct{ Status string }
		if code := s.api("GET", "/healthz", nil, &h); code != 200 || h.Status != "ok" {
			t.Errorf("healthz after bad API input: %d %q", code, h.Status)
		}
	})

	p.check(t, 500*time.Millisecond)
	st := s.snapshot()
	if st.Goroutines >= 100 || st.Connections != 1 {
		t.Errorf("after the attacks: %d goroutines, %d connections; want < 100 and 1", st.Goroutines, st.Connections)
	}
}

// forge builds a token with the given header and payload JSON, signed
// with HMAC-SHA256 whatever the header says.
func forge(header, payload string, secret []byte) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}

var rawAPIClient = &http.Client{Timeout: 10 * time.Second}

// rawAPI sends body as it is and returns the status, content type and
// body of the answer.
func (s *server) rawAPI(method, path, body string) (int, string, []byte) {
	s.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.API+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := rawAPIClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), data
}
