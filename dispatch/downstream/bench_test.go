package downstream_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
)

// BenchmarkPushMany measures group fan-out: one PUSH to every connection,
// written to real loopback sockets whose peers drain them in background
// goroutines. The peers live in a helper process (this test binary,
// re-executed): 10,000 connections need 20,000 descriptors, more than one
// process may hold here, and the peers' reads then stay out of this
// process's allocation counts. The b.N pushes are queued back to back and
// every delivery is written out before the timer stops (centrifuge
// style), so ns/op and allocs/op include the workers' work; pushes that
// meet in an outbox share a write.
func BenchmarkPushMany(b *testing.B) { benchFanout(b, false) }

// BenchmarkPushManySync is BenchmarkPushMany with each push written out
// to every socket before the next is queued: the cost of one isolated
// group push, one write per delivery.
func BenchmarkPushManySync(b *testing.B) { benchFanout(b, true) }

func benchFanout(b *testing.B, each bool) {
	for _, n := range []int{1000, 10000} {
		var env *fanout
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			if env == nil {
				env = newFanout(b, n)
			}
			p := newPush("bench-0001", bytes.Repeat([]byte{'x'}, 64))
			frameLen := len(p.Frame)
			b.SetBytes(int64(frameLen * n))
			b.ReportAllocs()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ResetTimer()
			for range b.N {
				env.g.PushMany(env.ts, p)
				env.target += int64(n * frameLen)
				if each {
					env.wait(b)
				}
			}
			env.wait(b)
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			deliveries := float64(b.N * n)
			b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/deliveries, "allocs/delivery")
		})
		if env != nil {
			st := env.g.Stats()
			b.Logf("conns=%d: %d deliveries in %d writes (%.1f frames/write), %d slow consumers",
				n, st.Deliveries, st.Writes, float64(st.FramesOut)/float64(max(st.Writes, 1)), st.SlowConsumers)
			env.close()
		}
	}
}

const peerEnv = "LONGLINK_DOWNSTREAM_BENCH_PEERS"

// TestFanoutPeerProcess is not a test: it is the peer side of
// BenchmarkPushMany, run in a child process. It dials n connections, reads
// and discards everything on each, and exits when its stdin closes.
func TestFanoutPeerProcess(t *testing.T) {
	spec := os.Getenv(peerEnv)
	if spec == "" {
		t.Skip("helper process of BenchmarkPushMany")
	}
	var addr string
	var n int
	if _, err := fmt.Sscan(spec, &addr, &n); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(2)
	}
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "peers: dial:", err)
			os.Exit(2)
		}
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// benchConn is a downstream.Conn over a real socket, with nothing the
// benchmark does not need.
type benchConn struct {
	id  uint64
	out downstream.Outbox
	fd  int
	seq uint32 // worker-owned
	env *fanout
}

func (c *benchConn) ID() uint64                 { return c.id }
func (c *benchConn) Outbox() *downstream.Outbox { return &c.out }
func (c *benchConn) AppendFrame(dst, f []byte) ([]byte, int) {
	at := len(dst)
	return append(dst, f...), at
}
func (c *benchConn) StampPush(frame []byte, _ *downstream.Push) {
	c.seq++
	codec.SetSeq(frame, c.seq)
}
func (c *benchConn) Undelivered(*downstream.Push)  {}
func (c *benchConn) Terminate(codec.Status, error) { c.env.terminated.Add(1) }
func (c *benchConn) Cut(codec.Status)              {}
func (c *benchConn) FrameLen(b []byte) int         { return codec.FrameSize(b) }

// AppendKick implements downstream.Conn: no KICK.
func (c *benchConn) AppendKick(dst []byte, _ codec.Status, _ string) []byte { return dst }

// Backlog implements downstream.Conn.
func (c *benchConn) Backlog() int { return 0 }

// WatchWritable implements downstream.Conn.
func (c *benchConn) WatchWritable(ep int, key uint64) error {
	return downstream.ArmWritable(ep, c.fd, key)
}

func (c *benchConn) Write(b []byte) (int, error) {
	for {
		n, err := syscall.Write(c.fd, b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, nil
		case err != nil:
			return 0, err
		}
		c.env.written.Add(int64(n))
		return n, nil
	}
}

type fanout struct {
	g          *downstream.Group
	ts         []downstream.Target
	ncs        []net.Conn // kept open while their descriptors are written
	ln         net.Listener
	peers      *exec.Cmd
	stdin      io.WriteCloser
	written    atomic.Int64 // bytes the sockets took
	terminated atomic.Int64
	target     int64 // bytes that must be written when the pushes so far are out
}

func newFanout(b *testing.B, n int) *fanout {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	env := &fanout{ln: ln}
	env.peers = exec.Command(os.Args[0], "-test.run=^TestFanoutPeerProcess$", "-test.count=1")
	env.peers.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", peerEnv, ln.Addr(), n))
	env.peers.Stderr = os.Stderr
	if env.stdin, err = env.peers.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	if err := env.peers.Start(); err != nil {
		b.Fatal(err)
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Minute))
	for i := range n {
		nc, err := ln.Accept()
		if err != nil {
			env.close()
			b.Fatalf("accepted %d of %d peers: %v", i, n, err)
		}
		c := &benchConn{id: uint64(i), env: env}
		rc, _ := nc.(*net.TCPConn).SyscallConn()
		rc.Control(func(fd uintptr) {
			c.fd = int(fd)
			syscall.SetNonblock(c.fd, true)
		})
		env.ncs = append(env.ncs, nc)
		env.ts = append(env.ts, downstream.Target{Conn: c, ID: c.ID()})
	}
	g, err := downstream.New(downstream.Options{Workers: runtime.GOMAXPROCS(0)})
	if err != nil {
		b.Fatal(err)
	}
	env.g = g
	return env
}

// wait returns once every byte pushed so far has been written.
func (env *fanout) wait(b *testing.B) {
	deadline := time.Now().Add(time.Minute)
	for env.written.Load() < env.target {
		if env.terminated.Load() > 0 {
			b.Fatalf("%d connections terminated: %+v", env.terminated.Load(), env.g.Stats())
		}
		if time.Now().After(deadline) {
			b.Fatalf("written %d of %d bytes: %+v", env.written.Load(), env.target, env.g.Stats())
		}
		time.Sleep(20 * time.Microsecond)
	}
}

func (env *fanout) close() {
	if env.g != nil {
		env.g.Close()
	}
	for _, nc := range env.ncs {
		nc.Close()
	}
	env.stdin.Close()
	env.peers.Wait()
	env.ln.Close()
}
