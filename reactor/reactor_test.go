package reactor

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
)

func TestMain(m *testing.M) {
	if err := Configure(1, 1024); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// listen serves a loopback port with h until the test ends.
func listen(t *testing.T, h Handler, opts Options) *Listener {
	t.Helper()
	l, err := Listen("127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	return l
}

// echoHandler writes back what it reads.
type echoHandler struct{}

func (echoHandler) Prepare(netpoll.Connection) context.Context { return context.Background() }

func (echoHandler) Data(_ context.Context, nc netpoll.Connection) error {
	r := nc.Reader()
	b, err := r.Next(r.Len())
	if err != nil {
		return err
	}
	if _, err := nc.Writer().WriteBinary(b); err != nil {
		return err
	}
	return nc.Writer().Flush()
}

// The patched loop parks on the runtime's netpoller when idle: every
// event after a quiet spell must still wake it, promptly.
func TestLoopWakesAfterIdle(t *testing.T) {
	l := listen(t, echoHandler{}, Options{})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1)
	var slowest time.Duration
	for i := range 20 {
		time.Sleep(time.Duration(i%4) * 15 * time.Millisecond) // 0 to 45 ms of quiet
		t0 := time.Now()
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil || buf[0] != byte(i) {
			t.Fatalf("round %d: read %v, %v", i, buf[0], err)
		}
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("slowest echo after a quiet spell: %v", slowest)
}

// sndbufHandler reports the SO_SNDBUF of each accepted socket.
type sndbufHandler struct{ got chan int }

func (h sndbufHandler) Prepare(nc netpoll.Connection) context.Context {
	v, err := syscall.GetsockoptInt(nc.(interface{ Fd() int }).Fd(), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	if err != nil {
		v = -1
	}
	h.got <- v
	return context.Background()
}

func (sndbufHandler) Data(context.Context, netpoll.Connection) error { return nil }

// An accepted socket carries the listener's SendBuffer. Linux reports
// twice the value set (the doubling leaves room for its bookkeeping), so
// the check is exact and cannot be met by an autotuned default.
func TestListenSendBuffer(t *testing.T) {
	const size = 20000
	h := sndbufHandler{got: make(chan int, 1)}
	l := listen(t, h, Options{SendBuffer: size})
	for i := range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-h.got:
			if got != 2*size {
				t.Errorf("connection %d: SO_SNDBUF %d, want %d (Linux doubles the %d set)", i, got, 2*size, size)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d was not accepted", i)
		}
		c.Close()
	}
}

// TestPatchedNetpollSuite runs netpoll's own tests on the patched copy in
// third_party/netpoll (see PATCH.md there). It runs on demand
// (LONGLINK_NETPOLL_SUITE=1), not in CI: upstream's suite fails now and
// then on unpatched v0.7.2 too (PATCH.md has the counts), and CI must
// not depend on it.
func TestPatchedNetpollSuite(t *testing.T) {
	if os.Getenv("LONGLINK_NETPOLL_SUITE") == "" {
		t.Skip("set LONGLINK_NETPOLL_SUITE=1 to run netpoll's own suite on the patched copy")
	}
	dir, err := filepath.Abs("../third_party/netpoll")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "test", "-race", "-count=1", "-skip", "^TestDialerFdAlloc$", "./...")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("netpoll's tests on the patched copy: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
