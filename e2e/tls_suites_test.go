package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/gatewaytest"
)

// TestTLSCipherSuitesOpenSSL checks the TLS listener's suites with
// another implementation, openssl s_client (installed with apt-get when
// missing): TLS 1.2 offers only ECDHE with AES-GCM or ChaCha20-Poly1305,
// so a client offering only CBC suites fails its handshake, and TLS 1.3
// works as before. The test certificate is ECDSA, hence the ECDSA suites.
func TestTLSCipherSuitesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		aptInstall(t, "openssl")
	}
	certFile, keyFile, _, err := gatewaytest.WriteCert(t.TempDir(), "suites")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)

	sClient := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "openssl", append([]string{"s_client", "-connect", s.TLS, "-CAfile", certFile}, args...)...)
		cmd.Stdin = strings.NewReader("") // EOF right after the handshake: s_client closes and exits
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, cipher := range []string{"AES128-SHA", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA"} {
		if out, err := sClient("-tls1_2", "-cipher", cipher); err == nil || strings.Contains(out, "Cipher is "+cipher) {
			t.Errorf("TLS 1.2 offering only %s: err %v, want a failed handshake\n%s", cipher, err, out)
		}
	}
	for _, cipher := range []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"} {
		if out, err := sClient("-tls1_2", "-cipher", cipher); err != nil || !strings.Contains(out, "Cipher is "+cipher) {
			t.Errorf("TLS 1.2 with %s: err %v, want it negotiated\n%s", cipher, err, out)
		}
	}
	// openssl's default TLS 1.2 list (CBC suites included): an AEAD
	// suite is chosen.
	out, err := sClient("-tls1_2")
	_, line, _ := strings.Cut(out, "Cipher is ")
	line, _, _ = strings.Cut(line, "\n")
	if err != nil || !strings.HasPrefix(line, "ECDHE-ECDSA-") || !strings.Contains(line, "GCM") && !strings.Contains(line, "CHACHA20") {
		t.Errorf("TLS 1.2 with openssl's defaults: cipher %q, err %v, want ECDHE with an AEAD\n%s", line, err, out)
	}
	if out, err := sClient("-tls1_3"); err != nil || !strings.Contains(out, "New, TLSv1.3") {
		t.Errorf("TLS 1.3: err %v, want a TLSv1.3 session\n%s", err, out)
	}
}
