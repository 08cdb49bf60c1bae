package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
	gws "github.com/longlink/longlink/websocket"
)

// slot is one simulated device: its id and its current connection. The
// connection changes on reconnect (mixed scenario); the device, and the
// highest push seq it has received (for resume), stay.
type slot struct {
	idx      int
	device   string
	cur      atomic.Pointer[client]
	lastPush atomic.Uint32 // highest PUSH seq received by any of its connections
	token    string        // login token prepared before the connect phase; used once
	sdk      *sdkDevice    // -sdk: the device's client.Client (cur stays nil)
}

// isUp reports whether the device is logged in now.
func (s *slot) isUp() bool {
	if s.sdk != nil {
		return s.sdk.up.Load()
	}
	return s.cur.Load() != nil
}

// client is one connection. Its reader goroutine owns the read buffer; all
// writes go through send, serialised by wmu, from whichever goroutine
// produces them (dialer, heartbeat loop, request lanes, the reader's acks).
// There is no writer goroutine and no timer per connection.
type client struct {
	r  *runner
	s  *slot
	nc net.Conn

	wmu     sync.Mutex // serialises writes and guards pingSeq
	pingSeq uint32     // last PING seq sent

	pingOut  atomic.Uint32 // seq of the outstanding PING, 0 = none
	pingAt   atomic.Int64  // its send time, runner-relative nanos
	inflight atomic.Int32  // REQUESTs sent and not answered
	draining atomic.Bool   // picked for a reconnect: send no new REQUEST
	closing  atomic.Bool   // we close it: the disconnect is not an error
	kicked   atomic.Bool   // a KICK arrived: the disconnect is counted there

	rbuf   []byte         // reader-owned
	rs, re int            // unconsumed bytes are rbuf[rs:re]
	need   int            // bytes from rs that the next frame needs, set by next
	full   bool           // the last read filled rbuf: traffic is heavy, grow it
	frag   []byte         // WebSocket: a fragmented message being put together (nil almost always)
	arr    *arrivalReader // plain TCP on Linux: reads with the kernel's receive time; nil otherwise

	done chan struct{} // closed when the reader returns
}

// initialReadBuf is each connection's first read buffer. Idle connections
// are what a load generator holds most of, so it starts small; it doubles
// when a read fills it (a push storm), up to maxReadBuf, and grows further
// only to fit one larger frame.
const (
	initialReadBuf = 512
	maxReadBuf     = 8192
)

var errLogin = errors.New("login failed")

// send writes one encoded frame. A failed write closes the connection.
func (c *client) send(b []byte) error {
	c.wmu.Lock()
	err := c.write(b)
	c.wmu.Unlock()
	return err
}

// writeTimeout bounds a write to one connection, so a server that stops
// reading cannot hold a request lane or the heartbeat loop for long.
const writeTimeout = 5 * time.Second

// write writes b, one or more whole frames; wmu must be held. Over
// WebSocket each frame goes out as its own masked binary message, built in
// a pooled buffer, all in one write.
func (c *client) write(b []byte) error {
	if !c.r.ws {
		return c.writeRaw(b)
	}
	bp := wsBufs.Get().(*[]byte)
	out := wsAppendMessages((*bp)[:0], b)
	err := c.writeRaw(out)
	*bp = out[:0]
	wsBufs.Put(bp)
	return err
}

// wsBufs holds the buffers WebSocket writes are masked into: masking needs
// a copy, and a pool keeps that from costing a buffer per connection.
var wsBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// sendControl sends a WebSocket control frame (pong, close). A failure is
// not counted: the answer to a close races the server's own close, and a
// broken connection shows on the next read anyway.
func (c *client) sendControl(op byte, payload []byte) {
	var b [gws.MaxHeader + 125]byte
	c.wmu.Lock()
	_ = c.writeRawQuiet(gws.AppendClientFrame(b[:0], op, payload, gws.NewMask()), true)
	c.wmu.Unlock()
}

// writeRaw writes b as it is; wmu must be held.
func (c *client) writeRaw(b []byte) error { return c.writeRawQuiet(b, false) }

// writeRawQuiet is writeRaw; quiet does not count a failure as an error.
func (c *client) writeRawQuiet(b []byte, quiet bool) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.nc.Write(b)
	if err != nil {
		if !c.closing.Load() && !quiet {
			c.r.c.writeErrors.Add(1)
			c.r.noteError(fmt.Sprintf("write %s: %v", c.s.device, err))
		}
		_ = c.nc.Close()
	}
	return err
}

// usable reports whether requests may be sent on c.
func (c *client) usable() bool {
	return c != nil && !c.closing.Load() && !c.draining.Load() && !c.kicked.Load()
}

// ping sends a PING and remembers its time for the RTT.
func (c *client) ping() {
	var b [codec.HeaderSize]byte
	c.wmu.Lock()
	c.pingSeq++
	if c.pingSeq == 0 {
		c.pingSeq = 1
	}
	seq := c.pingSeq
	codec.PutHeader(b[:], &codec.Header{Op: codec.OpPing, Seq: seq})
	c.pingAt.Store(c.r.mono())
	c.pingOut.Store(seq)
	err := c.write(b[:])
	c.wmu.Unlock()
	if err == nil {
		c.r.c.pings.Add(1)
	}
}

// close closes c on purpose (not an error).
func (c *client) close() {
	c.closing.Store(true)
	_ = c.nc.Close()
}

// readFrame returns the next whole frame, reading as needed. The frame
// aliases rbuf and is valid until the next call.
func (c *client) readFrame() (codec.Frame, error) {
	for {
		f, ok, err := c.next()
		if err != nil {
			return codec.Frame{}, err
		}
		if ok {
			return f, nil
		}
		if err := c.fill(c.need); err != nil {
			return codec.Frame{}, err
		}
	}
}

// next takes the next whole frame out of rbuf without reading; ok is
// false when more bytes are needed (c.need from rs). The frame aliases
// rbuf (or, for a fragmented WebSocket message, c.frag) and is valid until
// the next call.
func (c *client) next() (f codec.Frame, ok bool, err error) {
	if c.r.ws {
		return c.nextWS()
	}
	f, n, err := codec.Decode(c.rbuf[c.rs:c.re], c.r.cfg.MaxFrame)
	if err != nil {
		return f, false, err
	}
	if n > 0 {
		c.rs += n
		return f, true, nil
	}
	c.need = codec.HeaderSize
	if c.re-c.rs >= codec.HeaderSize {
		h, err := codec.ParseHeader(c.rbuf[c.rs:c.re], c.r.cfg.MaxFrame)
		if err != nil {
			return f, false, err
		}
		c.need = h.Size()
	}
	return f, false, nil
}

// nextWS is next over WebSocket: server frames are parsed in place, and
// each binary message must hold exactly one protocol frame. Pings are
// answered; a close frame is answered and ends the connection
// (errWSClosed).
func (c *client) nextWS() (codec.Frame, bool, error) {
	msg, ok, err := c.nextWSMessage()
	if err != nil || !ok {
		return codec.Frame{}, false, err
	}
	return wsFrame(msg, c.r.cfg.MaxFrame)
}

// nextWSMessage takes the next whole binary message out of rbuf without
// reading; ok is false when more bytes are needed (c.need from rs). The
// message aliases rbuf (or c.frag) and is valid until the next call or
// fill. Control frames are handled on the way, as nextWS says.
func (c *client) nextWSMessage() (msg []byte, ok bool, err error) {
	max := c.r.cfg.MaxFrame
	for {
		b := c.rbuf[c.rs:c.re]
		h, n, err := gws.ParseServerHeader(b, max)
		if errors.Is(err, gws.ErrTooBig) {
			return nil, false, fmt.Errorf("%w: above -max-frame %d", err, max)
		}
		if err != nil {
			return nil, false, err
		}
		if n == 0 {
			c.need = gws.MaxHeader
			return nil, false, nil
		}
		if len(b) < n+h.Len {
			c.need = n + h.Len
			return nil, false, nil
		}
		payload := b[n : n+h.Len : n+h.Len]
		c.rs += n + h.Len
		switch h.Op {
		case gws.OpBinary:
			if c.frag != nil {
				return nil, false, errors.New("websocket: a new message began inside a fragmented one")
			}
			if !h.Fin {
				c.frag = append(make([]byte, 0, 2*len(payload)), payload...)
				continue
			}
			return payload, true, nil
		case gws.OpContinuation:
			if c.frag == nil {
				return nil, false, errors.New("websocket: continuation without a message")
			}
			if len(c.frag)+len(payload) > max {
				return nil, false, fmt.Errorf("websocket: message above -max-frame %d", max)
			}
			c.frag = append(c.frag, payload...)
			if !h.Fin {
				continue
			}
			msg := c.frag
			c.frag = nil
			return msg, true, nil
		case gws.OpText:
			return nil, false, errors.New("websocket: text message from the server")
		case gws.OpPing:
			c.sendControl(gws.OpPong, payload)
		case gws.OpPong:
		case gws.OpClose:
			code := uint16(gws.CloseNormal)
			if len(payload) >= 2 {
				code = binary.BigEndian.Uint16(payload)
			}
			var cb [2]byte
			binary.BigEndian.PutUint16(cb[:], code)
			c.sendControl(gws.OpClose, cb[:])
			if len(payload) > 2 {
				return nil, false, fmt.Errorf("%w (%d %q)", errWSClosed, code, payload[2:])
			}
			return nil, false, fmt.Errorf("%w (%d)", errWSClosed, code)
		}
	}
}

// wsFrame decodes one whole message: exactly one protocol frame.
func wsFrame(msg []byte, max int) (codec.Frame, bool, error) {
	f, n, err := codec.Decode(msg, max)
	if err != nil {
		return f, false, err
	}
	if n == 0 || n != len(msg) {
		return f, false, fmt.Errorf("websocket: a message of %d bytes does not hold exactly one frame", len(msg))
	}
	return f, true, nil
}

// fill makes room for need bytes from rs (compacting, or growing) and
// reads once.
func (c *client) fill(need int) error {
	if c.rs == c.re {
		c.rs, c.re = 0, 0
	}
	if c.rs > 0 && c.rs+need > len(c.rbuf) {
		c.re = copy(c.rbuf, c.rbuf[c.rs:c.re])
		c.rs = 0
	}
	if c.full && len(c.rbuf) < maxReadBuf {
		need = max(need, 2*len(c.rbuf))
	}
	if need > len(c.rbuf) {
		size := len(c.rbuf)
		for size < need {
			size *= 2
		}
		nb := make([]byte, size)
		c.re = copy(nb, c.rbuf[c.rs:c.re])
		c.rs = 0
		c.rbuf = nb
	}
	var n int
	var err error
	if c.arr != nil {
		n, err = c.arr.Read(c.rbuf[c.re:])
	} else {
		n, err = c.nc.Read(c.rbuf[c.re:])
	}
	c.full = c.re+n == len(c.rbuf)
	c.re += n
	if n > 0 {
		return nil
	}
	return err
}

// upgrade makes the WebSocket opening handshake (before LOGIN). What the
// server sends right behind its answer stays in rbuf.
func (c *client) upgrade(host string) error { return c.upgradeWithKey(host, gws.NewKey()) }

func (c *client) upgradeWithKey(host, key string) error {
	c.wmu.Lock()
	err := c.writeRaw(gws.AppendHandshake(make([]byte, 0, 256), host, "/", key))
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.r.cfg.DialTimeout))
	for {
		n, err := gws.ParseAccept(c.rbuf[c.rs:c.re], key)
		if err != nil {
			return err
		}
		if n > 0 {
			c.rs += n
			return nil
		}
		if err := c.fill(min(c.re-c.rs+512, gws.MaxAccept)); err != nil {
			return err
		}
	}
}

// login sends LOGIN and waits for LOGIN_ACK (before the reader starts).
// It returns the LOGIN_ACK meta values the runner uses.
func (c *client) login(token string, resume bool) (hb time.Duration, resumed bool, err error) {
	meta := codec.AppendMetaString(nil, "token", token)
	if resume {
		meta = codec.AppendMetaString(meta, "resume", strconv.FormatUint(uint64(c.s.lastPush.Load()), 10))
	}
	b := codec.AppendFrame(make([]byte, 0, codec.HeaderSize+len(meta)), codec.Header{Op: codec.OpLogin, Seq: 1}, meta, nil)
	if err := c.send(b); err != nil {
		return 0, false, err
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.r.cfg.DialTimeout))
	f, err := c.readFrame()
	if err != nil {
		return 0, false, err
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	switch {
	case f.Op == codec.OpKick:
		reason, _ := f.Meta.Get("reason")
		return 0, false, fmt.Errorf("%w: KICK %s %q", errLogin, f.Status, reason)
	case f.Op != codec.OpLoginAck:
		return 0, false, fmt.Errorf("%w: got %s before LOGIN_ACK", errLogin, f.Op)
	case f.Status != codec.StatusOK:
		return 0, false, fmt.Errorf("%w: LOGIN_ACK %s", errLogin, f.Status)
	}
	if v, ok := f.Meta.Get("hb"); ok {
		if s, err := strconv.Atoi(string(v)); err == nil && s > 0 {
			hb = time.Duration(s) * time.Second
		}
	}
	if v, ok := f.Meta.Get("resumed"); ok {
		resumed = string(v) == "1"
	}
	return hb, resumed, nil
}

// readLoop handles every frame after LOGIN_ACK until the connection ends.
func (c *client) readLoop() {
	r := c.r
	defer func() {
		_ = c.nc.Close()
		r.c.addUp(-1)
		c.s.cur.CompareAndSwap(c, nil)
		close(c.done)
		r.readers.Done()
	}()
	var b readBatch
	for {
		b.wall, b.mono = 0, 0
		for {
			f, ok, err := c.next()
			if errors.Is(err, errWSClosed) {
				c.ended(err)
				return
			}
			if err != nil {
				r.c.protoErrors.Add(1)
				r.noteError(fmt.Sprintf("decode from server on %s: %v", c.s.device, err))
				return
			}
			if !ok {
				break
			}
			c.handle(&f, &b)
		}
		c.endBatch(&b)
		if err := c.fill(c.need); err != nil {
			c.ended(err)
			return
		}
	}
}

// readBatch is what the frames of one read share: they arrived together,
// so the clock is read once for all of them (reading it per frame was a
// seventh of the generator's CPU at a million deliveries a second), and
// their deliveries are counted and recorded in one go.
type readBatch struct {
	wall, mono int64 // when the read returned (Unix nanos, runner nanos); 0 until asked
	ackSeq     uint32
	n          int               // delivery latencies in lat not yet recorded
	lat        [64]time.Duration // the latencies, recorded when full or at the batch's end
}

// clock returns the batch's arrival time, reading the clock on first use.
func (b *readBatch) clock(r *runner) (wall, mono int64) {
	if b.wall == 0 {
		now := time.Now()
		b.wall, b.mono = now.UnixNano(), int64(now.Sub(r.t0))
	}
	return b.wall, b.mono
}

// delivered adds one delivery's latency, recording when the buffer fills.
func (c *client) delivered(b *readBatch, d time.Duration) {
	b.lat[b.n] = d
	b.n++
	if b.n == len(b.lat) {
		c.flushDeliveries(b)
	}
}

func (c *client) flushDeliveries(b *readBatch) {
	if b.n == 0 {
		return
	}
	r := c.r
	r.lat[kindDelivery].recordAll(c.s.idx, b.lat[:b.n])
	r.c.deliveries.Add(int64(b.n))
	storeMax(&r.c.lastDelivery, b.wall)
	if c.arr != nil && c.arr.ts != 0 {
		// The frames of one read arrived with its last segment: each
		// arrival latency is the delivery latency less the time the
		// generator took to read them.
		lag := time.Duration(max(b.wall-c.arr.ts, 0))
		for i := range b.lat[:b.n] {
			b.lat[i] -= lag
		}
		r.lat[kindArrival].recordAll(c.s.idx, b.lat[:b.n])
	}
	b.n = 0
}

// endBatch records the batch's deliveries and sends the PUSH_ACK it
// collected.
func (c *client) endBatch(b *readBatch) {
	c.flushDeliveries(b)
	if b.ackSeq != 0 {
		var h [codec.HeaderSize]byte
		codec.PutHeader(h[:], &codec.Header{Op: codec.OpPushAck, Seq: b.ackSeq})
		if c.send(h[:]) == nil {
			c.r.c.acks.Add(1)
		}
		b.ackSeq = 0
	}
}

// ended counts the end of the connection as a disconnect, unless we
// closed it, it was kicked, or the run is over.
func (c *client) ended(err error) {
	if !c.closing.Load() && !c.kicked.Load() && !c.r.stopping.Load() {
		c.r.c.disconnects.Add(1)
		c.r.noteError(fmt.Sprintf("connection of %s closed: %v", c.s.device, err))
	}
}

// handle processes one frame of batch b, which collects the PUSH_ACK to
// send after the current read.
func (c *client) handle(f *codec.Frame, b *readBatch) {
	r := c.r
	switch f.Op {
	case codec.OpPong:
		if f.Seq != 0 && c.pingOut.CompareAndSwap(f.Seq, 0) {
			_, mono := b.clock(r)
			r.lat[kindPing].record(c.s.idx, time.Duration(mono-c.pingAt.Load()))
			r.c.pongs.Add(1)
		}
	case codec.OpResponse:
		intended, ok := r.reqs.finish(f.Seq)
		if !ok {
			r.c.unmatched.Add(1)
			return
		}
		c.inflight.Add(-1)
		_, mono := b.clock(r)
		r.lat[kindRequest].record(c.s.idx, time.Duration(mono-intended))
		if f.Status == codec.StatusOK {
			r.c.responses.Add(1)
		} else {
			r.c.respErrors[statusIndex(f.Status)].Add(1)
			r.noteError(fmt.Sprintf("RESPONSE %s: %.100q", f.Status, f.Body))
		}
	case codec.OpPush:
		for {
			last := c.s.lastPush.Load()
			if f.Seq <= last || c.s.lastPush.CompareAndSwap(last, f.Seq) {
				break
			}
		}
		if f.Flags&codec.FlagAckRequired != 0 && f.Seq > b.ackSeq {
			b.ackSeq = f.Seq
		}
		sent, _, ok := readStamp(f.Body, r.runID)
		if !ok {
			r.c.foreign.Add(1)
			return
		}
		wall, _ := b.clock(r)
		c.delivered(b, time.Duration(wall-sent))
	case codec.OpKick:
		c.kicked.Store(true)
		if !c.closing.Load() && !r.stopping.Load() {
			r.c.kicks[statusIndex(f.Status)].Add(1)
			reason, _ := f.Meta.Get("reason")
			r.noteError(fmt.Sprintf("KICK %s to %s: %q", f.Status, c.s.device, reason))
		}
	default:
		r.c.protoErrors.Add(1)
		r.noteError(fmt.Sprintf("unexpected %s from server to %s", f.Op, c.s.device))
	}
}

// sendRequests sends n REQUESTs of the configured size in one write;
// intended is their scheduled time (runner-relative nanos).
func (c *client) sendRequests(intended int64, n int) bool {
	r := c.r
	bp := r.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	var seqs [maxPipeline]uint32
	for k := range n {
		seqs[k] = r.reqs.start(intended)
		b = codec.AppendFrame(b, codec.Header{Op: codec.OpRequest, Biz: uint16(r.cfg.Biz), Seq: seqs[k]}, nil, r.reqBody)
	}
	c.inflight.Add(int32(n))
	err := c.send(b)
	*bp = b
	r.bufs.Put(bp)
	if err != nil {
		c.inflight.Add(-int32(n))
		for _, seq := range seqs[:n] {
			r.reqs.cancel(seq)
		}
		return false
	}
	r.c.requests.Add(int64(n))
	return true
}

// dialer returns the net.Dialer for the next source address.
func (r *runner) dialer() *net.Dialer {
	d := &net.Dialer{Timeout: r.cfg.DialTimeout, Control: dialControl}
	if n := len(r.cfg.sources); n > 0 {
		a := r.cfg.sources[(r.srcNext.Add(1)-1)%uint64(n)]
		d.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
	}
	return d
}

// connect dials, logs slot s in and starts its reader. resume asks the
// server to redeliver the pushes after s.lastPush.
func (r *runner) connect(ctx context.Context, s *slot, resume bool) (*client, error) {
	start := time.Now()
	token, err := r.token(ctx, s)
	if err != nil {
		r.c.loginErrors.Add(1)
		return nil, fmt.Errorf("token for %s: %w", s.device, err)
	}
	r.c.dials.Add(1)
	c := &client{r: r, s: s, rbuf: make([]byte, initialReadBuf), done: make(chan struct{})}
	if err := r.dial(ctx, c, r.cfg.target); err != nil {
		r.c.dialErrors.Add(1)
		return nil, err
	}
	nc := c.nc
	hb, resumed, err := c.login(token, resume)
	if err != nil {
		_ = nc.Close()
		r.c.loginErrors.Add(1)
		return nil, fmt.Errorf("login %s: %w", s.device, err)
	}
	r.lat[kindLogin].record(s.idx, time.Since(start))
	r.c.logins.Add(1)
	if resumed {
		r.c.resumed.Add(1)
	}
	if hb > 0 {
		r.serverHB.CompareAndSwap(0, int64(hb))
	}
	r.c.addUp(1)
	s.cur.Store(c)
	r.readers.Add(1)
	go c.readLoop()
	return c, nil
}

// reqTable maps a REQUEST seq to its intended send time. Seqs are global
// to the run, so a ring indexed by seq finds the entry without a lock; an
// entry is overwritten when the ring wraps, after which its RESPONSE counts
// as unmatched.
type reqTable struct {
	slots []reqEntry
	mask  uint32
	seq   atomic.Uint32
}

type reqEntry struct {
	seq atomic.Uint32
	at  atomic.Int64 // intended time, runner-relative nanos; 0 = free
}

func newReqTable(size int) *reqTable {
	n := 1024
	for n < size && n < 1<<22 {
		n *= 2
	}
	return &reqTable{slots: make([]reqEntry, n), mask: uint32(n - 1)}
}

// start allocates a seq for a request due at intended (> 0).
func (t *reqTable) start(intended int64) uint32 {
	seq := t.seq.Add(1)
	if seq == 0 {
		seq = t.seq.Add(1)
	}
	e := &t.slots[seq&t.mask]
	e.at.Store(0)
	e.seq.Store(seq)
	e.at.Store(intended)
	return seq
}

// finish takes the entry of seq; ok is false when there is none.
func (t *reqTable) finish(seq uint32) (intended int64, ok bool) {
	e := &t.slots[seq&t.mask]
	if e.seq.Load() != seq {
		return 0, false
	}
	at := e.at.Swap(0)
	if at == 0 || e.seq.Load() != seq {
		return 0, false
	}
	return at, true
}

// cancel forgets a request that was never sent.
func (t *reqTable) cancel(seq uint32) { t.finish(seq) }
