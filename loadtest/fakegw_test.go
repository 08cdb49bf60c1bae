package main

import (
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

	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/metrics"
)

// fakeGateway is a small, goroutine-per-connection implementation of the
// protocol and of the API calls the generator makes, so the generator's
// scenarios can be tested whether or not the real gateway builds. It is
// deliberately simple; the smoke test runs against the real one.
type fakeGateway struct {
	t      *testing.T
	secret []byte
	apiKey string
	ln     net.Listener
	http   *httptest.Server

	mu      sync.Mutex
	devices map[string]*fakeConn
	groups  map[string]map[string]bool
	nextID  int

	conns      atomic.Int64
	loggedIn   atomic.Int64
	deliveries atomic.Uint64
	acks       atomic.Uint64
	wg         sync.WaitGroup
}

type fakeConn struct {
	nc      net.Conn
	wmu     sync.Mutex
	pushSeq uint32 // guarded by wmu
}

func (c *fakeConn) write(b []byte) {
	c.wmu.Lock()
	_, _ = c.nc.Write(b)
	c.wmu.Unlock()
}

func startFakeGateway(t *testing.T, secret, apiKey string) *fakeGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{t: t, secret: []byte(secret), apiKey: apiKey, ln: ln,
		devices: map[string]*fakeConn{}, groups: map[string]map[string]bool{}}
	g.http = httptest.NewServer(g.mux())
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(g.close)
	return g
}

func (g *fakeGateway) close() {
	_ = g.ln.Close()
	g.http.Close()
	g.mu.Lock()
	for _, c := range g.devices {
		_ = c.nc.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *fakeGateway) accept() {
	defer g.wg.Done()
	for {
		nc, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.wg.Add(1)
		go g.serve(nc)
	}
}

func (g *fakeGateway) serve(nc net.Conn) {
	defer g.wg.Done()
	g.conns.Add(1)
	defer g.conns.Add(-1)
	c := &fakeConn{nc: nc}
	device := ""
	defer func() {
		_ = nc.Close()
		if device != "" {
			g.loggedIn.Add(-1)
			g.mu.Lock()
			if g.devices[device] == c {
				delete(g.devices, device)
			}
			g.mu.Unlock()
		}
	}()
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
		if old := g.devices[cl.Subject]; old != nil {
			_ = old.nc.Close()
		}
		g.devices[cl.Subject] = c
		for _, grp := range cl.Groups {
			g.join(grp, cl.Subject)
		}
		g.nextID++
		id := g.nextID
		g.mu.Unlock()
		meta := codec.AppendMetaString(nil, "conn", strconv.Itoa(id))
		meta = codec.AppendMetaString(meta, "node", "fake")
		meta = codec.AppendMetaString(meta, "hb", "1")
		if _, ok := f.Meta.Get("resume"); ok {
			meta = codec.AppendMetaString(meta, "resumed", "1")
		}
		reply(codec.Header{Op: codec.OpLoginAck, Seq: f.Seq}, meta, nil)
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
func (g *fakeGateway) push(device string, biz int, data []byte, ack bool) bool {
	g.mu.Lock()
	c := g.devices[device]
	g.mu.Unlock()
	if c == nil {
		return false
	}
	var flags uint8
	if ack {
		flags = codec.FlagAckRequired
	}
	c.wmu.Lock()
	c.pushSeq++
	b := codec.AppendFrame(nil, codec.Header{Op: codec.OpPush, Biz: uint16(biz), Flags: flags, Seq: c.pushSeq}, nil, data)
	_, err := c.nc.Write(b)
	c.wmu.Unlock()
	if err == nil {
		g.deliveries.Add(1)
	}
	return err == nil
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
