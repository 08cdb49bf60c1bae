package upstream

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

func TestForwardOKRoundTrip(t *testing.T) {
	var calls atomic.Int32
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		want := map[string]string{
			"Content-Type":         "application/octet-stream",
			"X-Longlink-Device":    "dev-1",
			"X-Longlink-App":       "app-1",
			"X-Longlink-Conn":      "7042",
			"X-Longlink-Node":      "node-a",
			"X-Longlink-Biz":       "3",
			"X-Longlink-Seq":       "42",
			"X-Longlink-Meta-Lang": "en",
			"X-Longlink-Meta-Room": "lobby",
		}
		for k, v := range want {
			if got := r.Header.Get(k); got != v {
				t.Errorf("server: header %s = %q, want %q", k, got, v)
			}
		}
		if r.Method != http.MethodPost || r.URL.Path != "/rpc" {
			t.Errorf("server: %s %s, want POST /rpc", r.Method, r.URL.Path)
		}
		body, _ := io.ReadAll(r.Body)
		if r.ContentLength != int64(len(body)) {
			t.Errorf("server: Content-Length %d for %d bytes", r.ContentLength, len(body))
		}
		w.Header().Set("X-Longlink-Meta-Trace-Id", "abc")
		w.Header()["x-longlink-meta-MixedCase"] = []string{"first", "last"} // not canonical; last value wins
		w.Header().Set("X-Other", "not meta")
		_, _ = w.Write(append([]byte("pong:"), body...))
	})
	d, c := start(t, []Business{{ID: 3, URL: srv.URL + "/rpc"}}, Options{Node: "node-a"})

	mustSubmit(t, d, 3, 42, encodeMeta("lang", "en", "room", "lobby"), []byte("ping"))
	a := c.wait(t, 3, 2*time.Second)
	if a.status != codec.StatusOK || string(a.body) != "pong:ping" || a.seq != 42 {
		t.Fatalf("answer %v seq %d %q, want OK 42 \"pong:ping\"", a.status, a.seq, a.body)
	}
	wantMeta := map[string]string{"trace-id": "abc", "mixedcase": "last"}
	if len(a.meta) != len(wantMeta) {
		t.Fatalf("answer meta %v, want %v", a.meta, wantMeta)
	}
	for k, v := range wantMeta {
		if a.meta[k] != v {
			t.Errorf("answer meta %q = %q, want %q", k, a.meta[k], v)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("backend calls = %d, want 1", calls.Load())
	}
}

// recordingListener keeps every byte the server reads, to see the request
// as it was on the wire (Go's server canonicalises header names).
type recordingListener struct {
	net.Listener
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, l: l}, nil
}

func (l *recordingListener) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type recordingConn struct {
	net.Conn
	l *recordingListener
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.mu.Lock()
	c.l.buf.Write(p[:n])
	c.l.mu.Unlock()
	return n, err
}

func TestMetaKeyCaseOnWireAndInvalidSkipped(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rec := &recordingListener{Listener: srv.Listener}
	srv.Listener = rec
	srv.Start()
	t.Cleanup(srv.Close)
	d, c := start(t, []Business{{ID: 1, URL: srv.URL}}, Options{})

	meta := encodeMeta(
		"userId", "42", // case must survive
		"bad key", "x", // not a token
		"crlf", "a\r\nX-Injected: 1", // header injection attempt
		"nul", "a\x00b",
		"tab", "a\tb", // a tab is legal in a value
		"userId", "43", // repeated: last wins
	)
	mustSubmit(t, d, 1, 1, meta, nil)
	if a := c.wait(t, 1, 2*time.Second); a.status != codec.StatusOK {
		t.Fatalf("status %v, want OK (bad entries are skipped, not fatal)", a.status)
	}
	wire := rec.String()
	for _, want := range []string{"X-Longlink-Meta-userId: 43\r\n", "X-Longlink-Meta-tab: a\tb\r\n"} {
		if !strings.Contains(wire, want) {
			t.Errorf("wire lacks %q:\n%s", want, wire)
		}
	}
	for _, bad := range []string{"bad key", "X-Injected", "crlf", "nul"} {
		if strings.Contains(wire, bad) {
			t.Errorf("wire contains %q:\n%s", bad, wire)
		}
	}
	if strings.Contains(wire, "userId: 42") {
		t.Errorf("repeated key sent twice:\n%s", wire)
	}
	if n := d.MetaSkipped(); n != 3 {
		t.Errorf("MetaSkipped = %d, want 3", n)
	}
}

func TestBinaryBodyRoundTrip(t *testing.T) {
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {
		// Read all before writing: once the server flushes headers it may
		// stop reading the request body (io.Copy here would lose bytes).
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	})
	d, c := start(t, []Business{{ID: 1, URL: srv.URL}}, Options{})
	body := make([]byte, 4*256)
	for i := range body {
		body[i] = byte(i)
	}
	mustSubmit(t, d, 1, 1, nil, body)
	a := c.wait(t, 1, 2*time.Second)
	if a.status != codec.StatusOK || !bytes.Equal(a.body, body) {
		t.Fatalf("status %v, body equal %v (%d bytes, %x...)", a.status, bytes.Equal(a.body, body), len(a.body), a.body[:min(16, len(a.body))])
	}
	// An empty body is sent as Content-Length 0, not chunked.
	mustSubmit(t, d, 1, 2, nil, nil)
	if a := c.wait(t, 1, 2*time.Second); a.status != codec.StatusOK || len(a.body) != 0 {
		t.Fatalf("empty body: status %v body %q", a.status, a.body)
	}
}

func TestNon2xxIsBizError(t *testing.T) {
	var redirected atomic.Int32
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/404":
			http.Error(w, "no such room", http.StatusNotFound)
		case "/500":
			http.Error(w, "database down", http.StatusInternalServerError)
		case "/302":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/elsewhere":
			redirected.Add(1)
		}
	})
	bizs := []Business{{ID: 1, URL: srv.URL + "/404"}, {ID: 2, URL: srv.URL + "/500"}, {ID: 3, URL: srv.URL + "/302"}}
	d, c := start(t, bizs, Options{})
	for _, tc := range []struct {
		biz  uint16
		body string
	}{{1, "no such room\n"}, {2, "database down\n"}, {3, ""}} {
		mustSubmit(t, d, tc.biz, 1, encodeMeta("k", "v"), []byte("x"))
		a := c.wait(t, tc.biz, 2*time.Second)
		if a.status != codec.StatusBizError || !strings.HasPrefix(string(a.body), tc.body) || len(a.meta) != 0 {
			t.Errorf("biz %d: %v %q meta %v, want BIZ_ERROR %q", tc.biz, a.status, a.body, a.meta, tc.body)
		}
	}
	if redirected.Load() != 0 {
		t.Error("a redirect was followed")
	}
}

func TestFourXXDoesNotOpenCircuit(t *testing.T) {
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad request", http.StatusBadRequest)
	})
	d, c := start(t, []Business{{ID: 1, URL: srv.URL}}, Options{FailureThreshold: 2})
	for seq := uint32(1); seq <= 6; seq++ {
		mustSubmit(t, d, 1, seq, nil, nil)
		if a := c.wait(t, 1, 2*time.Second); a.status != codec.StatusBizError {
			t.Fatalf("seq %d: %v, want BIZ_ERROR", seq, a.status)
		}
	}
	if s := statsOf(t, d, 1); s.Breaker != "closed" {
		t.Fatalf("breaker %s after 4xx answers, want closed", s.Breaker)
	}
}

func TestResponseTooLarge(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 2048)
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length": // Content-Length announces it
			_, _ = w.Write(big)
		case "/chunked": // no Content-Length: found while reading
			_, _ = w.Write(big[:1000])
			w.(http.Flusher).Flush()
			_, _ = w.Write(big[1000:])
		case "/meta": // body fits, body + meta does not
			w.Header().Set("X-Longlink-Meta-Pad", string(big[:100]))
			_, _ = w.Write(big[:1000])
		case "/fits":
			_, _ = w.Write(big[:1024])
		case "/declared": // refused from its Content-Length, before any read
			w.Header().Set("Content-Length", "1048576")
			_, _ = w.Write(big[:10])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	})
	bizs := []Business{{ID: 1, URL: srv.URL + "/length"}, {ID: 2, URL: srv.URL + "/chunked"},
		{ID: 3, URL: srv.URL + "/meta"}, {ID: 5, URL: srv.URL + "/declared", Timeout: 2 * time.Second},
		{ID: 4, URL: srv.URL + "/fits"}}
	d, c := start(t, bizs, Options{MaxBody: 1024})
	for _, b := range bizs[:4] {
		mustSubmit(t, d, b.ID, 1, nil, nil)
		if a := c.wait(t, b.ID, time.Second); a.status != codec.StatusBizError || string(a.body) != msgTooLarge {
			t.Errorf("%s: %v %q, want BIZ_ERROR %q", b.URL, a.status, a.body, msgTooLarge)
		}
	}
	mustSubmit(t, d, 4, 1, nil, nil)
	if a := c.wait(t, 4, 2*time.Second); a.status != codec.StatusOK || len(a.body) != 1024 {
		t.Errorf("exactly MaxBody: %v, %d bytes", a.status, len(a.body))
	}
}

func TestTimeoutWhileOtherBusinessAnswers(t *testing.T) {
	const timeout = 200 * time.Millisecond
	slow, slowSrv := newBlocker(t)
	fast := backend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("fast")) })
	d, c := start(t, []Business{
		{ID: 1, URL: slowSrv.URL, Workers: 2, Timeout: timeout},
		{ID: 2, URL: fast.URL, Workers: 2, Timeout: time.Second},
	}, Options{})

	t0 := time.Now()
	mustSubmit(t, d, 1, 1, nil, []byte("a"))
	mustSubmit(t, d, 1, 2, nil, []byte("b"))
	slow.waitEntered(t)
	slow.waitEntered(t)

	// Business 2 keeps answering at full speed while 1's workers are stuck.
	var fastAnswers int
	for seq := uint32(1); time.Since(t0) < timeout; seq++ {
		sent := time.Now()
		mustSubmit(t, d, 2, seq, nil, nil)
		a := c.wait(t, 2, time.Second)
		if a.status != codec.StatusOK {
			t.Fatalf("fast business: %v", a.status)
		}
		if lat := a.at.Sub(sent); lat > 100*time.Millisecond {
			t.Fatalf("fast business took %v while the slow one was stuck", lat)
		}
		fastAnswers++
	}
	for range 2 {
		a := c.wait(t, 1, time.Second)
		elapsed := a.at.Sub(t0)
		if a.status != codec.StatusTimeout || elapsed < timeout || elapsed > timeout+150*time.Millisecond {
			t.Fatalf("slow business: %v after %v, want TIMEOUT after %v", a.status, elapsed, timeout)
		}
	}
	if fastAnswers < 5 {
		t.Fatalf("only %d fast answers during the slow business's timeout", fastAnswers)
	}
}

func TestQueuedPastTimeoutIsNotForwarded(t *testing.T) {
	const timeout = 100 * time.Millisecond
	var calls atomic.Int32
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	bizs := []Business{{ID: 1, URL: srv.URL, Workers: 1, Timeout: timeout}}
	c := newCollector(bizs)
	c.holdOn, c.hold = 1, timeout+50*time.Millisecond // the only worker is busy past seq 2's deadline
	d, err := newDispatcher(bizs, c, Options{FailureThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	mustSubmit(t, d, 1, 1, nil, nil)
	mustSubmit(t, d, 1, 2, nil, nil)
	if a := c.wait(t, 1, time.Second); a.seq != 1 || a.status != codec.StatusOK {
		t.Fatalf("seq %d: %v, want seq 1 OK", a.seq, a.status)
	}
	if a := c.wait(t, 1, time.Second); a.seq != 2 || a.status != codec.StatusTimeout {
		t.Fatalf("seq %d: %v, want seq 2 TIMEOUT", a.seq, a.status)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("backend calls = %d: a request that timed out in the queue was forwarded", n)
	}
	if b := statsOf(t, d, 1).Breaker; b != "closed" {
		t.Fatalf("breaker %s: a request never sent was counted as a failure", b)
	}
}

func TestAnswerReadWithLimit(t *testing.T) {
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) {
		// An endless answer: some bytes, then nothing until the client leaves.
		_, _ = w.Write(bytes.Repeat([]byte("x"), 4096))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	d, c := start(t, []Business{{ID: 1, URL: srv.URL, Timeout: time.Second}}, Options{MaxBody: 1024})
	t0 := time.Now()
	mustSubmit(t, d, 1, 1, nil, nil)
	a := c.wait(t, 1, 2*time.Second)
	if a.status != codec.StatusBizError || string(a.body) != msgTooLarge {
		t.Fatalf("%v %q, want BIZ_ERROR %q", a.status, a.body, msgTooLarge)
	}
	if el := time.Since(t0); el > 500*time.Millisecond {
		t.Fatalf("answer after %v: the body was not cut at MaxBody", el)
	}
}

func TestRefusedIsBizUnavailable(t *testing.T) {
	d, c := start(t, []Business{{ID: 1, URL: "http://" + closedAddr(t) + "/rpc"}}, Options{})
	t0 := time.Now()
	mustSubmit(t, d, 1, 1, nil, []byte("x"))
	a := c.wait(t, 1, 2*time.Second)
	if a.status != codec.StatusBizUnavailable {
		t.Fatalf("%v, want BIZ_UNAVAILABLE", a.status)
	}
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("refusal took %v", el)
	}
}

func TestBadIdentityIsNotSent(t *testing.T) {
	var calls atomic.Int32
	srv := backend(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	d, c := start(t, []Business{{ID: 1, URL: srv.URL}}, Options{FailureThreshold: 1})
	req := Get()
	req.Biz, req.Seq, req.Device, req.Reply = 1, 1, "dev\r\nX-Admin: 1", c
	if s := d.Submit(req); s != codec.StatusOK {
		t.Fatalf("Submit = %v", s)
	}
	a := c.wait(t, 1, 2*time.Second)
	if a.status != codec.StatusInternal || string(a.body) != msgBadIdentity {
		t.Fatalf("%v %q, want INTERNAL %q", a.status, a.body, msgBadIdentity)
	}
	if calls.Load() != 0 || statsOf(t, d, 1).Breaker != "closed" {
		t.Fatalf("calls %d breaker %s: the request reached the backend or tripped the breaker", calls.Load(), statsOf(t, d, 1).Breaker)
	}
}
