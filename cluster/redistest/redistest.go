// Package redistest starts throwaway redis-server processes for tests: on
// free loopback ports, in temporary directories, with no persistence,
// killed when the test ends (and by the kernel, Pdeathsig, when the test
// binary dies).
//
// Start runs one server. The topologies of topology.go run the three
// deployments the gateway supports, each a Topology giving the gateway's
// flags, a client, Kill and Restart:
//
//	standalone  StartStandalone  one redis-server                     ~15ms
//	cluster     StartCluster     Redis Cluster, 3 masters, 0 replicas ~2.0s
//	sentinel    StartSentinel    master, replica, 3 Sentinels         ~2.1s
//
// Most of a start is Redis's own timers (a new cluster node turns ok 2s
// after it starts; Sentinels say hello every 2s). Begin starts several at
// once.
//
// When redis-server is not installed, Start installs it once with
// `apt-get update && apt-get install -y redis-server` (serialised across
// test processes by a lock file), and skips the test when that fails. The
// package also provides redis-cli, which the cluster needs; a Sentinel is
// `redis-server sentinel.conf --sentinel`.
//
//	srv := redistest.Start(t)
//	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one running redis-server: a standalone Redis (Start), a node
// of a Redis Cluster or a Sentinel's data node or Sentinel (topology.go).
type Server struct {
	// Addr is host:port of the server, fixed for its life: Restart binds
	// the same port again.
	Addr string

	t    testing.TB
	bin  string
	dir  string // its working directory: dumps, nodes.conf, sentinel.conf
	port string

	mu   sync.Mutex
	args []string // the command line after the binary, used by every start
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
	dir := t.TempDir()
	s, err := spawn(t, bin, dir, 1, func(ports []string) ([]string, error) {
		return baseArgs(ports[0], dir), nil
	})
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return s
}

// baseArgs is the command line of a data node: loopback only, no
// persistence, files in dir.
func baseArgs(port, dir string) []string {
	return []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no"}
}

// spawn starts a server whose command line build makes from nports fresh
// loopback ports (the first is the client port), and kills it when the
// test ends. A port taken by another process meanwhile makes the server
// exit at start: spawn then tries again with new ports. It returns an
// error rather than failing t, so that it may run off the test's
// goroutine.
func spawn(t testing.TB, bin, dir string, nports int, build func(ports []string) ([]string, error)) (*Server, error) {
	var last error
	for range 5 {
		ports, err := freePorts(nports)
		if err != nil {
			return nil, err
		}
		args, err := build(ports)
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", ports[0]), t: t, bin: bin, dir: dir, port: ports[0], args: args}
		if last = s.start(); last == nil {
			t.Cleanup(s.Kill)
			return s, nil
		}
	}
	return nil, fmt.Errorf("starting redis-server: %v", last)
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

// Running reports whether the server runs: started and not killed (a
// process that died by itself still counts until Kill).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Restart kills the server (if running) and starts a new, empty one on the
// same port: what a crashed Redis without persistence looks like to its
// clients.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.restart(); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
}

// restart is Restart returning its error, for use off the test's
// goroutine. The port may still be held for a moment (by a client's
// connection in the kernel, or another process): it retries for 10s.
func (s *Server) restart() error {
	s.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restarting redis-server on %s: %v", s.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setArgs replaces the command line of the next starts.
func (s *Server) setArgs(args []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.args = args
}

// Do sends one command and returns the server's reply line (for example
// "+OK", ":1", "$5"), for tests that want to poke the server without a
// client library.
func (s *Server) Do(args ...string) (string, error) {
	v, err := exchange(s.Addr, args, func(r *bufio.Reader) (any, error) {
		line, err := r.ReadString('\n')
		return strings.TrimRight(line, "\r\n"), err
	})
	line, _ := v.(string)
	return line, err
}

// query sends one command to addr and returns its reply: a string for a
// simple or bulk string, an int64, nil for a nil reply, []any for an
// array; an error reply is returned as the error.
func query(addr string, args ...string) (any, error) { return exchange(addr, args, readReply) }

// exchange sends one command to addr on a new connection and reads the
// reply with read.
func exchange(addr string, args []string, read func(*bufio.Reader) (any, error)) (any, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	return read(bufio.NewReader(c))
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, fmt.Errorf("redis: %s", line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}

// start runs the process and waits until it answers PING, and is the
// process that answers: a port taken by another server would answer too.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, s.args...)
	logs := &strings.Builder{}
	lw := &lockedWriter{b: logs}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	pid := fmt.Sprintf("process_id:%d", cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server %s exited at start:\n%s", strings.Join(s.args, " "), lastLines(lw.String(), 5))
		default:
		}
		if reply, err := s.Do("PING"); err == nil && reply == "+PONG" {
			info, err := query(s.Addr, "INFO", "server")
			if text, _ := info.(string); err == nil && strings.Contains(text, pid+"\r\n") {
				s.cmd, s.done, s.logs = cmd, done, logs
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on %s did not answer PING within 10s:\n%s", s.Addr, lastLines(lw.String(), 5))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Logs is what the server wrote to stdout and stderr since it last
// started.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs == nil {
		return ""
	}
	return s.logs.String()
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

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

var (
	portsMu sync.Mutex
	handed  = map[string]bool{} // ports freePorts gave out in this process
)

// freePorts returns n loopback ports free now, never one it returned
// before in this process: servers started at once in parallel do not
// race for the same port.
func freePorts(n int) ([]string, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var ports []string
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, fmt.Errorf("no free loopback port")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		ln.Close()
		if !handed[port] {
			handed[port] = true
			ports = append(ports, port)
		}
	}
	return ports, nil
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
