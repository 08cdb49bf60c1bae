package hostile

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/longlink/longlink/codec"
)

// Mass opens many connections that do not log in.
type Mass struct {
	Dialers []*net.Dialer // used in turn
	Addr    string
	N       int    // connections
	Conc    int    // dials at once; 0 means 32
	Payload []byte // written on each connection after the dial (nil: nothing)
	Stop    <-chan struct{}
}

// MassResult is what Mass.Open did.
type MassResult struct {
	Conns    []net.Conn // the connections opened, in dial order (nil where a dial failed)
	Opened   int
	Failed   int   // dials that failed
	FirstErr error // the first dial error
	Elapsed  time.Duration
}

// Open dials the connections, Conc at a time, and writes Payload on each
// (a write the gateway cut short by closing is not an error: what it
// answered is still readable). It stops dialing when Stop closes.
func (m Mass) Open() MassResult {
	if m.Conc <= 0 {
		m.Conc = 32
	}
	res := MassResult{Conns: make([]net.Conn, m.N)}
	var mu sync.Mutex
	next := 0
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < m.Conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= m.N {
					return
				}
				select {
				case <-m.Stop:
					return
				default:
				}
				nc, err := m.Dialers[i%len(m.Dialers)].Dial("tcp", m.Addr)
				if err != nil {
					mu.Lock()
					res.Failed++
					if res.FirstErr == nil {
						res.FirstErr = err
					}
					mu.Unlock()
					continue
				}
				if len(m.Payload) > 0 {
					_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
					_, _ = nc.Write(m.Payload)
				}
				mu.Lock()
				res.Conns[i] = nc
				res.Opened++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// Heard is what a connection that does not log in heard from the gateway.
type Heard struct {
	Frames []codec.Frame // whole frames read
	Bytes  int           // bytes read in all
	Closed bool          // the gateway closed the connection
	Err    error         // a read error other than a close or the deadline
}

// First is the first frame heard, or a zero frame.
func (h Heard) First() codec.Frame {
	if len(h.Frames) == 0 {
		return codec.Frame{}
	}
	return h.Frames[0]
}

// Listen reads nc until the gateway closes it or deadline passes.
func Listen(nc net.Conn, deadline time.Time) Heard {
	var h Heard
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		_ = nc.SetReadDeadline(deadline)
		n, err := nc.Read(tmp)
		h.Bytes += n
		buf = append(buf, tmp[:n]...)
		for {
			f, k, derr := codec.Decode(buf, MaxFrame)
			if derr != nil || k == 0 {
				break
			}
			f.Meta = codec.Meta(append([]byte(nil), f.Meta...))
			f.Body = append([]byte(nil), f.Body...)
			h.Frames = append(h.Frames, f)
			buf = buf[k:]
		}
		if err != nil {
			switch {
			case IsClosed(err):
				h.Closed = true
			case IsTimeout(err):
			default:
				h.Err = err
			}
			return h
		}
	}
}

// ListenAll reads every connection (Conc at a time) as Listen does, all
// with the same deadline.
func ListenAll(conns []net.Conn, conc int, deadline time.Time) []Heard {
	conc = max(conc, 1)
	out := make([]Heard, len(conns))
	var wg sync.WaitGroup
	ch := make(chan int)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				out[i] = Listen(conns[i], deadline)
			}
		}()
	}
	for i, c := range conns {
		if c != nil {
			ch <- i
		}
	}
	close(ch)
	wg.Wait()
	return out
}

// PartialLogin is the first send bytes of a LOGIN frame whose header
// declares total bytes in all (header included); its meta is a token
// entry (when token is not empty) and padding. It is a whole, valid LOGIN
// when send == total.
func PartialLogin(total, send int, token string) []byte {
	if total < codec.HeaderSize+8 {
		panic("hostile: LOGIN too small")
	}
	var m []byte
	if token != "" {
		m = codec.AppendMetaString(m, "token", token)
	}
	// A padding entry: klen 3 "pad", vlen, value, filling the rest.
	pad := total - codec.HeaderSize - len(m) - 1 - 3 - 2
	if pad < 0 || pad > 0xFFFF {
		panic(fmt.Sprintf("hostile: a %d-byte LOGIN cannot hold this token", total))
	}
	m = codec.AppendMeta(m, "pad", make([]byte, pad))
	f := codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1}, m, nil)
	if len(f) != total {
		panic("hostile: PartialLogin arithmetic")
	}
	return f[:send]
}

// LoginHeader is the header of a LOGIN declaring total bytes, nothing else.
func LoginHeader(total int) []byte {
	var h [codec.HeaderSize]byte
	meta := min(total-codec.HeaderSize, 0xFFFF)
	codec.PutHeader(h[:], &codec.Header{Op: codec.OpLogin, Seq: 1, MetaLen: uint16(meta), BodyLen: uint32(total - codec.HeaderSize - meta)})
	return h[:]
}

// ClientHello is the first record a crypto/tls client sends to a server
// named serverName: a whole ClientHello.
func ClientHello(serverName string) ([]byte, error) {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	go func() {
		_ = tls.Client(c, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	}()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [5]byte
	if _, err := io.ReadFull(s, h[:]); err != nil {
		return nil, err
	}
	if h[0] != 22 { // handshake
		return nil, fmt.Errorf("first TLS record has type %d", h[0])
	}
	rec := make([]byte, 5+int(binary.BigEndian.Uint16(h[3:])))
	copy(rec, h[:])
	if _, err := io.ReadFull(s, rec[5:]); err != nil {
		return nil, err
	}
	return rec, nil
}

// DialTLS connects with d and completes a TLS handshake within timeout.
func DialTLS(d *net.Dialer, addr string, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(nc, cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
