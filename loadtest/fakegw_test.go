package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/metrics"
	gws "github.com/longlink/longlink/websocket"
)

// fakeGateway is a small, goroutine-per-connection implementation of the
// protocol and of the API calls the generator makes, so the generator's
// scenarios can be tested whether or not the real gateway builds. It is
// deliberately simple; the smoke test runs against the real one.
type fakeGateway struct {
	t      *testing.T
	secret []byte
	apiKey string
	ln     net.Listener     // TCP
	tlsLn  net.Listener     // TLS, with the certificate in caFile
	ws     *httptest.Server // WebSocket (github.com/coder/websocket), at ws.Listener.Addr()
	caFile string
	http   *httptest.Server

	mu      sync.Mutex
	devices map[string]*fakeDevice
	open    map[*fakeConn]bool // every open connection, to close them at the end
	groups  map[string]map[string]bool
	nextID  int

	// dupResume makes a resume redeliver the last push the device already
	// has too, as a gateway may around a reconnect: a client must drop it.
	dupResume atomic.Bool

	conns      atomic.Int64
	loggedIn   atomic.Int64
	deliveries atomic.Uint64
	acks       atomic.Uint64
	wg         sync.WaitGroup
}

// fakeConn is one connection, over TCP, TLS or WebSocket.
type fakeConn struct {
	nc  net.Conn   // TCP and TLS
	ws  *cws.Conn  // WebSocket: one frame per binary message
	wmu sync.Mutex // serialises writes
}

// write sends one frame (or, over TCP and TLS, several).
func (c *fakeConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ws != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.ws.Write(ctx, cws.MessageBinary, b)
	}
	_, err := c.nc.Write(b)
	return err
}

func (c *fakeConn) close() {
	if c.ws != nil {
		_ = c.ws.CloseNow()
		return
	}
	_ = c.nc.Close()
}

// fakeDevice is a device's push seq and its last pushes, kept for resume
// the way the real gateway's recovery does, and its current connection.
type fakeDevice struct {
	mu   sync.Mutex
	conn *fakeConn // nil while disconnected
	seq  uint32
	kept [][]byte // the last fakeKeep pushes, encoded with their seq
}

const fakeKeep = 256

func startFakeGateway(t *testing.T, secret, apiKey string) *fakeGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, _ := writeTestCert(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{t: t, secret: []byte(secret), apiKey: apiKey, ln: ln, tlsLn: tln, caFile: certFile,
		devices: map[string]*fakeDevice{}, open: map[*fakeConn]bool{}, groups: map[string]map[string]bool{}}
	g.http = httptest.NewServer(g.mux())
	g.ws = httptest.NewServer(http.HandlerFunc(g.serveWS))
	g.wg.Add(2)
	go g.accept(ln)
	go g.accept(tln)
	t.Cleanup(g.close)
	return g
}

// args are the generator's flags that dial the fake over transport.
func (g *fakeGateway) args(transport string) []string {
	switch transport {
	case "ws":
		return []string{"-ws", "-ws-addr", g.ws.Listener.Addr().String()}
	case "tls":
		return []string{"-tls", "-tls-addr", g.tlsLn.Addr().String(), "-tls-ca", g.caFile}
	}
	return []string{"-addr", g.ln.Addr().String()}
}

// checkAllClosed fails t unless every connection to g is closed within
// 5 s (the generator closes them all when a run ends).
func (g *fakeGateway) checkAllClosed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for g.conns.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := g.conns.Load(); n != 0 {
		t.Errorf("%d connections left open on the gateway", n)
	}
}

func (g *fakeGateway) close() {
	_ = g.ln.Close()
	_ = g.tlsLn.Close()
	g.http.Close()
	g.mu.Lock()
	for c := range g.open {
		c.close()
	}
	g.mu.Unlock()
	g.ws.Close()
	g.wg.Wait()
}

func (g *fakeGateway) accept(ln net.Listener) {
	defer g.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		g.wg.Add(1)
		go g.serveStream(nc)
	}
}

// opened registers c, to be closed with the gateway.
func (g *fakeGateway) opened(c *fakeConn) {
	g.conns.Add(1)
	g.mu.Lock()
	g.open[c] = true
	g.mu.Unlock()
}

// closed forgets c and detaches it from its device.
func (g *fakeGateway) closed(c *fakeConn, device string) {
	c.close()
	g.conns.Add(-1)
	g.mu.Lock()
	delete(g.open, c)
	d := g.devices[device]
	g.mu.Unlock()
	if d != nil {
		g.loggedIn.Add(-1)
		d.mu.Lock()
		if d.conn == c {
			d.conn = nil
		}
		d.mu.Unlock()
	}
}

// serveStream serves a TCP or TLS connection: frames back to back.
func (g *fakeGateway) serveStream(nc net.Conn) {
	defer g.wg.Done()
	c := &fakeConn{nc: nc}
	g.opened(c)
	device := ""
	defer func() { g.closed(c, device) }()
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for {
		n, err := nc.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:n]...)
		for {
			f, size, err := codec.Decode(buf, codec.DefaultMaxFrame)
			if err != nil {
				return
			}
			if size == 0 {
				break
			}
			if !g.handle(c, &f, &device) {
				return
			}
			buf = buf[:copy(buf, buf[size:])]
		}
	}
}

// serveWS serves a WebSocket connection: one frame per binary message.
func (g *fakeGateway) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := cws.Accept(w, r, &cws.AcceptOptions{Subprotocols: []string{gws.Subprotocol}})
	if err != nil {
		return
	}
	if ws.Subprotocol() != gws.Subprotocol {
		_ = ws.Close(cws.StatusPolicyViolation, "subprotocol longlink.v1 required")
		return
	}
	ws.SetReadLimit(codec.DefaultMaxFrame)
	g.wg.Add(1)
	defer g.wg.Done()
	c := &fakeConn{ws: ws}
	g.opened(c)
	device := ""
	defer func() { g.closed(c, device) }()
	for {
		typ, msg, err := ws.Read(context.Background())
		if err != nil {
			return
		}
		f, n, err := codec.Decode(msg, codec.DefaultMaxFrame)
		if typ != cws.MessageBinary || err != nil || n != len(msg) {
			_ = c.write(codec.AppendFrame(nil, codec.Header{Op: codec.OpKick, Status: codec.StatusBadFrame}, nil, nil))
			_ = ws.Close(cws.StatusProtocolError, "one frame per binary message")
			return
		}
		if !g.handle(c, &f, &device) {
			return
		}
	}
}

// handle answers one frame; false closes the connection.
func (g *fakeGateway) handle(c *fakeConn, f *codec.Frame, device *string) bool {
	reply := func(h codec.Header, meta, body []byte) { c.write(codec.AppendFrame(nil, h, meta, body)) }
	if *device == "" && f.Op != codec.OpLogin {
		reply(codec.Header{Op: codec.OpKick, Status: codec.StatusNotLoggedIn}, nil, nil)
		return false
	}
	switch f.Op {
	case codec.OpLogin:
		tok, _ := f.Meta.Get("token")
		var cl tokenClaims
		_, err := jwt.ParseWithClaims(string(tok), &cl, func(*jwt.Token) (any, error) { return g.secret, nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
		if err != nil || cl.Subject == "" {
			reply(codec.Header{Op: codec.OpLoginAck, Seq: f.Seq, Status: codec.StatusUnauthorized}, nil, nil)
			return false
		}
		*device = cl.Subject
		g.loggedIn.Add(1)
		g.mu.Lock()
		d := g.devices[cl.Subject]
		if d == nil {
			d = &fakeDevice{}
			g.devices[cl.Subject] = d
		}
		for _, grp := range cl.Groups {
			g.join(grp, cl.Subject)
		}
		g.nextID++
		id := g.nextID
		g.mu.Unlock()
		meta := codec.AppendMetaString(nil, "conn", strconv.Itoa(id))
		meta = codec.AppendMetaString(meta, "node", "fake")
		meta = codec.AppendMetaString(meta, "hb", "1")
		resume, resuming := f.Meta.Get("resume")
		if resuming {
			meta = codec.AppendMetaString(meta, "resumed", "1")
		}
		// Attach and redeliver under the device's lock, so no push falls
		// between the two connections.
		d.mu.Lock()
		old := d.conn
		d.conn = c
		reply(codec.Header{Op: codec.OpLoginAck, Seq: f.Seq}, meta, nil)
		if after, err := strconv.ParseUint(string(resume), 10, 32); resuming && err == nil {
			if g.dupResume.Load() && after > 0 {
				after--
			}
			for _, p := range d.kept {
				if binary.BigEndian.Uint32(p[codec.OffsetSeq:]) > uint32(after) {
					_ = c.write(p)
				}
			}
		}
		d.mu.Unlock()
		if old != nil && old != c {
			old.close()
		}
	case codec.OpPing:
		reply(codec.Header{Op: codec.OpPong, Seq: f.Seq}, nil, nil)
	case codec.OpRequest:
		if f.Biz != 1 {
			reply(codec.Header{Op: codec.OpResponse, Biz: f.Biz, Seq: f.Seq, Status: codec.StatusUnknownBiz}, nil, nil)
			return true
		}
		reply(codec.Header{Op: codec.OpResponse, Biz: f.Biz, Seq: f.Seq}, nil, f.Body)
	case codec.OpPushAck:
		g.acks.Add(1)
	default:
		reply(codec.Header{Op: codec.OpKick, Status: codec.StatusBadFrame}, nil, nil)
		return false
	}
	return true
}

// join adds device to group; g.mu must be held.
func (g *fakeGateway) join(group, device string) {
	m := g.groups[group]
	if m == nil {
		m = map[string]bool{}
		g.groups[group] = m
	}
	m[device] = true
}

// push delivers data to device; it reports whether the device is online.
// The push is kept for resume either way, once the device has logged in.
func (g *fakeGateway) push(device string, biz int, data []byte, ack bool) bool {
	g.mu.Lock()
	d := g.devices[device]
	g.mu.Unlock()
	if d == nil {
		return false
	}
	var flags uint8
	if ack {
		flags = codec.FlagAckRequired
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	b := codec.AppendFrame(nil, codec.Header{Op: codec.OpPush, Biz: uint16(biz), Flags: flags, Seq: d.seq}, nil, data)
	if len(d.kept) == fakeKeep {
		d.kept = d.kept[1:]
	}
	d.kept = append(d.kept, b)
	if d.conn == nil || d.conn.write(b) != nil {
		return false
	}
	g.deliveries.Add(1)
	return true
}

func (g *fakeGateway) mux() http.Handler {
	m := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+g.apiKey {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	decode := func(r *http.Request, v any) error {
		if err := json.NewDecoder(r.Body).Decode(v); err != nil {
			return errors.New("bad json: " + err.Error())
		}
		return nil
	}
	m.HandleFunc("GET /v1/stats", auth(func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		reply(w, metrics.Snapshot{
			Node: "fake", Connections: g.conns.Load(), LoggedIn: g.loggedIn.Load(),
			Goroutines: int64(runtime.NumGoroutine()), HeapInuse: int64(ms.HeapInuse), RSS: selfRSS(),
			CPUSeconds: generatorStats().CPUSeconds, Push: metrics.PushStats{Deliveries: g.deliveries.Load(), Acks: g.acks.Load()},
		})
	}))
	m.HandleFunc("POST /v1/tokens", auth(func(w http.ResponseWriter, r *http.Request) {
		var req tokenRequest
		if err := decode(r, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tok, err := mintToken(g.secret, req.Device, req.App, req.Groups, time.Hour, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		reply(w, map[string]any{"token": tok, "endpoints": []map[string]string{{"proto": "tcp", "addr": g.ln.Addr().String()}}})
	}))
	m.HandleFunc("POST /v1/push", auth(func(w http.ResponseWriter, r *http.Request) {
		var b pushBody
		if err := decode(r, &b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res := api.PushResult{Offline: []string{}}
		for _, d := range b.Devices {
			if g.push(d, b.Biz, b.DataBase64, b.Ack) {
				res.Delivered++
			} else {
				res.Offline = append(res.Offline, d)
			}
		}
		reply(w, res)
	}))
	m.HandleFunc("POST /v1/groups/{group}/push", auth(func(w http.ResponseWriter, r *http.Request) {
		var b pushBody
		if err := decode(r, &b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		var members []string
		for d := range g.groups[r.PathValue("group")] {
			members = append(members, d)
		}
		g.mu.Unlock()
		n := 0
		for _, d := range members {
			if g.push(d, b.Biz, b.DataBase64, b.Ack) {
				n++
			}
		}
		reply(w, map[string]int{"delivered": n})
	}))
	m.HandleFunc("PUT /v1/groups/{group}/members", auth(func(w http.ResponseWriter, r *http.Request) {
		var b devicesBody
		if err := decode(r, &b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		for _, d := range b.Devices {
			g.join(r.PathValue("group"), d)
		}
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	m.HandleFunc("GET /v1/groups/{group}", auth(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		n := len(g.groups[r.PathValue("group")])
		g.mu.Unlock()
		reply(w, map[string]any{"group": r.PathValue("group"), "members": n})
	}))
	return m
}
