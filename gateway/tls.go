package gateway

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// certificate holds the TLS listener's certificate so that it can be
// replaced (on SIGHUP) without dropping a connection: every handshake
// reads the current one.
type certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func newCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads the files again; on error the current certificate stays.
func (c *certificate) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("gateway: tls certificate %s, key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// tls12Suites are the cipher suites offered to TLS 1.2 clients: ECDHE
// key exchange (forward secrecy) with an AEAD cipher only. The CBC suites
// Go also enables by default are left out: their MAC-then-encrypt
// construction is what padding-oracle and timing attacks (Lucky13)
// exploit. A client that offers only those fails its handshake. TLS 1.3
// suites are all AEAD and are not configurable in crypto/tls; they stay.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func (c *certificate) config() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tls12Suites,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}

// ReloadTLS reads the TLS certificate and key files again; connections
// that are already up keep their session, new handshakes use the new
// certificate. Without -tls-listen it does nothing.
func (g *Gateway) ReloadTLS() error {
	if g.cert == nil {
		return nil
	}
	return g.cert.load()
}
