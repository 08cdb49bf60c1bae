// Package gatewaytest is for tests that run the real gateway binary: it
// builds github.com/longlink/longlink, starts it as a process, learns the
// addresses it bound from its log, stops it, and writes the self-signed
// certificate its TLS listener serves.
package gatewaytest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildBinary builds the gateway into dir (with the race detector when
// race is set) and returns the binary's path. The error carries go
// build's output.
func BuildBinary(ctx context.Context, dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "longlink")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/longlink/longlink")
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return bin, nil
}

// Listeners says which listeners Start waits for.
type Listeners struct {
	TCP, WS, TLS, API bool
}

// Addrs are the addresses a gateway reported: host:port for TCP, WS and
// TLS, and "http://host:port" for the API. A listener not (yet) reported
// is "".
type Addrs struct {
	TCP, WS, TLS, API string
}

func (a Addrs) has(want Listeners) bool {
	return (a.TCP != "" || !want.TCP) && (a.WS != "" || !want.WS) &&
		(a.TLS != "" || !want.TLS) && (a.API != "" || !want.API)
}

// Process is a running gateway.
type Process struct {
	Cmd *exec.Cmd
	Addrs

	logs   LogBuffer
	exited chan error    // the Wait error, then closed
	done   chan struct{} // closed when the process has exited
	err    error         // the Wait error, set before done is closed
}

// Logs returns everything the gateway wrote so far.
func (p *Process) Logs() string { return p.logs.String() }

// Pid is the gateway process's id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// RSS is the gateway's resident set size now, in bytes (VmRSS).
func (p *Process) RSS() (int64, error) { return VmRSS(p.Pid()) }

// VmRSS reads the resident set size of process pid, in bytes, from the
// VmRSS line of /proc/<pid>/status (Linux only).
func VmRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("/proc/%d/status: odd VmRSS line %q", pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS line (has the process exited?)", pid)
}

// Exited delivers the process's exit error (from exec.Cmd.Wait) to the
// first receiver once it has exited, and is closed after that: later
// receives see nil at once.
func (p *Process) Exited() <-chan error { return p.exited }

// Stop sends SIGTERM and waits up to timeout for the exit, then kills the
// process. It returns the exit error, nil when the process had exited
// before, or an error wrapping ErrStopTimeout after the kill.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%w within %v", ErrStopTimeout, timeout)
	}
}

// ErrStopTimeout is what Stop's error wraps when the gateway had to be
// killed.
var ErrStopTimeout = errors.New("gateway did not stop on SIGTERM")

// Kill stops the process with SIGKILL and waits for the exit.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// StartError is Start's error when the gateway exited, or did not report
// every wanted listener in time (it is killed then).
type StartError struct {
	Exited bool  // the gateway exited; Err is its exit error
	Err    error // nil on a timeout
	Addrs        // the listeners reported before
	Logs   string
}

func (e *StartError) Error() string {
	if e.Exited {
		return fmt.Sprintf("gateway exited at start: %v\n%s", e.Err, e.Logs)
	}
	return fmt.Sprintf("gateway did not start in time:\n%s", e.Logs)
}

// StartTimeout is how long Start waits for the listeners.
const StartTimeout = 30 * time.Second

// Start runs bin with args and waits, StartTimeout at most, until the
// gateway has reported every wanted listener in a
// "msg=listening proto=... addr=..." log line.
func Start(bin string, args []string, want Listeners) (*Process, error) {
	return StartWithin(bin, args, want, StartTimeout)
}

var listenRE = regexp.MustCompile(`msg=listening proto=(\w+) addr=(\S+)`)

// StartWithin is Start waiting up to timeout.
func StartWithin(bin string, args []string, want Listeners, timeout time.Duration) (*Process, error) {
	p := &Process{Cmd: exec.Command(bin, args...), exited: make(chan error, 1), done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.Cmd.Stdout = &p.logs
	p.Cmd.Stderr = io.MultiWriter(&p.logs, pw)
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	go func() {
		err := p.Cmd.Wait()
		p.err = err
		close(p.done)
		p.exited <- err
		close(p.exited)
		pw.Close()
	}()
	var (
		mu   sync.Mutex
		seen Addrs
	)
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			m := listenRE.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			mu.Lock()
			switch m[1] {
			case "tcp":
				seen.TCP = m[2]
			case "ws":
				seen.WS = m[2]
			case "tls":
				seen.TLS = m[2]
			case "http":
				seen.API = "http://" + m[2]
			}
			all := seen.has(want)
			mu.Unlock()
			if all {
				close(found)
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-found:
		p.Addrs = seen
		return p, nil
	case <-p.done:
		mu.Lock()
		defer mu.Unlock()
		return nil, &StartError{Exited: true, Err: p.err, Addrs: seen, Logs: p.Logs()}
	case <-timer.C:
		p.Kill()
		mu.Lock()
		defer mu.Unlock()
		return nil, &StartError{Addrs: seen, Logs: p.Logs()}
	}
}

// LogBuffer is a bytes.Buffer that a process or a logger writes into
// while a test reads it. The zero value is ready.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// WriteCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1
// named commonName, and its key, to dir/cert.pem and dir/key.pem
// (replacing them), and returns a pool that trusts it.
func WriteCert(dir, commonName string) (certFile, keyFile string, pool *x509.CertPool, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", nil, err
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool, nil
}
