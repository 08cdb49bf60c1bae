package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/internal/gatewaytest"
)

func dialTLS(t *testing.T, addr string, pool *x509.CertPool) (*client, *tls.Conn) {
	t.Helper()
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	t.Cleanup(func() { tc.Close() })
	return &client{t: t, nc: tc}, tc
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool, err := gatewaytest.WriteCert(dir, "first")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	if s.TLS == "" {
		t.Fatal("no tls listener reported")
	}
	c, tc := dialTLS(t, s.TLS, pool)
	if cn := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "first" {
		t.Fatalf("certificate %q", cn)
	}
	ack := c.login(token(t, "dev-tls", time.Hour, "tls-room"))
	if ack.Status != codec.StatusOK {
		t.Fatalf("login over tls: %v", ack.Status)
	}
	// Requests, pipelined, and a big body that spans several TLS records.
	big := make([]byte, 40000)
	for i := range big {
		big[i] = byte(i)
	}
	var out []byte
	for i := 0; i < 20; i++ {
		out = codec.AppendFrame(out, codec.Header{Op: codec.OpRequest, Biz: 1, Seq: uint32(i)}, nil, []byte("r"))
	}
	out = codec.AppendFrame(out, codec.Header{Op: codec.OpRequest, Biz: 1, Seq: 99}, nil, big)
	c.write(out)
	for i := 0; i < 21; i++ {
		f := c.read(10 * time.Second)
		if f.Op != codec.OpResponse || f.Status != codec.StatusOK {
			t.Fatalf("response %d: %v %v", i, f.Op, f.Status)
		}
		if f.Seq == 99 && len(f.Body) != len(big) {
			t.Fatalf("big echo came back with %d bytes", len(f.Body))
		}
	}
	// A group with a TCP and a TLS member: one push each.
	plain, _ := loggedIn(t, s, "dev-tls-tcp", "tls-room")
	var res struct{ Delivered int }
	if s.api("POST", "/v1/groups/tls-room/push", map[string]any{"biz": 1, "data": "secure"}, &res); res.Delivered != 2 {
		t.Fatalf("delivered %d", res.Delivered)
	}
	for _, cl := range []*client{c, plain} {
		if f := cl.read(5 * time.Second); f.Op != codec.OpPush || string(f.Body) != "secure" {
			t.Fatalf("push: %v %q", f.Op, f.Body)
		}
	}
	// SIGHUP reloads the certificate: new handshakes see the new one, the
	// connection already up keeps working.
	_, _, pool2, err := gatewaytest.WriteCert(dir, "second")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload is asynchronous: until it lands, handshakes present the
	// first certificate, which pool2 does not trust, so a failed dial is a
	// retry, not a failure.
	checkFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		tc2, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.TLS, &tls.Config{RootCAs: pool2, ServerName: "127.0.0.1"})
		if err != nil {
			return err
		}
		defer tc2.Close()
		if cn := tc2.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "second" {
			return errorString("still " + cn)
		}
		return nil
	})
	c.send(codec.Header{Op: codec.OpPing, Seq: 5}, nil, nil)
	if f := c.read(5 * time.Second); f.Op != codec.OpPong {
		t.Fatalf("old session after reload: %v", f.Op)
	}
	// A client that never finishes its handshake is closed at the login
	// timeout, and a garbage handshake at once; the node keeps serving.
	raw, err := net.Dial("tcp", s.TLS)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = raw.Write([]byte("this is not a client hello at all......"))
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 512)); err == nil {
		// an alert may come first; the close must follow
		if _, err := raw.Read(make([]byte, 512)); err == nil {
			t.Fatal("garbage handshake: connection still open")
		}
	}
	c.send(codec.Header{Op: codec.OpPing, Seq: 6}, nil, nil)
	if f := c.read(5 * time.Second); f.Op != codec.OpPong {
		t.Fatalf("after a bad handshake: %v", f.Op)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
