package conn

// FuzzLogin drives the session layer (Hub.prepare, Hub.data, Conn.feed,
// login, requests, kicks, release) with arbitrary client bytes, delivered
// in two reads, through a fake netpoll connection whose output goes to a
// real socket pair. It checks the session against a small model of
// docs/protocol.md and checks that nothing is left behind when the connection
// closes.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/auth"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
	"github.com/longlink/longlink/dispatch/upstream"
	"github.com/longlink/longlink/recovery"
	"github.com/longlink/longlink/route"
)

const (
	fuzzSecret   = "fuzz-secret-fuzz-secret-fuzz-secret!"
	fuzzMaxFrame = 4096 // small, so oversized declarations are reachable
	fuzzNode     = "fuzz-node"
)

// fakeConn is the part of a netpoll.Connection the hub uses: a reader
// over the bytes of one read, the close callbacks, and a descriptor (one
// end of a socket pair) for the downstream worker's writes. Like netpoll,
// it never runs the close callbacks while Data runs: a Close during Data
// is carried out when Data returns.
type fakeConn struct {
	netpoll.Connection // nil; calling anything not overridden panics

	fd int
	in []byte // the current read's bytes not yet consumed

	mu         sync.Mutex
	cbs        []netpoll.CloseCallback
	processing bool // Data is running
	closing    bool // Close was called
	done       bool // the callbacks ran
	closed     chan struct{}
}

func (f *fakeConn) Fd() int                { return f.fd }
func (f *fakeConn) Reader() netpoll.Reader { return (*fakeReader)(f) }
func (f *fakeConn) AddCloseCallback(cb netpoll.CloseCallback) error {
	f.mu.Lock()
	f.cbs = append(f.cbs, cb)
	f.mu.Unlock()
	return nil
}

// Close runs the close callbacks and then closes the descriptor, in
// netpoll's order, or leaves that to the end of Data.
func (f *fakeConn) Close() error {
	f.mu.Lock()
	f.closing = true
	run := !f.processing && !f.done
	f.done = f.done || run
	f.mu.Unlock()
	if run {
		f.finish()
	}
	return nil
}

func (f *fakeConn) finish() {
	for _, cb := range f.cbs {
		_ = cb(f)
	}
	_ = syscall.Close(f.fd)
	close(f.closed)
}

// data runs Hub.data as netpoll's processing task would, and reports
// false if it did not because the connection was closed.
func (f *fakeConn) data(h *Hub, ctx context.Context) (bool, error) {
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		return false, nil // netpoll does not call OnRequest on a closed connection
	}
	f.processing = true
	f.mu.Unlock()
	err := h.data(ctx, f)
	f.mu.Lock()
	f.processing = false
	run := f.closing && !f.done
	f.done = f.done || run
	f.mu.Unlock()
	if run {
		f.finish()
	}
	return true, err
}

// fakeReader serves one read. Once Data has returned (and released the
// read), run scribbles over the read's bytes, as netpoll may reuse its
// buffer: a frame kept past Release without a copy shows up as corrupted
// output.
type fakeReader fakeConn

func (r *fakeReader) Len() int { return len(r.in) }
func (r *fakeReader) Next(n int) ([]byte, error) {
	if n > len(r.in) {
		return nil, io.ErrUnexpectedEOF
	}
	p := r.in[:n:n]
	r.in = r.in[n:]
	return p, nil
}
func (r *fakeReader) Skip(n int) error { _, err := r.Next(n); return err }
func (r *fakeReader) Release() error   { return nil }

// Unused by the hub; present to satisfy netpoll.Reader.
func (r *fakeReader) Peek(int) ([]byte, error)          { panic("unused") }
func (r *fakeReader) Until(byte) ([]byte, error)        { panic("unused") }
func (r *fakeReader) ReadString(int) (string, error)    { panic("unused") }
func (r *fakeReader) ReadBinary(int) ([]byte, error)    { panic("unused") }
func (r *fakeReader) ReadByte() (byte, error)           { panic("unused") }
func (r *fakeReader) Slice(int) (netpoll.Reader, error) { panic("unused") }

// fuzzHub is one hub for every input of a fuzz run, as one node serves
// every connection.
type fuzzHub struct {
	h        *Hub
	route    route.Route
	verifier *auth.Verifier
}

// newFuzzHub builds the hub; mods, in order, may change its options.
func newFuzzHub(tb testing.TB, mods ...func(*Options)) *fuzzHub {
	tb.Helper()
	var hub *Hub
	down, err := downstream.New(downstream.Options{
		Workers:    2,
		MaxPending: 4 << 20,
	})
	if err != nil {
		tb.Fatal(err)
	}
	up, err := upstream.New([]upstream.Business{{ID: 1, Echo: true}}, upstream.Options{Node: fuzzNode})
	if err != nil {
		tb.Fatal(err)
	}
	rt := route.NewMemory()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := Options{
		Node:         fuzzNode,
		MaxFrame:     fuzzMaxFrame,
		Heartbeat:    time.Minute,
		IdleTimeout:  time.Hour,
		LoginTimeout: time.Hour,
		RecoverSize:  8,
		Verifier:     auth.NewVerifier([]byte(fuzzSecret)),
		Route:        rt,
		Recovery:     recovery.New(8, time.Minute),
		Down:         down,
		Upstream:     up,
		Logger:       log,
		OnTransition: func(c *Conn, from, to State) {
			if legal[from]&(1<<to) == 0 {
				panic(fmt.Sprintf("illegal transition %v -> %v", from, to))
			}
		},
	}
	for _, m := range mods {
		m(&opts)
	}
	hub = NewHub(opts)
	tb.Cleanup(func() {
		_ = up.Close(context.Background())
		hub.Close()
		down.Close()
	})
	return &fuzzHub{h: hub, route: opts.Route, verifier: auth.NewVerifier([]byte(fuzzSecret))}
}

// expected is what the model says the server sends for an input.
type expected struct {
	ordered   []string       // LOGIN_ACK and KICK, in order ("LOGIN_ACK OK", "KICK BAD_FRAME"...)
	unordered map[string]int // PONGs and RESPONSEs, whose order between them is free
	device    string         // logged-in device, "" if none
	selfClose bool           // the server ends the session on its own
	resumed   string         // LOGIN_ACK "resumed" meta, "" when absent
}

// model applies docs/protocol.md's session rules to the input, frame by frame.
func (fh *fuzzHub) model(input []byte) expected {
	e := expected{unordered: map[string]int{}}
	loggedIn := false
	rest := input
	for {
		f, n, err := codec.Decode(rest, fuzzMaxFrame)
		if err != nil {
			e.ordered = append(e.ordered, "KICK "+err.(*codec.Error).Status.String())
			e.selfClose = true
			return e
		}
		if n == 0 {
			return e // an incomplete frame, or nothing: the session goes on
		}
		rest = rest[n:]
		if !loggedIn {
			if f.Op != codec.OpLogin {
				e.ordered = append(e.ordered, "KICK NOT_LOGGED_IN")
				e.selfClose = true
				return e
			}
			tok, _ := f.Meta.Get("token")
			claims, verr := fh.verifier.Verify(tok, time.Now())
			if len(tok) == 0 || verr != nil {
				e.ordered = append(e.ordered, "LOGIN_ACK UNAUTHORIZED")
				e.selfClose = true
				return e
			}
			if rv, ok := f.Meta.Get("resume"); ok {
				v, perr := strconv.ParseUint(string(rv), 10, 32)
				if perr != nil {
					e.ordered = append(e.ordered, "LOGIN_ACK BAD_FRAME")
					e.selfClose = true
					return e
				}
				// No push ever reaches this hub: a device has no recovery
				// state, so only resume=0 is complete.
				e.resumed = "0"
				if v == 0 {
					e.resumed = "1"
				}
			}
			e.ordered = append(e.ordered, "LOGIN_ACK OK")
			e.device = claims.Device
			loggedIn = true
			continue
		}
		switch f.Op {
		case codec.OpPing:
			e.unordered[fmt.Sprintf("PONG %d", f.Seq)]++
		case codec.OpRequest:
			if f.Biz == 1 {
				e.unordered[fmt.Sprintf("RESPONSE OK biz 1 seq %d meta %x body %x", f.Seq, []byte(f.Meta), f.Body)]++
			} else {
				e.unordered[fmt.Sprintf("RESPONSE UNKNOWN_BIZ biz %d seq %d meta  body ", f.Biz, f.Seq)]++
			}
		case codec.OpPushAck:
		default: // a second LOGIN, or an op only the server sends
			e.ordered = append(e.ordered, "KICK BAD_FRAME")
			e.selfClose = true
			return e
		}
	}
}

// key names an output frame the way the model does.
func key(f codec.Frame) (string, bool) {
	switch f.Op {
	case codec.OpLoginAck, codec.OpKick:
		return f.Op.String() + " " + f.Status.String(), true
	case codec.OpPong:
		return fmt.Sprintf("PONG %d", f.Seq), false
	case codec.OpResponse:
		return fmt.Sprintf("RESPONSE %v biz %d seq %d meta %x body %x", f.Status, f.Biz, f.Seq, []byte(f.Meta), f.Body), false
	}
	return "unexpected " + f.Op.String(), true
}

// run feeds input in two reads split at cut and returns every frame the
// server wrote, with the connection closed at the end.
func (fh *fuzzHub) run(t *testing.T, input []byte, cut int, e expected) []codec.Frame {
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetNonblock(pair[0], true); err != nil {
		t.Fatal(err)
	}
	var outMu sync.Mutex
	var outBuf []byte
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		var buf [16 << 10]byte
		for {
			n, err := syscall.Read(pair[1], buf[:])
			if err == syscall.EINTR {
				continue
			}
			if n <= 0 || err != nil {
				break
			}
			outMu.Lock()
			outBuf = append(outBuf, buf[:n]...)
			outMu.Unlock()
		}
		syscall.Close(pair[1])
	}()
	answers := func() int { // PONGs and RESPONSEs written so far
		outMu.Lock()
		defer outMu.Unlock()
		n := 0
		for b := outBuf; ; {
			f, k, err := codec.Decode(b, 1<<24)
			if err != nil || k == 0 {
				return n
			}
			if f.Op == codec.OpPong || f.Op == codec.OpResponse {
				n++
			}
			b = b[k:]
		}
	}

	nc := &fakeConn{fd: pair[0], closed: make(chan struct{})}
	ctx := fh.h.prepare(nc, TCP)
	c, _ := ctx.(*Conn)
	if c == nil {
		t.Fatal("prepare refused the connection")
	}
	for _, chunk := range [][]byte{input[:cut], input[cut:]} {
		if len(chunk) == 0 {
			continue
		}
		nc.in = bytes.Clone(chunk)
		read := nc.in
		ran, err := nc.data(fh.h, ctx)
		if err != nil {
			t.Fatalf("data: %v", err)
		}
		if ran && len(nc.in) != 0 {
			t.Fatalf("data left %d bytes unconsumed", len(nc.in))
		}
		for i := range read {
			read[i] = 0xA5 // netpoll may reuse the buffer once released
		}
	}
	if !e.selfClose {
		// Let every answer arrive, then close the session as a drain
		// would, so the output ends with a known KICK.
		want := 0
		for _, n := range e.unordered {
			want += n
		}
		deadline := time.Now().Add(5 * time.Second)
		for (answers() < want || c.state.Load()&inputLocked != 0) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Microsecond) // polling: the answers, and a login on a worker
		}
		c.kick(codec.StatusShuttingDown, "fuzz input ended")
	}
	select {
	case <-nc.closed:
	case <-time.After(5 * time.Second):
		t.Fatalf("connection not closed 5s after the input ended (state %v)", c.State())
	}
	select {
	case <-outDone:
	case <-time.After(5 * time.Second):
		t.Fatal("output not closed")
	}
	b := outBuf
	var frames []codec.Frame
	for len(b) > 0 {
		f, n, err := codec.Decode(b, 1<<24)
		if err != nil || n == 0 {
			t.Fatalf("server output is not whole frames: err %v, %d bytes left: %x", err, len(b), b)
		}
		frames = append(frames, f)
		b = b[n:]
	}
	return frames
}

// FuzzLogin checks, for any input delivered in two reads:
//   - the hub neither panics nor hangs, and closes the connection;
//   - what it writes is whole frames that match the model: LOGIN_ACK
//     first when the input starts with LOGIN, each PING answered by its
//     PONG, each REQUEST by its RESPONSE (echo: same body and meta), a
//     KICK with the status docs/protocol.md prescribes, nothing after it;
//   - once closed, the connection has left every index: no open or
//     logged-in connection is counted and the device is not routed here.
func FuzzLogin(f *testing.F) {
	addLoginSeeds(f)
	fh := newFuzzHub(f)
	f.Fuzz(func(t *testing.T, input []byte, split uint16) { fh.check(t, input, split) })
}

// FuzzLoginShared is FuzzLogin on a hub whose route is shared: the
// login's route work runs on a login worker, and the frames behind the
// LOGIN wait for it (login.go). An input whose frames behind its first
// exceed MaxLoginInput is kicked for it, when it is, depending on whether
// the second read comes before the login is done; such inputs are out of
// this model's range.
func FuzzLoginShared(f *testing.F) {
	addLoginSeeds(f)
	fh := newFuzzHub(f, func(o *Options) { o.SharedRoute = true })
	f.Fuzz(func(t *testing.T, input []byte, split uint16) {
		if _, n, _ := codec.Decode(input, fuzzMaxFrame); len(input)-n > MaxLoginInput {
			t.Skip("more than MaxLoginInput behind the LOGIN")
		}
		fh.check(t, input, split)
	})
}

// addLoginSeeds adds the seeds of the login fuzzers.
func addLoginSeeds(f *testing.F) {
	good := func(sub string, extra jwt.MapClaims) string {
		claims := jwt.MapClaims{"sub": sub, "exp": 4102444800} // 2100-01-01
		for k, v := range extra {
			claims[k] = v
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(fuzzSecret))
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	frame := func(h codec.Header, kv ...string) []byte {
		var m []byte
		for i := 0; i+1 < len(kv); i += 2 {
			m = codec.AppendMetaString(m, kv[i], kv[i+1])
		}
		return codec.AppendFrame(nil, h, m, nil)
	}
	login := func(kv ...string) []byte { return frame(codec.Header{Op: codec.OpLogin, Seq: 1}, kv...) }
	ping := frame(codec.Header{Op: codec.OpPing, Seq: 7})
	req := codec.AppendFrame(nil, codec.Header{Op: codec.OpRequest, Biz: 1, Seq: 9}, codec.AppendMetaString(nil, "k", "v"), []byte("body"))
	tok := good("fuzz-dev", nil)

	seeds := [][]byte{
		login("token", tok),
		slices.Concat(login("token", tok), ping, req),
		slices.Concat(login("token", tok, "resume", "0"), ping),
		slices.Concat(login("token", tok, "resume", "42"), ping),
		login("token", tok, "resume", "-1"),
		login("token", tok, "resume", "99999999999"),
		login("token", good("fuzz-grp", jwt.MapClaims{"groups": []string{"g1", "g2"}, "app": "a"})),
		login("token", tok[:len(tok)-2]+"xx"),
		login("token", ""),
		login(),
		login("token", "a.b.c"),
		ping,
		slices.Concat(login("token", tok), login("token", tok)),
		slices.Concat(login("token", tok), frame(codec.Header{Op: codec.OpPush, Seq: 1})),
		slices.Concat(login("token", tok), frame(codec.Header{Op: codec.OpPushAck, Seq: 3}), ping),
		slices.Concat(login("token", tok), codec.AppendFrame(nil, codec.Header{Op: codec.OpRequest, Biz: 2, Seq: 3}, nil, []byte("x"))),
		slices.Concat(login("token", tok), ping[:10]),
		login("token", tok)[:30],
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
	for _, s := range seeds {
		f.Add(s, uint16(len(s)/2))
	}
}

// check runs one input through the hub and checks it against the model.
func (fh *fuzzHub) check(t *testing.T, input []byte, split uint16) {
	{
		if len(input) > 64<<10 {
			t.Skip("bounded input")
		}
		cut := 0
		if len(input) > 0 {
			cut = int(split) % (len(input) + 1)
		}
		e := fh.model(input)
		frames := fh.run(t, input, cut, e)

		var ordered []string
		unordered := map[string]int{}
		for i, fr := range frames {
			k, isOrdered := key(fr)
			if isOrdered {
				ordered = append(ordered, k)
			} else {
				unordered[k]++
			}
			if fr.Op == codec.OpKick && i != len(frames)-1 {
				t.Errorf("frames after the KICK: %v", describe(frames[i:]))
			}
			if fr.Op == codec.OpLoginAck && i != 0 {
				t.Errorf("LOGIN_ACK is frame %d, not the first", i)
			}
			if fr.Op == codec.OpLoginAck && fr.Status == codec.StatusOK {
				if got, _ := fr.Meta.Get("resumed"); string(got) != e.resumed {
					t.Errorf("LOGIN_ACK resumed=%q, want %q", got, e.resumed)
				}
			}
			if fr.Op == codec.OpKick {
				if r, _ := fr.Meta.Get("reason"); len(r) == 0 {
					t.Error("KICK without a reason")
				}
			}
		}
		wantOrdered := e.ordered
		if !e.selfClose {
			wantOrdered = append(slices.Clone(wantOrdered), "KICK SHUTTING_DOWN")
		}
		if !slices.Equal(ordered, wantOrdered) {
			t.Errorf("LOGIN_ACK/KICK frames %q, want %q", ordered, wantOrdered)
		}
		for k, n := range unordered {
			if e.unordered[k] < n {
				t.Errorf("unexpected %q (x%d, model x%d)", k, n, e.unordered[k])
			}
		}
		if !e.selfClose {
			for k, n := range e.unordered {
				if unordered[k] != n {
					t.Errorf("missing %q: got x%d, want x%d", k, unordered[k], n)
				}
			}
		}

		cs := fh.h.Counters()
		if cs.Connections != 0 || cs.LoggedIn != 0 {
			t.Fatalf("after the close: %d connections, %d logged in", cs.Connections, cs.LoggedIn)
		}
		if e.device != "" {
			if fh.h.Lookup(e.device) != nil {
				t.Fatalf("device %q still in the registry after its connection closed", e.device)
			}
			// With a shared route the release's route calls run on a
			// goroutine of their own (Hub.releaseDevice).
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, online, _ := fh.route.Lookup(context.Background(), e.device)
				if !online {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("device %q still routed after its connection closed", e.device)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
}

func describe(fs []codec.Frame) []string {
	var s []string
	for _, f := range fs {
		k, _ := key(f)
		s = append(s, k)
	}
	return s
}
