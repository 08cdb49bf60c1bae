// Package faultproxy is a TCP proxy for tests that injects the faults of a
// bad network between a Longlink client and the gateway: it cuts every
// connection, stalls (stops forwarding, without closing), delays every
// frame, refuses new connections, and cuts a connection halfway through a
// chosen frame.
//
// It understands Longlink framing (codec headers) so that it can delay and
// cut frame by frame; bytes that are not Longlink frames are forwarded as
// they come. All methods are safe for concurrent use.
package faultproxy

import (
	"bufio"
	"io"
	"net"
	"sync"
	"time"

	"github.com/longlink/longlink/codec"
)

// Direction is the way bytes travel through the proxy.
type Direction int

const (
	Upstream   Direction = iota // client to gateway
	Downstream                  // gateway to client
)

// Proxy forwards every connection accepted on Addr to its target.
type Proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	target  string
	links   map[*link]struct{}
	stall   chan struct{} // non-nil while stalled; closed by Unstall
	delay   time.Duration
	refuse  bool
	cut     *cut // armed mid-frame cut
	closed  bool
	accepts int
}

type cut struct {
	dir  Direction
	op   codec.Op
	done chan struct{}
}

// New listens on a free loopback port and forwards to target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Conns is the number of connections open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Accepts is the number of connections accepted so far.
func (p *Proxy) Accepts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepts
}

// CutAll closes every open connection, both ways, and returns how many.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	return len(links)
}

// Stall stops forwarding in both directions, on open and new connections:
// bytes are held, and a close is not passed on, until Unstall.
func (p *Proxy) Stall() {
	p.mu.Lock()
	if p.stall == nil {
		p.stall = make(chan struct{})
	}
	p.mu.Unlock()
}

// Unstall forwards again everything Stall held.
func (p *Proxy) Unstall() {
	p.mu.Lock()
	if p.stall != nil {
		close(p.stall)
		p.stall = nil
	}
	p.mu.Unlock()
}

// SetDelay makes every frame wait d (from when the proxy read it) before it
// is forwarded. Zero forwards at once.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// SetRefuse makes the proxy close new connections as soon as it accepts
// them (the gateway "is down"), or accept them again.
func (p *Proxy) SetRefuse(refuse bool) {
	p.mu.Lock()
	p.refuse = refuse
	p.mu.Unlock()
}

// CutMidFrame arms a fault: the next frame with op going in dir, on any
// connection, is forwarded only up to its middle, then that connection is
// closed both ways. The returned channel is closed when it has happened.
func (p *Proxy) CutMidFrame(dir Direction, op codec.Op) <-chan struct{} {
	c := &cut{dir: dir, op: op, done: make(chan struct{})}
	p.mu.Lock()
	p.cut = c
	p.mu.Unlock()
	return c.done
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Unstall()
	p.CutAll()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		cc, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepts++
		refuse, target, closed := p.refuse, p.target, p.closed
		p.mu.Unlock()
		if refuse || closed {
			cc.Close()
			continue
		}
		sc, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			cc.Close()
			continue
		}
		l := &link{p: p, cc: cc, sc: sc, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			cc.Close()
			sc.Close()
			continue
		}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(4)
		up := make(chan chunk, 64)
		down := make(chan chunk, 64)
		go l.read(cc, up)
		go l.write(Upstream, sc, up)
		go l.read(sc, down)
		go l.write(Downstream, cc, down)
	}
}

// link is one proxied connection: client side cc, gateway side sc.
type link struct {
	p      *Proxy
	cc, sc net.Conn
	once   sync.Once
	done   chan struct{}
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.cc.Close()
		l.sc.Close()
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	})
}

// chunk is a frame (or raw bytes, op 0) read at some time; eof marks the
// end of the stream, passed on in order so a stall also holds the close.
type chunk struct {
	b   []byte
	op  codec.Op
	at  time.Time
	eof bool
}

func (l *link) read(src net.Conn, out chan<- chunk) {
	defer l.p.wg.Done()
	br := bufio.NewReaderSize(src, 32<<10)
	raw := false
	emit := func(c chunk) bool {
		select {
		case out <- c:
			return true
		case <-l.done:
			return false
		}
	}
	for {
		var c chunk
		var err error
		if raw {
			buf := make([]byte, 32<<10)
			var n int
			n, err = br.Read(buf)
			c = chunk{b: buf[:n]}
		} else {
			c, raw, err = readFrame(br)
		}
		c.at = time.Now()
		if len(c.b) > 0 && !emit(c) {
			return
		}
		if err != nil {
			emit(chunk{eof: true, at: time.Now()})
			return
		}
	}
}

// readFrame reads one Longlink frame, or, if the bytes are not one, returns
// what it read with raw set.
func readFrame(br *bufio.Reader) (c chunk, raw bool, err error) {
	hdr := make([]byte, codec.HeaderSize)
	n, err := io.ReadFull(br, hdr)
	if err != nil {
		return chunk{b: hdr[:n]}, false, err
	}
	h, perr := codec.ParseHeader(hdr, 1<<30)
	if perr != nil {
		return chunk{b: hdr}, true, nil
	}
	b := make([]byte, h.Size())
	copy(b, hdr)
	n, err = io.ReadFull(br, b[codec.HeaderSize:])
	return chunk{b: b[:codec.HeaderSize+n], op: h.Op}, false, err
}

func (l *link) write(dir Direction, dst net.Conn, in <-chan chunk) {
	defer l.p.wg.Done()
	defer l.close()
	for {
		var c chunk
		select {
		case c = <-in:
		case <-l.done:
			return
		}
		l.p.mu.Lock()
		stall, delay := l.p.stall, l.p.delay
		l.p.mu.Unlock()
		if stall != nil {
			select {
			case <-stall:
			case <-l.done:
				return
			}
		}
		if wait := time.Until(c.at.Add(delay)); delay > 0 && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
		}
		if c.eof {
			return
		}
		if ct := l.takeCut(dir, c.op); ct != nil {
			dst.Write(c.b[:len(c.b)/2])
			l.close()
			close(ct.done)
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

func (l *link) takeCut(dir Direction, op codec.Op) *cut {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	c := l.p.cut
	if c == nil || c.dir != dir || c.op != op || op == 0 {
		return nil
	}
	l.p.cut = nil
	return c
}
