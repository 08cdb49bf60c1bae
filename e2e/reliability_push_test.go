package e2e

// Fault-injection tests of docs/reliability.md, part 2: the downstream
// side. A client that stops reading, devices that disconnect and resume,
// and an events endpoint that is down.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/metrics"
)

// dialTinyWindow dials with a 4 KiB receive buffer set before connect, so
// the kernel cannot hide a client that never reads behind megabytes of
// socket buffer.
func dialTinyWindow(t *testing.T, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc}
}

// push sends a unicast push and returns the API's answer.
func (s *server) push(devices []string, data string, extra map[string]any) (delivered int, offline []string) {
	s.t.Helper()
	body := map[string]any{"devices": devices, "biz": 9, "data": data}
	for k, v := range extra {
		body[k] = v
	}
	var res struct {
		Delivered int      `json:"delivered"`
		Offline   []string `json:"offline"`
	}
	if code := s.api("POST", "/v1/push", body, &res); code != 200 {
		s.t.Fatalf("push: status %d", code)
	}
	return res.Delivered, res.Offline
}

// waitOffline waits until the gateway no longer routes device.
func (s *server) waitOffline(device string) {
	s.t.Helper()
	checkFor(s.t, 5*time.Second, 10*time.Millisecond, func() error {
		var info struct{ Online bool }
		if s.api("GET", "/v1/devices/"+device, nil, &info); info.Online {
			return fmt.Errorf("%s still online", device)
		}
		return nil
	})
}

// expectPush reads the next frame and checks it is PUSH seq with body.
func (c *client) expectPush(seq uint32, body string) codec.Frame {
	c.t.Helper()
	f := c.read(5 * time.Second)
	if f.Op != codec.OpPush || f.Seq != seq || string(f.Body) != body {
		c.t.Fatalf("got %v seq %d body %q status %v, want PUSH seq %d %q", f.Op, f.Seq, f.Body, f.Status, seq, body)
	}
	return f
}

// expectNothing checks the connection has nothing queued: the next frame
// is the PONG to a PING sent now.
func (c *client) expectNothing() {
	c.t.Helper()
	c.send(codec.Header{Op: codec.OpPing, Seq: 0xABCD}, nil, nil)
	if f := c.read(5 * time.Second); f.Op != codec.OpPong || f.Seq != 0xABCD {
		c.t.Fatalf("got %v seq %d body %q before the PONG", f.Op, f.Seq, f.Body)
	}
}

// TestReliabilitySlowConsumer: a group member that never reads gets its
// output queue bounded by -max-pending, is closed as a slow consumer and
// counted, while another member receives every push in order and the push
// API never waits for the slow reader. The episode runs twice: the first
// warms the node up (under the race detector RSS carries a large fixed
// overhead), the second must grow the node's memory by far less than it
// pushes. Finally the slow device resumes and gets what it was handed but
// never read.
func TestReliabilitySlowConsumer(t *testing.T) {
	evs := &eventLog{}
	sink := httptest.NewServer(evs)
	defer sink.Close()
	const maxPending = 65536
	s := startServer(t, "-max-pending", itoa(maxPending), "-events-url", sink.URL, "-pprof", "open") // liveHeap's GC
	fast, _ := loggedIn(t, s, "dev-fast", "live")

	const pushes, size = 2000, 16384
	total := int64(pushes * size)
	fastSeq := uint32(0)
	var lastSlowRead uint32
	var lastSlowDelivered int
	var warmRSS, peakGrowth, warmLive, liveGrowth int64
	for round := 0; round < 2; round++ {
		dev := "dev-slow-" + itoa(round)
		slow := dialTinyWindow(t, s.TCP)
		if ack := slow.login(token(t, dev, time.Hour, "live")); ack.Status != codec.StatusOK {
			t.Fatalf("slow login: %v", ack.Status)
		}

		// The fast member reads in its own goroutine and checks the order.
		fastDone := make(chan error, 1)
		got := make([]bool, pushes)
		go func(first uint32) {
			for n := 0; n < pushes; n++ {
				f, err := fast.tryRead(10 * time.Second)
				if err != nil {
					fastDone <- fmt.Errorf("fast member after %d pushes: %w", n, err)
					return
				}
				if f.Op != codec.OpPush || f.Seq != first+uint32(n) || len(f.Body) != size {
					fastDone <- fmt.Errorf("fast member push %d: %v seq %d len %d, want seq %d", n, f.Op, f.Seq, len(f.Body), first+uint32(n))
					return
				}
				i, err := strconv.Atoi(string(bytes.TrimRight(f.Body[:8], " ")))
				if err != nil || i < 0 || i >= pushes || got[i] {
					fastDone <- fmt.Errorf("fast member push %d: bad or repeated index %q", n, f.Body[:8])
					return
				}
				got[i] = true
			}
			fastDone <- nil
		}(fastSeq + 1)
		fastSeq += uint32(pushes)

		base := s.snapshot()
		var peakRSS atomic.Int64
		peakRSS.Store(base.RSS)
		stopSampling := make(chan struct{})
		var sampling sync.WaitGroup
		sampling.Add(1)
		go func() {
			defer sampling.Done()
			for {
				select {
				case <-stopSampling:
					return
				case <-time.After(50 * time.Millisecond):
				}
				var st snap
				if s.apiNoFail("GET", "/v1/stats", &st) == nil && st.RSS > peakRSS.Load() {
					peakRSS.Store(st.RSS)
				}
			}
		}()

		// Four publishers; each push's body starts with its index.
		var delivered, slowestCall atomic.Int64
		var pub sync.WaitGroup
		start := time.Now()
		const publishers = 4
		for p := 0; p < publishers; p++ {
			pub.Add(1)
			go func(p int) {
				defer pub.Done()
				data := make([]byte, size)
				for k := range data {
					data[k] = 'a' + byte(k%26)
				}
				for i := p; i < pushes; i += publishers {
					copy(data, fmt.Sprintf("%-8d", i))
					var res struct{ Delivered int }
					t0 := time.Now()
					if code := s.api("POST", "/v1/groups/live/push", map[string]any{"biz": 9, "data": string(data)}, &res); code != 200 {
						t.Errorf("group push: status %d", code)
						return
					}
					if d := int64(time.Since(t0)); d > slowestCall.Load() {
						slowestCall.Store(d)
					}
					delivered.Add(int64(res.Delivered))
				}
			}(p)
		}
		pub.Wait()
		pushTime := time.Since(start)
		if err := <-fastDone; err != nil {
			t.Fatal(err)
		}
		close(stopSampling)
		sampling.Wait()

		// The slow member reads whatever the kernel held, then its KICK
		// (written once the socket takes it), then the close.
		slowRead, kicked, lastSeq := 0, false, uint32(0)
		for {
			f, err := slow.tryRead(5 * time.Second)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("slow consumer still open after %d pushes read", slowRead)
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("slow consumer read error: %v", err)
				}
				break
			}
			switch {
			case f.Op == codec.OpPush && f.Seq == lastSeq+1:
				slowRead++
				lastSeq = f.Seq
			case f.Op == codec.OpKick && f.Status == codec.StatusSlowConsumer:
				kicked = true
			default:
				t.Fatalf("slow consumer got %v %v seq %d after seq %d", f.Op, f.Status, f.Seq, lastSeq)
			}
		}
		slowDelivered := int(delivered.Load()) - pushes
		t.Logf("round %d: %d pushes (%d MiB) in %v, slowest API call %v; slow member: %d delivered, %d read before the close (KICK readable: %v); RSS %d MiB, peak growth %d KiB",
			round, pushes, total>>20, pushTime, time.Duration(slowestCall.Load()), slowDelivered, slowRead, kicked, base.RSS>>20, (peakRSS.Load()-base.RSS)>>10)
		if !kicked {
			t.Errorf("round %d: the slow member read %d pushes and then no KICK(SLOW_CONSUMER)", round, slowRead)
		}
		if slowDelivered < 0 || slowDelivered >= pushes/2 {
			t.Errorf("round %d: the slow member was handed %d of %d pushes: it was not cut off early", round, slowDelivered, pushes)
		}
		if d := time.Duration(slowestCall.Load()); d > time.Second {
			t.Errorf("round %d: a group push call took %v: the slow reader stalled the API", round, d)
		}
		st := s.snapshot()
		if q, ok := st.queue("downstream_blocked_conns"); !ok || q.Dropped != uint64(round+1) {
			t.Errorf("round %d: downstream_blocked_conns %+v, want dropped %d", round, q, round+1)
		}
		live := s.liveHeap()
		t.Logf("round %d: live heap after GC %d KiB", round, live>>10)
		if round == 0 {
			warmRSS, warmLive = st.RSS, live
		} else {
			peakGrowth, liveGrowth = peakRSS.Load()-warmRSS, live-warmLive
		}
		lastSlowRead, lastSlowDelivered = lastSeq, slowDelivered
	}

	// Had the slow consumer's queue been unbounded, it would have held
	// nearly everything pushed (29 of 32 MiB) on top of the node's own
	// churn. The live heap is the precise measure (it grows by the new
	// device's recovery ring, 64 pushes, about 1 MiB); RSS, inflated by
	// the race detector's shadow memory, gets a looser bound that an
	// unbounded queue would still break.
	if peakGrowth > total {
		t.Errorf("after warm-up, RSS grew by %d KiB while %d KiB were pushed past a slow consumer, want less", peakGrowth>>10, total>>10)
	}
	if liveGrowth > total/8 {
		t.Errorf("after warm-up, the live heap grew by %d KiB while %d KiB were pushed past a slow consumer, want under an eighth", liveGrowth>>10, total>>10)
	}
	st := s.snapshot()
	if st.Kicks["SLOW_CONSUMER"] != 2 {
		t.Errorf("kicks %v: want SLOW_CONSUMER 2", st.Kicks)
	}
	if rtt := fast.ping(1); rtt > fastBound {
		t.Errorf("fast member PONG after %v", rtt)
	}

	// The cut-off device resumes from the last push it read: every push
	// it was handed and did not read (those dropped from its outbox with
	// the connection) is redelivered in order, and resumed says whether
	// they all were still kept (-recover-size 64).
	c := dial(t, s.TCP)
	ack := c.login(token(t, "dev-slow-1", time.Hour), "resume", strconv.Itoa(int(lastSlowRead)))
	missed := lastSlowDelivered - int(lastSlowRead)
	wantResumed, from := "1", lastSlowRead+1
	if missed > 64 {
		wantResumed, from = "0", uint32(lastSlowDelivered-64+1)
	}
	if ack.Status != codec.StatusOK || metaString(ack, "resumed") != wantResumed {
		t.Fatalf("slow consumer resume from %d of %d: %v resumed=%q, want %s", lastSlowRead, lastSlowDelivered, ack.Status, metaString(ack, "resumed"), wantResumed)
	}
	for want := from; want <= uint32(lastSlowDelivered); want++ {
		f := c.read(5 * time.Second)
		if f.Op != codec.OpPush || f.Seq != want || len(f.Body) != size {
			t.Fatalf("redelivered: %v seq %d, want PUSH seq %d", f.Op, f.Seq, want)
		}
	}
	t.Logf("slow device resumed from %d: %d pushes redelivered, resumed=%s", lastSlowRead, lastSlowDelivered-int(from)+1, wantResumed)
	c.expectNothing()

	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if e := evs.find("disconnect", "dev-slow-0"); e == nil || e["reason"] != "SLOW_CONSUMER" {
			return fmt.Errorf("disconnect event of the slow consumer: %v, want reason SLOW_CONSUMER", e)
		}
		return nil
	})
}

// TestReliabilitySendBuffer: with -sndbuf the kernel holds little for a
// device that stops reading, so -max-pending starts counting almost at
// once. 640 KiB of pushes close the stalled device as a slow consumer,
// and it can read at most a few of them first; with the kernel's
// autotuning, which lets a loopback socket's send buffer grow to
// tcp_wmem's maximum (4 MiB here), all of them fit in the kernel and the
// device stays open.
func TestReliabilitySendBuffer(t *testing.T) {
	const sndbuf, maxPending, size, pushes = 16384, 65536, 16384, 40
	s := startServer(t, "-sndbuf", itoa(sndbuf), "-max-pending", itoa(maxPending))
	slow := dialTinyWindow(t, s.TCP)
	if ack := slow.login(token(t, "dev-stalled", time.Hour)); ack.Status != codec.StatusOK {
		t.Fatalf("login: %v", ack.Status)
	}
	data := string(bytes.Repeat([]byte("s"), size))
	handed := 0
	for range pushes {
		delivered, _ := s.push([]string{"dev-stalled"}, data, nil)
		handed += delivered
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if q, ok := s.snapshot().queue("downstream_blocked_conns"); !ok || q.Dropped != 1 {
			return fmt.Errorf("downstream_blocked_conns %+v after %d KiB pushed, want the stalled device dropped", q, pushes*size>>10)
		}
		return nil
	})

	// What the device can still read is what the kernel held: the
	// gateway's send buffer (2 × -sndbuf) and the device's small receive
	// window, not megabytes.
	read := 0
	for {
		f, err := slow.tryRead(5 * time.Second)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("stalled device still open after reading %d pushes", read)
			}
			break
		}
		if f.Op == codec.OpPush {
			read++
		}
	}
	t.Logf("%d of %d pushes handed to the stalled device before its close, %d read from the kernel's buffers", handed, pushes, read)
	if most := (2*sndbuf + 2*4096*2) / size; read > most {
		t.Errorf("the stalled device read %d pushes of %d bytes after it stalled, want at most %d: the kernel held more than -sndbuf allows", read, size, most)
	}
	if handed >= pushes {
		t.Errorf("all %d pushes were handed to the stalled device: it was not cut off", pushes)
	}
}

// liveHeap makes the gateway collect garbage (GET /debug/pprof/heap?gc=1,
// so the node needs -pprof open) and returns its heap in use right after.
func (s *server) liveHeap() int64 {
	s.t.Helper()
	resp, err := http.Get(s.API + "/debug/pprof/heap?gc=1")
	if err != nil {
		s.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET /debug/pprof/heap?gc=1: %s (start the node with -pprof open)", resp.Status)
	}
	return s.snapshot().HeapInuse
}

// apiNoFail is a GET for background goroutines: errors are returned, not
// reported through t.
func (s *server) apiNoFail(method, path string, out any) error {
	req, err := http.NewRequest(method, s.API+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// TestReliabilityResumeAck: pushes with ACK_REQUIRED, a cumulative
// PUSH_ACK, a disconnect, pushes while offline (reported offline, kept),
// then resume: LOGIN_ACK resumed=1, the missed pushes in order with their
// id and flags, then new pushes with the next seq. Acknowledged pushes are
// dropped from the recovery buffer, so resuming from before the ack is
// reported as a gap.
func TestReliabilityResumeAck(t *testing.T) {
	s := startServer(t)
	const dev = "dev-ra"
	c, _ := loggedIn(t, s, dev)
	for i := 1; i <= 3; i++ {
		if d, _ := s.push([]string{dev}, "on-"+itoa(i), map[string]any{"ack": true, "id": "m" + itoa(i)}); d != 1 {
			t.Fatalf("online push delivered %d", d)
		}
		f := c.expectPush(uint32(i), "on-"+itoa(i))
		if f.Flags&codec.FlagAckRequired == 0 || metaString(f, "id") != "m"+itoa(i) {
			t.Fatalf("push %d: flags %x id %q", i, f.Flags, metaString(f, "id"))
		}
	}
	c.send(codec.Header{Op: codec.OpPushAck, Seq: 2}, nil, nil) // cumulative: 1 and 2
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if a := s.snapshot().Push.Acks; a != 1 {
			return fmt.Errorf("acks %d", a)
		}
		return nil
	})
	c.nc.Close()
	s.waitOffline(dev)
	for i := 4; i <= 6; i++ {
		if d, off := s.push([]string{dev}, "off-"+itoa(i), map[string]any{"ack": true, "id": "m" + itoa(i)}); d != 0 || len(off) != 1 || off[0] != dev {
			t.Fatalf("offline push: delivered %d offline %v, want reported offline", d, off)
		}
	}

	c2 := dial(t, s.TCP)
	ack := c2.login(token(t, dev, time.Hour), "resume", "3")
	if ack.Status != codec.StatusOK || metaString(ack, "resumed") != "1" {
		t.Fatalf("resume=3: %v resumed=%q, want OK resumed=1", ack.Status, metaString(ack, "resumed"))
	}
	for i := 4; i <= 6; i++ {
		f := c2.expectPush(uint32(i), "off-"+itoa(i))
		if f.Flags&codec.FlagAckRequired == 0 || metaString(f, "id") != "m"+itoa(i) {
			t.Errorf("recovered push %d lost its flags %x or id %q", i, f.Flags, metaString(f, "id"))
		}
	}
	s.push([]string{dev}, "new-7", nil)
	c2.expectPush(7, "new-7")
	c2.expectNothing()
	if st := s.snapshot(); st.Push.Recovered != 3 || st.Push.Offline != 3 {
		t.Errorf("recovered %d offline %d, want 3 and 3", st.Push.Recovered, st.Push.Offline)
	}
	c2.send(codec.Header{Op: codec.OpPushAck, Seq: 5}, nil, nil)
	c2.expectNothing() // the ack is processed before the PONG
	c2.nc.Close()
	s.waitOffline(dev)

	// Pushes 1..5 were acknowledged and dropped: a client claiming it only
	// has 1 is told of the gap and gets what is left, 6 and 7.
	c3 := dial(t, s.TCP)
	ack = c3.login(token(t, dev, time.Hour), "resume", "1")
	if metaString(ack, "resumed") != "0" {
		t.Fatalf("resume=1 after ack 5: resumed=%q, want 0", metaString(ack, "resumed"))
	}
	c3.expectPush(6, "off-6")
	c3.expectPush(7, "new-7")
	c3.expectNothing()
}

// TestReliabilityRecoverSize: with -recover-size 4, ten pushes while
// offline leave only the last four; resume says resumed=0 and redelivers
// exactly those, in order.
func TestReliabilityRecoverSize(t *testing.T) {
	s := startServer(t, "-recover-size", "4")
	const dev = "dev-rs"
	c, _ := loggedIn(t, s, dev)
	s.push([]string{dev}, "p1", nil)
	c.expectPush(1, "p1")
	c.nc.Close()
	s.waitOffline(dev)
	for i := 2; i <= 11; i++ {
		if d, off := s.push([]string{dev}, "p"+itoa(i), nil); d != 0 || len(off) != 1 {
			t.Fatalf("offline push %d: delivered %d offline %v", i, d, off)
		}
	}
	c2 := dial(t, s.TCP)
	ack := c2.login(token(t, dev, time.Hour), "resume", "1")
	if ack.Status != codec.StatusOK || metaString(ack, "resumed") != "0" {
		t.Fatalf("resume over the buffer: %v resumed=%q, want resumed=0", ack.Status, metaString(ack, "resumed"))
	}
	for i := 8; i <= 11; i++ {
		c2.expectPush(uint32(i), "p"+itoa(i))
	}
	c2.expectNothing()
	s.push([]string{dev}, "p12", nil)
	c2.expectPush(12, "p12")
	if r := s.snapshot().Push.Recovered; r != 4 {
		t.Errorf("recovered %d, want 4", r)
	}
}

// TestReliabilityRecoverTTL: with -recover-ttl 1s, a device offline
// longer than that loses its recovery state: pushes meanwhile are
// reported offline and not kept, resume says resumed=0 with nothing
// redelivered, and the seq restarts at 1.
func TestReliabilityRecoverTTL(t *testing.T) {
	s := startServer(t, "-recover-ttl", "1s")
	const dev = "dev-ttl"
	c, _ := loggedIn(t, s, dev)
	s.push([]string{dev}, "a", nil)
	s.push([]string{dev}, "b", nil)
	c.expectPush(1, "a")
	c.expectPush(2, "b")
	c.nc.Close()
	s.waitOffline(dev)
	// Within the TTL a push is kept...
	s.push([]string{dev}, "kept", nil)
	// The TTL passing is the input: were it not enforced, the resume below
	// would redeliver "kept".
	time.Sleep(1500 * time.Millisecond)
	// ...past it, a push is reported offline and not kept.
	if d, off := s.push([]string{dev}, "lost", nil); d != 0 || len(off) != 1 {
		t.Fatalf("push past the TTL: delivered %d offline %v", d, off)
	}
	c2 := dial(t, s.TCP)
	ack := c2.login(token(t, dev, time.Hour), "resume", "2")
	if ack.Status != codec.StatusOK || metaString(ack, "resumed") != "0" {
		t.Fatalf("resume past the TTL: %v resumed=%q, want resumed=0", ack.Status, metaString(ack, "resumed"))
	}
	c2.expectNothing()
	s.push([]string{dev}, "fresh", nil)
	c2.expectPush(1, "fresh")
	if r := s.snapshot().Push.Recovered; r != 0 {
		t.Errorf("recovered %d, want 0", r)
	}
}

// TestReliabilityDeadEventsEndpoint: with -events-url pointing at a
// closed port, the gateway keeps logging devices in and serving them,
// while the events wait in a bounded queue (65536, not a flag): past it
// they are dropped and counted, and /v1/stats shows the queue's length,
// capacity and drops.
func TestReliabilityDeadEventsEndpoint(t *testing.T) {
	s := startServer(t, "-events-url", "http://"+freePort(t)+"/events")
	watch, _ := loggedIn(t, s, "dev-ev-watch")
	const (
		queueCap = 65536 // events.Options.QueueSize default
		maxBatch = 500   // events.Options.MaxBatch default: the batch being retried
		workers  = 4
	)
	// Each login of a device that is already connected is a connect event
	// and, for the connection it replaces (DUPLICATE_LOGIN), a disconnect
	// event. The server closes the old connection first, so the client
	// leaves no TIME_WAIT behind and ephemeral ports are not exhausted.
	cycles := (queueCap+maxBatch)/(2*workers) + 1000
	var wg sync.WaitGroup
	var pongMax atomic.Int64
	stopPing, pingDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pingDone)
		for seq := uint32(1); ; seq++ {
			select {
			case <-stopPing:
				return
			case <-time.After(50 * time.Millisecond):
			}
			start := time.Now()
			watch.nc.SetDeadline(time.Now().Add(5 * time.Second))
			watch.nc.Write(codec.AppendFrame(nil, codec.Header{Op: codec.OpPing, Seq: seq}, nil, nil))
			if f, err := watch.tryRead(5 * time.Second); err != nil || f.Op != codec.OpPong {
				pongMax.Store(int64(time.Hour))
				return
			}
			if d := int64(time.Since(start)); d > pongMax.Load() {
				pongMax.Store(d)
			}
		}
	}()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tok := meta("token", token(t, fmt.Sprintf("dev-ev-%d", w), time.Hour))
			login := codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1}, tok, nil)
			var prev net.Conn
			for i := 0; i < cycles; i++ {
				nc, err := net.DialTimeout("tcp", s.TCP, 5*time.Second)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				c := &client{t: t, nc: nc}
				_, _ = nc.Write(login)
				f, err := c.tryRead(5 * time.Second)
				if err != nil || f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
					t.Errorf("login %d/%d: %v %v %v", w, i, f.Op, f.Status, err)
					return
				}
				if prev != nil {
					_ = prev.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, _ = io.Copy(io.Discard, prev) // KICK, then the server's close
					prev.Close()
				}
				prev = nc
			}
			prev.Close()
		}(w)
	}
	wg.Wait()
	close(stopPing)
	<-pingDone
	logins := workers * cycles
	events := uint64(1 + 2*logins) // the watcher's connect, then a connect and a disconnect per login
	t.Logf("%d logins in %v; slowest PONG meanwhile %v", logins, time.Since(start), time.Duration(pongMax.Load()))
	if d := time.Duration(pongMax.Load()); d > 500*time.Millisecond {
		t.Errorf("a PONG took %v while the events endpoint was down", d)
	}
	var q metrics.QueueStats
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		st := s.snapshot()
		qs, ok := st.queue("events")
		if !ok {
			return fmt.Errorf("no events queue in %v", st.Queues)
		}
		q = qs
		if st.Connections != 1 || st.Logins != uint64(logins+1) {
			return fmt.Errorf("connections %d logins %d", st.Connections, st.Logins)
		}
		// What is neither queued nor dropped is the one batch being
		// retried: at most MaxBatch events.
		if inBatch := events - uint64(q.Len) - q.Dropped; inBatch == 0 || inBatch > maxBatch {
			return fmt.Errorf("events %d, queued %d, dropped %d: %d in the retried batch", events, q.Len, q.Dropped, inBatch)
		}
		return nil
	})
	t.Logf("events queue: %+v", q)
	if q.Cap != queueCap || q.Len != queueCap {
		t.Errorf("events queue %+v: want it full at cap %d", q, queueCap)
	}
	if q.Dropped < events-queueCap-maxBatch {
		t.Errorf("dropped %d of %d events with a queue of %d", q.Dropped, events, queueCap)
	}
	if rtt := watch.ping(1 << 30); rtt > fastBound {
		t.Errorf("PONG after %v", rtt)
	}
}

// TestReliabilityDownQueue: -down-queue bounds each downstream writer,
// and with -down-workers 0 there is one writer less than GOMAXPROCS (at
// least one), so that a P is left for the reactor and the API during a
// fan-out. The bound's total is the queue's cap in /v1/stats.
func TestReliabilityDownQueue(t *testing.T) {
	for _, tc := range []struct {
		workers string
		want    int
	}{
		{"0", max(1, runtime.GOMAXPROCS(0)-1)}, // the gateway runs on this machine with our environment: its GOMAXPROCS is ours
		{"3", 3},
	} {
		s := startServer(t, "-down-queue", "1000", "-down-workers", tc.workers)
		q, ok := s.snapshot().queue("downstream_tasks")
		if !ok || q.Cap != int64(1000*tc.want) {
			t.Errorf("-down-workers %s: downstream_tasks = %+v (found %v), want cap %d", tc.workers, q, ok, 1000*tc.want)
		}
		s.stop()
	}
}
