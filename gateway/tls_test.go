package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeTestCert writes a self-signed certificate for "gw.test" with key
// and returns the files and a pool that trusts it.
func writeTestCert(t *testing.T, key crypto.Signer) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gw.test"},
		DNSNames:     []string{"gw.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// handshake runs a TLS handshake between server and client over a pipe
// and returns the client's view of it, or the client's error.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	deadline := time.Now().Add(10 * time.Second)
	_ = sc.SetDeadline(deadline)
	_ = cc.SetDeadline(deadline)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := tls.Server(sc, server)
		if s.Handshake() == nil {
			// Read until the client closes, so that its handshake
			// (which ends with a read in TLS 1.3) is not cut short.
			_, _ = s.Read(make([]byte, 1))
		}
		sc.Close()
	}()
	c := tls.Client(cc, client)
	err := c.Handshake()
	state := c.ConnectionState()
	cc.Close()
	<-done
	return state, err
}

// cbcSuites are every CBC suite crypto/tls can speak in TLS 1.2, secure
// and insecure.
var cbcSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
	tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
}

func TestTLSCipherSuites(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name     string
		key      crypto.Signer
		gcm      uint16 // the AES-128-GCM suite for this key type
		chacha   uint16
		otherGCM uint16 // the suite for the other key type, which cannot be used
	}{
		{"ECDSA", ecKey, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{"RSA", rsaKey, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	} {
		t.Run(k.name, func(t *testing.T) {
			certFile, keyFile, pool := writeTestCert(t, k.key)
			cert, err := newCertificate(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			server := cert.config()
			client := func(max uint16, suites ...uint16) *tls.Config {
				return &tls.Config{RootCAs: pool, ServerName: "gw.test", MinVersion: tls.VersionTLS12, MaxVersion: max, CipherSuites: suites}
			}

			// TLS 1.2 offering only CBC suites: refused. Go's default
			// server configuration accepts the same client, so this is
			// the gateway's choice and not the library's.
			if st, err := handshake(t, server, client(tls.VersionTLS12, cbcSuites...)); err == nil {
				t.Errorf("a TLS 1.2 client offering only CBC suites got %s", tls.CipherSuiteName(st.CipherSuite))
			}
			defaults := &tls.Config{Certificates: []tls.Certificate{*cert.cur.Load()}}
			if _, err := handshake(t, defaults, client(tls.VersionTLS12, cbcSuites...)); err != nil {
				t.Errorf("setup: Go's default server refused the CBC client too: %v", err)
			}

			// TLS 1.2 with an ECDHE AEAD suite: accepted, with that suite.
			for _, suite := range []uint16{k.gcm, k.chacha} {
				st, err := handshake(t, server, client(tls.VersionTLS12, suite))
				switch {
				case err != nil:
					t.Errorf("TLS 1.2 with %s: %v", tls.CipherSuiteName(suite), err)
				case st.Version != tls.VersionTLS12 || st.CipherSuite != suite:
					t.Errorf("TLS 1.2 with %s: negotiated %s, %s", tls.CipherSuiteName(suite), tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
				}
			}
			// Go's own TLS 1.2 client list, CBC included: the server
			// picks an AEAD suite.
			st, err := handshake(t, server, client(tls.VersionTLS12, append(append([]uint16(nil), cbcSuites...), k.gcm)...))
			if err != nil || st.CipherSuite != k.gcm {
				t.Errorf("CBC and GCM offered: %s, %v; want %s", tls.CipherSuiteName(st.CipherSuite), err, tls.CipherSuiteName(k.gcm))
			}
			// A suite for the other key type cannot be negotiated.
			if _, err := handshake(t, server, client(tls.VersionTLS12, k.otherGCM)); err == nil {
				t.Errorf("TLS 1.2 with only %s succeeded on a %s certificate", tls.CipherSuiteName(k.otherGCM), k.name)
			}

			// TLS 1.3, as before: its suites are not configurable.
			st, err = handshake(t, server, client(tls.VersionTLS13))
			if err != nil || st.Version != tls.VersionTLS13 {
				t.Errorf("TLS 1.3: %s, %v", tls.VersionName(st.Version), err)
			}
			// TLS 1.1 is below MinVersion.
			old := client(tls.VersionTLS11)
			old.MinVersion = tls.VersionTLS10
			if _, err := handshake(t, server, old); err == nil {
				t.Error("a TLS 1.1 client got a session")
			}
		})
	}
}

// TestTLS12SuitesAreAEAD checks the list itself: every TLS 1.2 suite it
// names uses ECDHE and an AEAD cipher, and crypto/tls deems it secure.
func TestTLS12SuitesAreAEAD(t *testing.T) {
	secure := map[uint16]*tls.CipherSuite{}
	for _, s := range tls.CipherSuites() {
		secure[s.ID] = s
	}
	cfg := (&certificate{}).config()
	if len(cfg.CipherSuites) == 0 {
		t.Fatal("no CipherSuites: Go's defaults, CBC included, would apply")
	}
	for _, id := range cfg.CipherSuites {
		s, ok := secure[id]
		name := tls.CipherSuiteName(id)
		switch {
		case !ok:
			t.Errorf("%s is not among crypto/tls's secure suites", name)
		case !strings.HasPrefix(name, "TLS_ECDHE_"):
			t.Errorf("%s has no forward secrecy", name)
		case !strings.Contains(name, "_GCM_") && !strings.Contains(name, "_CHACHA20_POLY1305"):
			t.Errorf("%s is not an AEAD suite", name)
		case !slices.Contains(s.SupportedVersions, tls.VersionTLS12):
			t.Errorf("%s is not a TLS 1.2 suite", name)
		}
	}
}
