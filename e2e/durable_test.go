package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/cluster/redistest"
	"github.com/longlink/longlink/codec"
)

// durablePush pushes data to device through s with ack:true and returns
// the answer.
func (s *server) durablePush(device, data string) clusterResult {
	s.t.Helper()
	var res clusterResult
	if code := s.api("POST", "/v1/push", map[string]any{"devices": []string{device}, "biz": 1, "data": data, "ack": true}, &res); code != 200 {
		s.t.Fatalf("push through %s: status %d", s.Node, code)
	}
	return res
}

// durablePair starts nodes A and B on top and logs device in on A.
func durablePair(t *testing.T, top redistest.Topology, device string) (a, b *server, d *client) {
	t.Helper()
	a = startClusterNode(t, top, "A")
	b = startClusterNode(t, top, "B")
	d, _ = loggedIn(t, a, device)
	return a, b, d
}

// TestClusterDurablePushes: ack:true pushes outlive the node that held
// the device. A device on A reads and acks 5 pushes, then stops reading;
// 30 more come through B; A is killed; 5 more come through B at once. The
// device logs in on B resuming from 5 and gets exactly the 35 it missed,
// in order, each once, numbered on from its last seq, with resumed=0 (a
// crash); a later push has a higher seq.
func TestClusterDurablePushes(t *testing.T) {
	forTopologies(t, func(t *testing.T, top redistest.Topology) {
		const device = "durable-dev"
		a, b, d := durablePair(t, top, device)
		for i := 1; i <= 5; i++ {
			if res := b.durablePush(device, fmt.Sprintf("m%d", i)); res.Delivered != 1 {
				t.Fatalf("push %d through B: %+v, want delivered", i, res)
			}
			d.clWantPush(uint32(i), fmt.Sprintf("m%d", i))
		}
		d.send(codec.Header{Op: codec.OpPushAck, Seq: 5}, nil, nil)
		// The device stops reading: the next 30 reach A's socket and its
		// kernel buffers, and are journaled before B answers.
		for i := 6; i <= 35; i++ {
			if res := b.durablePush(device, fmt.Sprintf("m%d", i)); res.Delivered != 1 {
				t.Fatalf("push %d through B: %+v, want delivered", i, res)
			}
		}
		a.Kill()
		// Once A's endpoints are gone from B's list, A is disconnected
		// from Redis too: pushes to its device find no receiver.
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			var eps struct{ Endpoints []struct{ Node string } }
			b.api("GET", "/v1/endpoints", nil, &eps)
			for _, ep := range eps.Endpoints {
				if ep.Node == "A" {
					return fmt.Errorf("B still lists the killed node A: %+v", eps)
				}
			}
			return nil
		})
		for i := 36; i <= 40; i++ {
			res := b.durablePush(device, fmt.Sprintf("m%d", i))
			if res.Delivered != 0 || !slices.Equal(res.Offline, []string{device}) || len(res.Unrouted) != 0 {
				t.Fatalf("push %d through B after A died: %+v, want the device offline (kept), not unrouted", i, res)
			}
		}

		c := dial(t, b.TCP)
		ack := c.login(token(t, device, time.Hour), "resume", "5")
		// resumed=0: after a crash the gateway cannot prove that no push
		// that was not durable is gone (docs/protocol.md), but it
		// redelivers every durable one.
		if ack.Status != codec.StatusOK || metaString(ack, "resumed") != "0" {
			t.Fatalf("login on B resuming from 5: %v resumed=%q, want OK resumed=0", ack.Status, metaString(ack, "resumed"))
		}
		last := uint32(5)
		for i := 6; i <= 40; i++ {
			f := c.read(5 * time.Second)
			if f.Op != codec.OpPush || string(f.Body) != "m"+strconv.Itoa(i) || f.Seq <= last {
				t.Fatalf("resumed push %d: %v seq %d %q, want PUSH %q with a seq above %d", i, f.Op, f.Seq, f.Body, "m"+strconv.Itoa(i), last)
			}
			last = f.Seq
		}
		c.clQuiet() // each once: nothing more
		if res := b.durablePush(device, "later"); res.Delivered != 1 {
			t.Fatalf("later push: %+v", res)
		}
		if f := c.clWantPush(0, "later"); f.Seq <= last {
			t.Fatalf("a later push has seq %d, not above the resumed %d", f.Seq, last)
		}
	})
}

// TestClusterDurableUnanswered: a durable push that reached the device's
// node, which died before it journaled or answered it, is not lost. A is
// stopped (SIGSTOP: it reads nothing more, and stops beating); a push
// through B is written to A's link and gets no answer; B waits until A
// stops beating and keeps the push in Redis, answering the device
// offline; A is killed; the device resumes on B and gets the push once.
func TestClusterDurableUnanswered(t *testing.T) {
	forTopologies(t, func(t *testing.T, top redistest.Topology) {
		const device = "unanswered-dev"
		a, b, d := durablePair(t, top, device)
		if res := b.durablePush(device, "m1"); res.Delivered != 1 {
			t.Fatalf("push through B: %+v, want delivered", res)
		}
		d.clWantPush(1, "m1")
		d.send(codec.Header{Op: codec.OpPushAck, Seq: 1}, nil, nil)
		if err := a.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		res := b.durablePush(device, "m2")
		if res.Delivered != 0 || !slices.Equal(res.Offline, []string{device}) || len(res.Unrouted) != 0 {
			t.Fatalf("push through B to the stopped A: %+v, want the device offline (kept in Redis), not delivered", res)
		}
		a.Kill()
		c := dial(t, b.TCP)
		if ack := c.login(token(t, device, time.Hour), "resume", "1"); ack.Status != codec.StatusOK {
			t.Fatalf("login on B: %v", ack.Status)
		}
		if f := c.read(5 * time.Second); f.Op != codec.OpPush || string(f.Body) != "m2" || f.Seq <= 1 {
			t.Fatalf("resumed: %v seq %d %q, want PUSH m2 with a seq above 1", f.Op, f.Seq, f.Body)
		}
		c.clQuiet() // once
	})
}
