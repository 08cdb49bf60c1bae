package main

import (
	"crypto/x509"
	"testing"

	"github.com/longlink/longlink/internal/gatewaytest"
)

// writeTestCert writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and its key to dir. The certificate file is also what -tls-ca
// trusts.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool, err := gatewaytest.WriteCert(dir, "loadtest")
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}
