package admit

import (
	"net"
	"sync"
	"testing"
	"time"
)

func src(t *testing.T, ip string) Source {
	t.Helper()
	s, ok := SourceOf(&net.TCPAddr{IP: net.ParseIP(ip), Port: 1234})
	if !ok {
		t.Fatalf("SourceOf(%s) failed", ip)
	}
	return s
}

func TestSourceOf(t *testing.T) {
	if src(t, "10.0.0.1") == src(t, "10.0.0.2") {
		t.Error("two IPv4 addresses share a source")
	}
	if src(t, "10.0.0.1") != src(t, "::ffff:10.0.0.1") {
		t.Error("an IPv4-mapped IPv6 address is not its IPv4 address")
	}
	if src(t, "2001:db8:1:2::1") != src(t, "2001:db8:1:2:ffff::9") {
		t.Error("two addresses of one IPv6 /64 are different sources")
	}
	if src(t, "2001:db8:1:2::1") == src(t, "2001:db8:1:3::1") {
		t.Error("two IPv6 /64s share a source")
	}
	if _, ok := SourceOf(&net.UnixAddr{Name: "/tmp/x", Net: "unix"}); ok {
		t.Error("a Unix address has a source")
	}
}

func TestNilWhenOff(t *testing.T) {
	l := New(Options{})
	if l != nil {
		t.Fatal("New with every limit off is not nil")
	}
	// A nil Limiter admits everything.
	if v := l.Admit(Source{}, time.Now()); v != OK {
		t.Fatalf("nil Limiter: %v", v)
	}
	l.LoggedIn(Source{})
	l.Closed(Source{}, true)
}

func TestUnauthCap(t *testing.T) {
	l := New(Options{MaxUnauth: 2})
	now := time.Now()
	a, b := src(t, "10.0.0.1"), src(t, "10.0.0.2")
	for i := range 2 {
		if v := l.Admit(a, now); v != OK {
			t.Fatalf("connection %d: %v", i, v)
		}
	}
	if v := l.Admit(a, now); v != TooManyUnauth {
		t.Fatalf("third connection still logging in: %v, want TooManyUnauth", v)
	}
	if v := l.Admit(b, now); v != OK {
		t.Fatalf("another source: %v", v)
	}
	// One logs in: a new one fits; the logged-in one is not counted.
	l.LoggedIn(a)
	if v := l.Admit(a, now); v != OK {
		t.Fatalf("after a login: %v", v)
	}
	l.Closed(a, true)
	l.Closed(a, false)
	l.Closed(a, false)
	l.Closed(b, false)
	if n := l.Sources(); n != 0 {
		t.Fatalf("%d sources kept after every connection closed", n)
	}
}

func TestConnCap(t *testing.T) {
	l := New(Options{MaxConns: 3})
	now := time.Now()
	a := src(t, "10.0.0.1")
	for i := range 3 {
		if v := l.Admit(a, now); v != OK {
			t.Fatalf("connection %d: %v", i, v)
		}
		l.LoggedIn(a)
	}
	if v := l.Admit(a, now); v != TooManyConns {
		t.Fatalf("fourth: %v, want TooManyConns", v)
	}
	if TooManyConns.Reason() == "" || TooFast.Reason() == "" {
		t.Fatal("a refusal without a reason")
	}
	l.Closed(a, true)
	if v := l.Admit(a, now); v != OK {
		t.Fatalf("after a close: %v", v)
	}
}

func TestConnectRate(t *testing.T) {
	l := New(Options{ConnectRate: 10})
	now := time.Now()
	a := src(t, "10.0.0.1")
	for i := range 10 { // the burst
		if v := l.Admit(a, now); v != OK {
			t.Fatalf("connect %d: %v", i, v)
		}
		l.Closed(a, false)
	}
	if v := l.Admit(a, now); v != TooFast {
		t.Fatalf("connect over the burst: %v, want TooFast", v)
	}
	if v := l.Admit(src(t, "10.0.0.2"), now); v != OK {
		t.Fatalf("another source: %v", v)
	}
	// A tenth of a second later one more token has come.
	later := now.Add(100 * time.Millisecond)
	if v := l.Admit(a, later); v != OK {
		t.Fatalf("after 100ms: %v", v)
	}
	if v := l.Admit(a, later); v != TooFast {
		t.Fatalf("second connect after 100ms: %v, want TooFast", v)
	}
	l.Closed(a, false)
	// The sweep drops sources whose bucket has refilled and that hold
	// nothing, so the state does not grow with the sources ever seen. A
	// shard sweeps when a connect comes to it sweepEvery after its last
	// sweep: find a source in a's shard.
	if n := l.Sources(); n != 2 {
		t.Fatalf("%d sources kept, want 2 (their buckets are not full)", n)
	}
	other := Source{15: 1}
	for i := 0; l.shard(other) != l.shard(a); i++ {
		other = Source{0: byte(i), 1: byte(i >> 8), 15: 1}
	}
	l.Admit(other, now.Add(time.Hour))
	sh := l.shard(a)
	sh.mu.Lock()
	_, kept := sh.m[a]
	sh.mu.Unlock()
	if kept {
		t.Fatal("a refilled, idle source survived its shard's sweep")
	}
}

func TestConcurrentCounts(t *testing.T) {
	l := New(Options{MaxUnauth: 1 << 20, MaxConns: 1 << 20})
	a := src(t, "10.0.0.1")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				if l.Admit(a, time.Now()) != OK {
					t.Error("refused")
					return
				}
				login := i%2 == 0
				if login {
					l.LoggedIn(a)
				}
				l.Closed(a, login)
			}
		}()
	}
	wg.Wait()
	if n := l.Sources(); n != 0 {
		t.Fatalf("%d sources left", n)
	}
}
