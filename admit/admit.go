// Package admit holds the per-source limits on new connections: how many
// connections one source address may hold, how many of those may still be
// in the TLS handshake or login phase, and how fast it may connect.
//
// A node behind a load balancer sees the balancer's address unless the
// balancer preserves client addresses (direct server return, or a
// transparent proxy): per-source limits are only meaningful then, which is
// why the conns and rate limits are off by default. The cap on connections
// still logging in is on by default: it is what keeps one address from
// filling the node with handshakes that never finish.
//
// A source is an IPv4 address, or an IPv6 /64 (one subscriber's prefix:
// an IPv6 client gets a whole /64 and can pick any address in it). State
// is kept only for sources that hold a counted connection or whose connect
// rate bucket is not full yet, so an idle node keeps nothing here for its
// logged-in devices unless the per-source connection cap is on.
package admit

import (
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Options are the limits; a zero field turns its limit off.
type Options struct {
	MaxConns    int     // connections per source
	MaxUnauth   int     // connections per source not yet logged in
	ConnectRate float64 // new connections per second per source
}

// Verdict is Admit's answer.
type Verdict uint8

const (
	OK            Verdict = iota // admitted and counted
	TooManyConns                 // the source holds MaxConns connections
	TooManyUnauth                // the source holds MaxUnauth connections not logged in
	TooFast                      // the source connects faster than ConnectRate
)

// Reason is what the refused client is told.
func (v Verdict) Reason() string {
	switch v {
	case TooManyConns, TooManyUnauth:
		return "too many connections from this address"
	case TooFast:
		return "connecting too fast from this address"
	}
	return ""
}

// Source identifies a client for the limits.
type Source [16]byte

// SourceOf is addr's source, false when addr is not an IP address.
func SourceOf(addr net.Addr) (Source, bool) {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		return Source{}, false
	}
	if !ip.IsValid() {
		return Source{}, false
	}
	ip = ip.Unmap()
	s := Source(ip.As16())
	if ip.Is6() {
		clear(s[8:]) // the /64
	}
	return s, true
}

const shards = 64

// sweepEvery is how often a shard drops sources that only kept a refilled
// rate bucket.
const sweepEvery = time.Second

// Limiter applies Options. Its methods are safe for concurrent use.
type Limiter struct {
	opts   Options
	burst  float32
	seed   maphash.Seed
	start  time.Time
	shards [shards]shard
}

type shard struct {
	mu    sync.Mutex
	m     map[Source]source
	swept int64 // milliseconds since start of the last sweep
}

type source struct {
	conns, unauth int32
	tokens        float32 // connect rate bucket
	refill        int64   // milliseconds since start of the last refill
}

// New returns a limiter, or nil when every limit is off (a nil Limiter
// admits everything).
func New(opts Options) *Limiter {
	if opts.MaxConns <= 0 && opts.MaxUnauth <= 0 && opts.ConnectRate <= 0 {
		return nil
	}
	l := &Limiter{opts: opts, seed: maphash.MakeSeed(), start: time.Now(), burst: float32(max(1, opts.ConnectRate))}
	for i := range l.shards {
		l.shards[i].m = map[Source]source{}
	}
	return l
}

func (l *Limiter) shard(s Source) *shard {
	return &l.shards[maphash.Comparable(l.seed, s)%shards]
}

// Admit counts a new connection from src, not logged in, or refuses it.
// Every OK must be matched by Closed, and by LoggedIn before it if the
// connection logs in.
func (l *Limiter) Admit(src Source, now time.Time) Verdict {
	if l == nil {
		return OK
	}
	ms := now.Sub(l.start).Milliseconds()
	sh := l.shard(src)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ms-sh.swept >= sweepEvery.Milliseconds() {
		sh.sweep(l, ms)
	}
	s, ok := sh.m[src]
	if !ok {
		s = source{tokens: l.burst, refill: ms}
	}
	switch {
	case l.opts.MaxConns > 0 && int(s.conns) >= l.opts.MaxConns:
		return TooManyConns
	case l.opts.MaxUnauth > 0 && int(s.unauth) >= l.opts.MaxUnauth:
		return TooManyUnauth
	}
	if l.opts.ConnectRate > 0 {
		s.tokens = min(l.burst, s.tokens+float32(ms-s.refill)*float32(l.opts.ConnectRate)/1000)
		s.refill = ms
		if s.tokens < 1 {
			sh.m[src] = s
			return TooFast
		}
		s.tokens--
	}
	s.conns++
	s.unauth++
	sh.m[src] = s
	return OK
}

// LoggedIn moves a connection admitted from src out of the login phase.
func (l *Limiter) LoggedIn(src Source) {
	if l == nil {
		return
	}
	l.update(src, func(s *source) { s.unauth-- })
}

// Closed uncounts a connection admitted from src; loggedIn says whether
// LoggedIn was called for it.
func (l *Limiter) Closed(src Source, loggedIn bool) {
	if l == nil {
		return
	}
	l.update(src, func(s *source) {
		s.conns--
		if !loggedIn {
			s.unauth--
		}
	})
}

func (l *Limiter) update(src Source, f func(*source)) {
	sh := l.shard(src)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, ok := sh.m[src]
	if !ok {
		return
	}
	f(&s)
	if s.conns <= 0 && s.unauth <= 0 && l.opts.ConnectRate <= 0 {
		delete(sh.m, src)
		return
	}
	sh.m[src] = s
}

// sweep drops the shard's sources that hold no connection and whose
// bucket has refilled; sh.mu is held.
func (sh *shard) sweep(l *Limiter, ms int64) {
	sh.swept = ms
	for k, s := range sh.m {
		if s.conns > 0 || s.unauth > 0 {
			continue
		}
		if l.opts.ConnectRate <= 0 || s.tokens+float32(ms-s.refill)*float32(l.opts.ConnectRate)/1000 >= l.burst {
			delete(sh.m, k)
		}
	}
}

// Sources is how many sources the limiter keeps state for.
func (l *Limiter) Sources() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
