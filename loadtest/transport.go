package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// The three transports of the gateway (docs/protocol.md, "Framing per
// transport"):
//
//   - tcp: frames back to back on the socket (-addr);
//   - ws: a WebSocket (ws://<-ws-addr>/, subprotocol longlink.v1), each
//     frame in its own binary message (wsframe.go), framed by package
//     websocket's client side;
//   - tls: frames back to back inside TLS (-tls-addr), crypto/tls over the
//     socket.
//
// Every transport keeps the generator's shape: one reader goroutine per
// connection, writes under the connection's mutex, no timer.

// dial connects c to the gateway at addr (the configured target, or a
// KICK's redirect in -sdk mode) over the configured transport: a TCP
// connection from the next source address, then the TLS handshake or the
// WebSocket upgrade, all within -dial-timeout. On success c.nc is ready
// for LOGIN.
func (r *runner) dial(ctx context.Context, c *client, addr string) error {
	cfg := r.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	nc, err := r.dialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	switch cfg.transport {
	case "tls":
		tc := tls.Client(nc, cfg.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		r.noteTLS(tc)
		c.nc = tc
	case "ws":
		c.nc = nc
		if err := c.upgrade(addr); err != nil {
			_ = nc.Close()
			return fmt.Errorf("websocket upgrade with %s: %w", addr, err)
		}
	default:
		c.nc = nc
		if tc, ok := nc.(*net.TCPConn); ok {
			c.arr = newArrivalReader(tc)
		}
	}
	return nil
}

// TLSInfo is what the first TLS handshake negotiated.
type TLSInfo struct {
	Version     string `json:"version"`
	CipherSuite string `json:"cipher_suite"`
	KeyExchange string `json:"key_exchange"`
	Resumed     bool   `json:"resumed"`
}

// noteTLS keeps the parameters of the first handshake for the report.
func (r *runner) noteTLS(tc *tls.Conn) {
	if r.tlsInfo.Load() != nil {
		return
	}
	st := tc.ConnectionState()
	r.tlsInfo.CompareAndSwap(nil, &TLSInfo{
		Version:     tls.VersionName(st.Version),
		CipherSuite: tls.CipherSuiteName(st.CipherSuite),
		KeyExchange: st.CurveID.String(),
		Resumed:     st.DidResume,
	})
}

// rawConn is the socket under nc.
func rawConn(nc net.Conn) net.Conn {
	if tc, ok := nc.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return nc
}

// abort closes c's socket at once with a reset: no TLS close_notify, no
// WebSocket close, no TIME_WAIT. Its reader sees the error and ends.
func (c *client) abort() {
	raw := rawConn(c.nc)
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
}
