package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "longlink test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestTLS runs the default "tls" dialer against a TLS gateway (the fake:
// the real one has no TLS listener yet).
func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	g := newFakeGWTLS(t, "tls", &tls.Config{Certificates: []tls.Certificate{cert}})
	r := &recorder{}
	cfg := fastConfig(r, Endpoint{Proto: "tls", Addr: g.addr()})
	cfg.TLSConfig = &tls.Config{RootCAs: pool}
	c := dial(t, cfg)
	resp, err := c.Request(context.Background(), 1, nil, []byte("over tls"))
	if err != nil || string(resp.Body) != "over tls" {
		t.Fatalf("Request over TLS = %v, %v", resp, err)
	}

	// An untrusted certificate is a failed attempt, retried until Dial's
	// context ends.
	cfg.TLSConfig = &tls.Config{RootCAs: x509.NewCertPool()}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, cfg); err == nil {
		t.Fatal("Dial trusted an unknown certificate")
	}
}

func TestConfigErrors(t *testing.T) {
	tok := func(context.Context) (string, error) { return "", nil }
	for name, cfg := range map[string]Config{
		"no endpoints":  {Token: tok},
		"no token":      {Endpoints: []Endpoint{{Proto: "tcp", Addr: "x:1"}}},
		"no address":    {Endpoints: []Endpoint{{Proto: "tcp"}}, Token: tok},
		"ws, no dialer": {Endpoints: []Endpoint{{Proto: "ws", Addr: "x:1"}}, Token: tok},
	} {
		if _, err := Dial(context.Background(), cfg); err == nil {
			t.Errorf("%s: Dial accepted the config", name)
		}
	}
}
