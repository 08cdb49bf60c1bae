package client

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// fakeGW is a minimal gateway speaking docs/protocol.md, scripted by the test:
// it lets the client's state machine be tested without the real server,
// including faults the real one cannot be made to produce on demand.
type fakeGW struct {
	t    *testing.T
	ln   net.Listener
	node string
	wg   sync.WaitGroup

	noPong    atomic.Bool   // stop answering PINGs
	acked     atomic.Uint32 // highest PUSH_ACK seq
	ackFrames atomic.Int64  // PUSH_ACK frames received
	pings     atomic.Int64
	pingMeta  atomic.Pointer[[2]string] // the last PING's meta rtt and net

	mu        sync.Mutex
	conns     []*fakeConn
	logins    []fakeLogin
	resumed   string                                                   // LOGIN_ACK resumed when resume is sent; "" means "1"
	hb        int                                                      // LOGIN_ACK hb; 0 means 1
	tokenOK   func(token string) bool                                  // nil: token == "good"
	onRequest func(fc *fakeConn, f codec.Frame) (codec.Status, []byte) // nil: echo; status 0xFFFF: no answer
	seq       uint32                                                   // push seq counter
}

type fakeLogin struct {
	token, resume string
	hasResume     bool
}

type fakeConn struct {
	nc  net.Conn
	wmu sync.Mutex
}

func (fc *fakeConn) send(h codec.Header, meta, body []byte) error {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_, err := fc.nc.Write(codec.AppendFrame(nil, h, meta, body))
	return err
}

func newFakeGW(t *testing.T, node string) *fakeGW {
	t.Helper()
	return newFakeGWTLS(t, node, nil)
}

// newFakeGWTLS is newFakeGW serving TLS when tc is not nil.
func newFakeGWTLS(t *testing.T, node string, tc *tls.Config) *fakeGW {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	g := &fakeGW{t: t, ln: ln, node: node}
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(g.close)
	return g
}

func (g *fakeGW) addr() string { return g.ln.Addr().String() }

func (g *fakeGW) endpoint() Endpoint { return Endpoint{Proto: "tcp", Addr: g.addr()} }

func (g *fakeGW) close() {
	g.ln.Close()
	g.mu.Lock()
	for _, fc := range g.conns {
		fc.nc.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *fakeGW) accept() {
	defer g.wg.Done()
	for {
		nc, err := g.ln.Accept()
		if err != nil {
			return
		}
		fc := &fakeConn{nc: nc}
		g.mu.Lock()
		g.conns = append(g.conns, fc)
		g.mu.Unlock()
		g.wg.Add(1)
		go g.serve(fc)
	}
}

// current is the newest connection that logged in.
func (g *fakeGW) current() *fakeConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.conns) == 0 {
		return nil
	}
	return g.conns[len(g.conns)-1]
}

func (g *fakeGW) loginsCopy() []fakeLogin {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]fakeLogin(nil), g.logins...)
}

// push sends a PUSH with the next seq to the current connection.
func (g *fakeGW) push(biz uint16, id string, ack bool, body string) uint32 {
	g.mu.Lock()
	g.seq++
	seq := g.seq
	g.mu.Unlock()
	g.pushSeq(biz, seq, id, ack, body)
	return seq
}

// pushSeq sends a PUSH with an explicit seq (for duplicates).
func (g *fakeGW) pushSeq(biz uint16, seq uint32, id string, ack bool, body string) {
	var meta []byte
	if id != "" {
		meta = codec.AppendMetaString(meta, "id", id)
	}
	h := codec.Header{Op: codec.OpPush, Biz: biz, Seq: seq}
	if ack {
		h.Flags = codec.FlagAckRequired
	}
	if fc := g.current(); fc != nil {
		fc.send(h, meta, []byte(body))
	}
}

// kick sends KICK to the current connection and closes it.
func (g *fakeGW) kick(status codec.Status, reason, redirect string) {
	meta := codec.AppendMetaString(nil, "reason", reason)
	if redirect != "" {
		meta = codec.AppendMetaString(meta, "redirect", redirect)
	}
	if fc := g.current(); fc != nil {
		fc.send(codec.Header{Op: codec.OpKick, Status: status}, meta, nil)
		fc.nc.Close()
	}
}

func (g *fakeGW) serve(fc *fakeConn) {
	defer g.wg.Done()
	defer fc.nc.Close()
	br := bufio.NewReader(fc.nc)
	buf := make([]byte, 1<<16)
	read := func() (codec.Frame, error) {
		if _, err := io.ReadFull(br, buf[:codec.HeaderSize]); err != nil {
			return codec.Frame{}, err
		}
		h, err := codec.ParseHeader(buf, len(buf))
		if err != nil {
			return codec.Frame{}, err
		}
		if _, err := io.ReadFull(br, buf[codec.HeaderSize:h.Size()]); err != nil {
			return codec.Frame{}, err
		}
		f, _, err := codec.Decode(buf[:h.Size()], len(buf))
		return f, err
	}
	f, err := read()
	if err != nil || f.Op != codec.OpLogin {
		return
	}
	token, _ := f.Meta.Get("token")
	resume, hasResume := f.Meta.Get("resume")
	g.mu.Lock()
	g.logins = append(g.logins, fakeLogin{string(token), string(resume), hasResume})
	ok := g.tokenOK == nil && string(token) == "good" || g.tokenOK != nil && g.tokenOK(string(token))
	resumed, hb := g.resumed, g.hb
	g.mu.Unlock()
	if !ok {
		fc.send(codec.Header{Op: codec.OpLoginAck, Seq: f.Seq, Status: codec.StatusUnauthorized},
			codec.AppendMetaString(nil, "reason", "bad token"), nil)
		return
	}
	if resumed == "" {
		resumed = "1"
	}
	if hb == 0 {
		hb = 1
	}
	meta := codec.AppendMetaString(nil, "conn", "1")
	meta = codec.AppendMetaString(meta, "node", g.node)
	meta = codec.AppendMetaString(meta, "hb", strconv.Itoa(hb))
	if hasResume {
		meta = codec.AppendMetaString(meta, "resumed", resumed)
	}
	fc.send(codec.Header{Op: codec.OpLoginAck, Seq: f.Seq}, meta, nil)
	for {
		f, err := read()
		if err != nil {
			return
		}
		switch f.Op {
		case codec.OpPing:
			rtt, _ := f.Meta.Get("rtt")
			nt, _ := f.Meta.Get("net")
			g.pingMeta.Store(&[2]string{string(rtt), string(nt)})
			g.pings.Add(1)
			if !g.noPong.Load() {
				fc.send(codec.Header{Op: codec.OpPong, Seq: f.Seq}, nil, nil)
			}
		case codec.OpPushAck:
			g.ackFrames.Add(1)
			for {
				old := g.acked.Load()
				if f.Seq <= old || g.acked.CompareAndSwap(old, f.Seq) {
					break
				}
			}
		case codec.OpRequest:
			g.mu.Lock()
			on := g.onRequest
			g.mu.Unlock()
			status, body := codec.StatusOK, append([]byte(nil), f.Body...)
			if on != nil {
				status, body = on(fc, f)
			}
			if status != 0xFFFF {
				fc.send(codec.Header{Op: codec.OpResponse, Biz: f.Biz, Seq: f.Seq, Status: status}, nil, body)
			}
		}
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
