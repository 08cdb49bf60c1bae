package downstream

import (
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/longlink/longlink/codec"
)

// nullConn is a connection whose socket is /dev/null: every write is a
// real write system call, and takes everything.
type nullConn struct {
	id  uint64
	out Outbox
	fd  int
}

func (c *nullConn) ID() uint64                              { return c.id }
func (c *nullConn) Outbox() *Outbox                         { return &c.out }
func (c *nullConn) AppendFrame(dst, f []byte) ([]byte, int) { return append(dst, f...), len(dst) }
func (c *nullConn) Write(b []byte) (int, error)             { return syscall.Write(c.fd, b) }
func (c *nullConn) Backlog() int                            { return 0 }
func (c *nullConn) StampPush(frame []byte, _ *Push)         {}
func (c *nullConn) Undelivered(*Push)                       {}
func (c *nullConn) Terminate(codec.Status, error)           {}
func (c *nullConn) Cut(codec.Status)                        {}
func (c *nullConn) FrameLen(b []byte) int                   { return codec.FrameSize(b) }
func (c *nullConn) WatchWritable(ep int, key uint64) error  { return nil }

// AppendKick implements Conn: no KICK.
func (c *nullConn) AppendKick(dst []byte, _ codec.Status, _ string) []byte { return dst }

// TestRunQueueStaysBounded: a run that never goes idle, with pushes
// joining while the cursor walks, keeps a queue of about one lap's
// pushes, not every push it ever held.
func TestRunQueueStaysBounded(t *testing.T) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &worker{blocked: map[uint64]Conn{}}
	w.roomy = sync.NewCond(&w.mu)
	w.g = &Group{opts: Options{MaxPending: 1 << 20}, workers: []*worker{w}}
	list := make([]Target, 8)
	for i := range list {
		c := &nullConn{id: uint64(i), fd: int(f.Fd())}
		list[i] = Target{Conn: c, ID: c.id}
	}
	p := &Push{Frame: make([]byte, codec.HeaderSize)}
	const pushes = 10000
	for range pushes {
		w.fanout(p, list)
		w.walk(2)
		if !w.fan.pending() {
			t.Fatal("the run went idle: the test no longer keeps it busy")
		}
		if held := len(w.fan.pushes) - w.fan.head; w.queued != held*len(list) {
			t.Fatalf("queued = %d with %d pushes of %d members held, want their deliveries", w.queued, held, len(list))
		}
	}
	if c := cap(w.fan.pushes); c > 64 {
		t.Fatalf("after %d pushes the run's queue has capacity %d, want one lap's worth", pushes, c)
	}
	w.walk(1 << 20)
	if w.fan.pending() || w.fan.list != nil {
		t.Fatal("the run still holds pushes or its list after walking them out")
	}
	if w.queued != 0 || w.heldCounted != 0 {
		t.Fatalf("queued = %d, heldCounted = %d after the run went idle, want 0", w.queued, w.heldCounted)
	}
	if d := w.stats.Deliveries.Load(); d != pushes*uint64(len(list)) {
		t.Fatalf("Deliveries = %d, want %d", d, pushes*len(list))
	}

	// An idle run keeps its queue's array for the next run, unless a
	// burst made it larger than maxKeptRunPushes.
	for _, burst := range []int{10, 4 * maxKeptRunPushes} {
		for range burst {
			w.fanout(p, list)
		}
		w.walk(1 << 20)
		if c, kept := cap(w.fan.pushes), burst <= maxKeptRunPushes; (c > 0) != kept {
			t.Errorf("after a burst of %d pushes the idle run keeps a queue of capacity %d", burst, c)
		}
	}
}
