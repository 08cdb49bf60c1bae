package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// linkHandler records what a node was asked over its links.
type linkHandler struct {
	mu     sync.Mutex
	local  map[string]bool
	got    []string
	hold   chan struct{} // when set, Deliver answers only once it closes
	kicked chan string
}

func (h *linkHandler) Deliver(devices []string, frame []byte, cached bool, mark string, answer func(missing, moved []string)) {
	var missing []string
	h.mu.Lock()
	for _, d := range devices {
		if !h.local[d] {
			missing = append(missing, d)
			continue
		}
		h.got = append(h.got, fmt.Sprintf("%s %s %v", d, frame, cached))
	}
	hold := h.hold
	h.mu.Unlock()
	if hold != nil {
		go func() { <-hold; answer(missing, nil) }()
		return
	}
	answer(missing, nil)
}

func (h *linkHandler) DeliverGroup(string, []byte) int { return 0 }
func (h *linkHandler) DeliverAll([]byte) int           { return 0 }
func (h *linkHandler) Members(string, []string, bool)  {}
func (h *linkHandler) log() []string                   { h.mu.Lock(); defer h.mu.Unlock(); return slices.Clone(h.got) }
func (h *linkHandler) setHold(c chan struct{})         { h.mu.Lock(); h.hold = c; h.mu.Unlock() }
func newLinkHandler(devices ...string) *linkHandler {
	h := &linkHandler{local: map[string]bool{}, kicked: make(chan string, 16)}
	for _, d := range devices {
		h.local[d] = true
	}
	return h
}

func (h *linkHandler) Kick(ctx context.Context, device string, conn uint64, status uint16, reason string, settle bool) bool {
	h.kicked <- fmt.Sprintf("%s %d %d %s %v", device, conn, status, reason, settle)
	return h.local[device]
}

// directory is the registry's view of where links are, for tests.
type directory struct {
	mu sync.Mutex
	m  map[string][2]string // node → addr, instance
}

func (d *directory) set(node, addr, instance string) {
	d.mu.Lock()
	d.m[node] = [2]string{addr, instance}
	d.mu.Unlock()
}

func (d *directory) addr(node string) (string, string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.m[node]
	return v[0], v[1], ok
}

func newTestLinks(t testing.TB, dir *directory, node string, key string, h Handler) *Links {
	t.Helper()
	l := NewLinks(LinkConfig{Node: node, Instance: node + "-1", Key: []byte(key), Addr: dir.addr, ReplyTimeout: 300 * time.Millisecond}, h)
	if err := l.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	l.Serve()
	t.Cleanup(func() { l.Close() })
	dir.set(node, l.Addr(), node+"-1")
	return l
}

func TestLinkPushAndKick(t *testing.T) {
	dir := &directory{m: map[string][2]string{}}
	ha := newLinkHandler("d1", "d2")
	newTestLinks(t, dir, "a", "key", ha)
	b := newTestLinks(t, dir, "b", "key", newLinkHandler())

	r, err := b.Send(t.Context(), "a", Msg{Kind: KindPush, Devices: []string{"d1", "x", "d2"}, Frame: []byte("f1"), Cached: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Missing, []string{"x"}) || r.Node != "a" {
		t.Errorf("reply = %+v, want node a missing [x]", r)
	}
	if got, want := ha.log(), []string{"d1 f1 true", "d2 f1 true"}; !slices.Equal(got, want) {
		t.Errorf("a delivered %q, want %q", got, want)
	}
	r, err = b.Send(t.Context(), "a", Msg{Kind: KindKick, Device: "d1", Conn: 7, Status: 3, Reason: "dup", Settle: true})
	if err != nil || r.Count != 1 {
		t.Errorf("kick: reply %+v, err %v; want count 1", r, err)
	}
	if got := <-ha.kicked; got != "d1 7 3 dup true" {
		t.Errorf("kick carried out as %q", got)
	}
	if s := b.Stats(); s.Dials.Load() != 1 || s.Sent.Load() != 2 || s.Answered.Load() != 2 {
		t.Errorf("stats: dials %d sent %d answered %d; want 1 2 2", s.Dials.Load(), s.Sent.Load(), s.Answered.Load())
	}
}

// TestLinkManyInFlight sends from many goroutines at once: every request
// gets its own answer, in order per device.
func TestLinkManyInFlight(t *testing.T) {
	dir := &directory{m: map[string][2]string{}}
	var devices []string
	for i := range 64 {
		devices = append(devices, fmt.Sprint("d", i))
	}
	ha := newLinkHandler(devices...)
	newTestLinks(t, dir, "a", "key", ha)
	b := newTestLinks(t, dir, "b", "key", newLinkHandler())
	var wg sync.WaitGroup
	errs := make(chan error, len(devices))
	for i, d := range devices {
		wg.Go(func() {
			for j := range 50 {
				ask := []string{d}
				if j%2 == 0 {
					ask = append(ask, fmt.Sprint("gone", i))
				}
				r, err := b.Send(t.Context(), "a", Msg{Kind: KindPush, Devices: ask, Frame: fmt.Appendf(nil, "%d", j)})
				if err != nil {
					errs <- err
					return
				}
				if want := len(ask) - 1; len(r.Missing) != want {
					errs <- fmt.Errorf("%s push %d: missing %v, want %d", d, j, r.Missing, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	per := map[string][]string{}
	for _, s := range ha.log() {
		var d, f, c string
		fmt.Sscan(s, &d, &f, &c)
		per[d] = append(per[d], f)
	}
	for _, d := range devices {
		if len(per[d]) != 50 {
			t.Fatalf("%s got %d pushes, want 50", d, len(per[d]))
		}
		for j, f := range per[d] {
			if f != fmt.Sprint(j) {
				t.Fatalf("%s: push %d was %s: out of order", d, j, f)
			}
		}
	}
	if n := b.Stats().Dials.Load(); n != 1 {
		t.Errorf("%d dials for one node, want 1", n)
	}
}

// TestLinkRefusesStrangers: a link is refused, and Send says ErrNoLink so
// the caller goes through the bus, when the keys differ, when another
// instance listens at the announced address, and when no address is
// announced.
func TestLinkRefusesStrangers(t *testing.T) {
	dir := &directory{m: map[string][2]string{}}
	ha := newLinkHandler("d")
	a := newTestLinks(t, dir, "a", "key", ha)
	b := newTestLinks(t, dir, "b", "other key", newLinkHandler())
	push := Msg{Kind: KindPush, Devices: []string{"d"}, Frame: []byte("f")}
	if _, err := b.Send(t.Context(), "a", push); !errors.Is(err, ErrNoLink) {
		t.Errorf("another key: err %v, want ErrNoLink", err)
	}
	c := newTestLinks(t, dir, "c", "key", newLinkHandler())
	dir.set("a", a.Addr(), "a-2") // a restarted, says the registry; a-1 still answers there
	if _, err := c.Send(t.Context(), "a", push); !errors.Is(err, ErrNoLink) {
		t.Errorf("another instance: err %v, want ErrNoLink", err)
	}
	if _, err := c.Send(t.Context(), "nobody", push); !errors.Is(err, ErrNoLink) {
		t.Errorf("no address: err %v, want ErrNoLink", err)
	}
	if got := ha.log(); len(got) != 0 {
		t.Errorf("a stranger's push was delivered: %q", got)
	}
	if n := c.Stats().Fallbacks.Load(); n != 2 {
		t.Errorf("fallbacks = %d, want 2", n)
	}
}

// TestLinkNodeDies: requests waiting when the other node goes get
// ErrNoReply (they were written: it may have delivered them); later
// ones ErrNoLink, without a dial per request.
func TestLinkNodeDies(t *testing.T) {
	dir := &directory{m: map[string][2]string{}}
	ha := newLinkHandler("d")
	a := newTestLinks(t, dir, "a", "key", ha)
	b := newTestLinks(t, dir, "b", "key", newLinkHandler())
	push := Msg{Kind: KindPush, Devices: []string{"d"}, Frame: []byte("f")}
	if _, err := b.Send(t.Context(), "a", push); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	defer close(hold)
	ha.setHold(hold)
	errc := make(chan error, 1)
	go func() {
		_, err := b.Send(context.Background(), "a", push)
		errc <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(ha.log()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second push never arrived")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	a.Close()
	if err := <-errc; !errors.Is(err, ErrNoReply) {
		t.Errorf("in flight when the node died: err %v, want ErrNoReply", err)
	}
	for range 3 {
		if _, err := b.Send(t.Context(), "a", push); !errors.Is(err, ErrNoLink) {
			t.Errorf("after the node died: err %v, want ErrNoLink", err)
		}
	}
	if n := b.Stats().Dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2 (the first link, one redial within redialAfter)", n)
	}
}

// handshake opens a link to addr as node z, by hand.
func handshake(t *testing.T, addr, node, instance string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	mine := NewLinks(LinkConfig{Node: "z", Instance: "z-1", Key: []byte("key")}, nil)
	hello := append(append([]byte{}, linkMagic...), newNonce()...)
	hello = appendString(appendString(hello, node), instance)
	if err := writeFrame(c, hello); err != nil {
		t.Fatal(err)
	}
	b, err := readFrame(r)
	if err != nil {
		t.Fatal(err)
	}
	d := decoder{b: b}
	theirs := d.bytes()
	proof := appendString(appendString(nil, "z"), "z-1")
	proof = appendBytes(proof, mine.mac('c', theirs, "z", "z-1"))
	if err := writeFrame(c, proof); err != nil {
		t.Fatal(err)
	}
	return c, r
}

// TestLinkClosesOnGarbage: a peer that passed the handshake and then
// sends what is not a request loses its link, and the node serving it
// goes on serving others.
func TestLinkClosesOnGarbage(t *testing.T) {
	dir := &directory{m: map[string][2]string{}}
	ha := newLinkHandler("d")
	a := newTestLinks(t, dir, "a", "key", ha)
	reply := (&envelope{kind: kindReply, id: 1, node: "z", instance: "z-1", to: "a-1"}).encode()
	for name, raw := range map[string][]byte{
		"unknown kind": {0, 0, 0, 3, 0xee, 1, 2},
		"a reply":      append([]byte{0, 0, 0, byte(len(reply))}, reply...),
		"oversized":    {0xff, 0xff, 0xff, 0xff},
	} {
		c, r := handshake(t, a.Addr(), "a", "a-1")
		if _, err := c.Write(raw); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := r.ReadByte()
		if ne, ok := err.(net.Error); err == nil || (ok && ne.Timeout()) {
			t.Errorf("%s: the link stayed open", name)
		}
	}
	b := newTestLinks(t, dir, "b", "key", newLinkHandler())
	if _, err := b.Send(t.Context(), "a", Msg{Kind: KindPush, Devices: []string{"d"}, Frame: []byte("ok")}); err != nil {
		t.Errorf("another node after the garbage: %v", err)
	}
	if got := ha.log(); !slices.Equal(got, []string{"d ok false"}) {
		t.Errorf("delivered %q, want only the good push", got)
	}
}

// FuzzLinkHandshake feeds the served end of the handshake arbitrary
// hellos: it never panics, and only a hello with the right proof passes.
func FuzzLinkHandshake(f *testing.F) {
	good := append(append([]byte{}, linkMagic...), make([]byte, nonceSize)...)
	good = appendString(appendString(good, "a"), "a-1")
	f.Add(good, []byte{})
	f.Add([]byte("LLLINK1\n"), []byte{1, 2, 3})
	f.Add([]byte{}, []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, hello, proof []byte) {
		l := NewLinks(LinkConfig{Node: "a", Instance: "a-1", Key: []byte("key")}, newLinkHandler())
		srv, cli := net.Pipe()
		defer srv.Close()
		defer cli.Close()
		go func() {
			_ = writeFrame(cli, hello)
			_, _ = readFrame(bufio.NewReader(cli))
			_ = writeFrame(cli, proof)
		}()
		_ = srv.SetDeadline(time.Now().Add(time.Second))
		if _, err := l.greet(srv, bufio.NewReader(srv)); err == nil {
			t.Fatalf("a hello with proof %x passed without the key's mac", proof)
		}
	})
}

// BenchmarkLinkSend is one unicast push request and its answer over a
// loopback link, many in flight (b.RunParallel): what a cross-node push
// adds to a local one, besides the HTTP call.
func BenchmarkLinkSend(b *testing.B) {
	dir := &directory{m: map[string][2]string{}}
	newTestLinks(b, dir, "a", "key", newLinkHandler())
	s := newTestLinks(b, dir, "b", "key", newLinkHandler())
	m := Msg{Kind: KindPush, Devices: []string{"device-0001"}, Frame: make([]byte, 64), Cached: true}
	if _, err := s.Send(b.Context(), "a", m); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Send(context.Background(), "a", m); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
