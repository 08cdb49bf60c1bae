package reactor

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	l, err := Listen("127.0.0.1:0", echoHandler{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
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
