// Package redistest starts throwaway redis-server processes for tests: one
// per call, on a free loopback port, in a temporary directory, with no
// persistence, killed when the test ends.
//
// When redis-server is not installed, Start installs it once with
// `apt-get update && apt-get install -y redis-server` (serialised across
// test processes by a lock file), and skips the test when that fails.
//
//	srv := redistest.Start(t)
//	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one running redis-server.
type Server struct {
	// Addr is host:port of the server, fixed for its life: Restart binds
	// the same port again.
	Addr string

	t    testing.TB
	bin  string
	dir  string
	port string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *strings.Builder
}

// Start runs a redis-server on a free loopback port and stops it when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("redis-server is not available: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	var last error
	for range 5 {
		s.port = freePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", s.port)
		if last = s.start(); last == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", last)
	return nil
}

// Kill stops the server at once (SIGKILL) and waits for it to exit. It is
// a no-op when the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart kills the server (if running) and starts a new, empty one on the
// same port: what a crashed Redis without persistence looks like to its
// clients.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: restarting redis-server on %s: %v", s.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Do sends one command and returns the server's reply line (for example
// "+OK", ":1", "$5"), for tests that want to poke the server without a
// client library.
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin,
		"--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "no")
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = &lockedWriter{b: logs}, &lockedWriter{b: logs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start")
		default:
		}
		if reply, err := s.Do("PING"); err == nil && reply == "+PONG" {
			s.cmd, s.done, s.logs = cmd, done, logs
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on %s did not answer PING within 10s", s.Addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

var (
	installOnce sync.Once
	installBin  string
	installErr  error
)

// Binary returns the path of redis-server, installing it with apt-get the
// first time it is missing.
func Binary() (string, error) {
	installOnce.Do(func() { installBin, installErr = findOrInstall() })
	return installBin, installErr
}

func findOrInstall() (string, error) {
	if p := find(); p != "" {
		return p, nil
	}
	// Several test binaries may get here at once: one installs, the
	// others wait on the lock and then find the binary.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "longlink-redistest-install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if p := find(); p != "" {
		return p, nil
	}
	out, err := exec.Command("sh", "-c", "apt-get update && apt-get install -y redis-server").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-get install redis-server: %v\n%s", err, lastLines(string(out), 10))
	}
	if p := find(); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("redis-server not found after apt-get install")
}

func find() string {
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server"
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
