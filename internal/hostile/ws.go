package hostile

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/longlink/longlink/codec"
)

// WebSocket opcodes.
const (
	WSBinary = 0x2
	WSClose  = 0x8
	WSPing   = 0x9
	WSPong   = 0xA
)

// WS is a hand-written WebSocket client: it sends what a library would
// not (a flood of pings) and reads every frame the server sends.
type WS struct {
	NC net.Conn
	br *bufio.Reader
}

// DialWS connects with d and completes the opening handshake.
func DialWS(d *net.Dialer, addr string) (*WS, error) {
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	w := &WS{NC: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	if err := w.Handshake(); err != nil {
		nc.Close()
		return nil, err
	}
	return w, nil
}

// UpgradeRequest is an opening handshake request.
func UpgradeRequest() []byte {
	var k [16]byte
	_, _ = rand.Read(k[:])
	return []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(k[:]) + "\r\n\r\n")
}

// Handshake sends the upgrade request and reads the answer, an error
// unless 101.
func (w *WS) Handshake() error {
	_ = w.NC.SetDeadline(time.Now().Add(5 * time.Second))
	defer w.NC.SetDeadline(time.Time{})
	if _, err := w.NC.Write(UpgradeRequest()); err != nil {
		return fmt.Errorf("websocket handshake: %w", err)
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		return fmt.Errorf("websocket handshake answer: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("websocket handshake: status %d", resp.StatusCode)
	}
	return nil
}

// AppendClientFrame appends one final, masked client frame.
func AppendClientFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	mask := [4]byte{0x5a, 0x17, 0xc3, 0x8e}
	dst = append(dst, mask[:]...)
	for i, c := range payload {
		dst = append(dst, c^mask[i&3])
	}
	return dst
}

// Send writes one binary message carrying frame.
func (w *WS) Send(frame []byte) error {
	_ = w.NC.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := w.NC.Write(AppendClientFrame(nil, WSBinary, frame))
	return err
}

// ReadFrame reads one server frame: its opcode and payload.
func (w *WS) ReadFrame(deadline time.Time) (op byte, payload []byte, err error) {
	_ = w.NC.SetReadDeadline(deadline)
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("websocket: the server sent a masked frame")
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(w.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(w.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("websocket: a %d-byte frame", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(w.br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0F, payload, nil
}

// Next reads the next binary message as one protocol frame.
func (w *WS) Next(deadline time.Time) (codec.Frame, error) {
	for {
		op, p, err := w.ReadFrame(deadline)
		if err != nil {
			return codec.Frame{}, err
		}
		switch op {
		case WSBinary:
			f, n, err := codec.Decode(p, MaxFrame)
			if err != nil {
				return codec.Frame{}, err
			}
			if n != len(p) {
				return codec.Frame{}, fmt.Errorf("websocket: a message of %d bytes holds a %d-byte frame", len(p), n)
			}
			return f, nil
		case WSClose:
			return codec.Frame{}, fmt.Errorf("websocket: close frame %x: %w", p, io.EOF)
		case WSPong:
			continue
		default:
			return codec.Frame{}, fmt.Errorf("websocket: unexpected opcode %d", op)
		}
	}
}

// Login sends LOGIN and reads its LOGIN_ACK, an error unless OK.
func (w *WS) Login(token string) error {
	if err := w.Send(LoginFrame(1, token)); err != nil {
		return fmt.Errorf("write LOGIN: %w", err)
	}
	f, err := w.Next(time.Now().Add(5 * time.Second))
	if err != nil {
		return fmt.Errorf("read LOGIN_ACK: %w", err)
	}
	if f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
		return fmt.Errorf("login: %v %v (%s)", f.Op, f.Status, Reason(f))
	}
	return nil
}

// WSFlood floods a logged-in WebSocket connection with ping control
// frames while it reads what comes back.
type WSFlood struct {
	Batch int           // pings per write; 0 means 256
	For   time.Duration // how long to write at most
	Stop  <-chan struct{}
}

// WSOutcome is what a WebSocket flooder saw.
type WSOutcome struct {
	Sent      int // pings written whole
	Pongs     int // pong control frames read
	Kick      *Kick
	CloseCode int  // the close frame's code after the KICK, -1 when none came
	Closed    bool // the connection ended (EOF or reset)
	AfterKick int  // frames other than the close read after the KICK
	Drained   bool // not kicked, and the PING sent after the flood was answered
	Problems  []string
	Elapsed   time.Duration
	// LastPong is when the last pong came, from the first write.
	LastPong time.Duration
	WriteErr error
}

// Window is the time over which the gateway answered: from the first
// write to the end of the writing or the last pong, whichever is later.
func (o WSOutcome) Window() time.Duration { return max(o.Elapsed, o.LastPong) }

// Summary is a one-line account of the outcome.
func (o WSOutcome) Summary() string {
	s := fmt.Sprintf("%d pings sent in %v, %d pongs, %v", o.Sent, o.Elapsed.Round(time.Millisecond), o.Pongs, o.Kick)
	if o.CloseCode >= 0 {
		s += fmt.Sprintf(", close %d", o.CloseCode)
	}
	if o.Closed {
		s += ", closed"
	}
	if o.Drained {
		s += ", drained"
	}
	if len(o.Problems) > 0 {
		s += fmt.Sprintf(", problems: %v", o.Problems)
	}
	return s
}

// Run floods w and returns what it saw, once the connection closed or,
// after For (or Stop), once a PING sent after the flood was answered.
func (f WSFlood) Run(w *WS) WSOutcome {
	if f.Batch <= 0 {
		f.Batch = 256
	}
	const size = 2 + 4 + 4 // header, mask, a 4-byte payload
	var (
		out     = WSOutcome{CloseCode: -1}
		probs   problems
		sent    = make(chan int, 1)
		ended   = make(chan struct{})
		wrote   = make(chan struct{})
		start   = time.Now()
		endedAt time.Time
	)
	go func() {
		defer close(wrote)
		batch := make([]byte, 0, f.Batch*size)
		var pending []byte
		var written int64
		built := 0
		deadline := start.Add(f.For)
		var p [4]byte
		report := func() { sent <- int(written / size) }
		defer report()
		for {
			select {
			case <-ended:
				return
			case <-f.Stop:
				goto finish
			default:
			}
			if time.Now().After(deadline) {
				goto finish
			}
			if len(pending) == 0 {
				batch = batch[:0]
				for i := 0; i < f.Batch; i++ {
					built++
					binary.BigEndian.PutUint32(p[:], uint32(built))
					batch = AppendClientFrame(batch, WSPing, p[:])
				}
				pending = batch
			}
			_ = w.NC.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := w.NC.Write(pending)
			written += int64(n)
			pending = pending[n:]
			if err != nil && !IsTimeout(err) {
				out.WriteErr = err
				endedAt = time.Now()
				return
			}
		}
	finish:
		endedAt = time.Now()
		if rest := int(written % size); rest != 0 {
			_ = w.NC.SetWriteDeadline(time.Now().Add(5 * time.Second))
			n, err := w.NC.Write(pending[:size-rest])
			written += int64(n)
			if err != nil {
				out.WriteErr = err
				return
			}
		}
		// A protocol PING after the pings: its PONG says the gateway got
		// through them.
		_ = w.NC.SetWriteDeadline(time.Now().Add(5 * time.Second))
		ping := codec.AppendFrame(nil, codec.Header{Op: codec.OpPing, Seq: markerSeq}, nil, nil)
		if _, err := w.NC.Write(AppendClientFrame(nil, WSBinary, ping)); err != nil {
			out.WriteErr = err
		}
	}()

	last := uint32(0)
	var kickedAt, drainBy time.Time
	writerDone := false
loop:
	for {
		op, p, err := w.ReadFrame(time.Now().Add(100 * time.Millisecond))
		if err != nil {
			if IsTimeout(err) {
				if !writerDone {
					select {
					case <-wrote:
						writerDone = true
						drainBy = time.Now().Add(10 * time.Second)
					default:
					}
				}
				if out.Kick != nil && time.Since(kickedAt) > 3*time.Second {
					probs.add("still open 3s after the KICK")
					break loop
				}
				if writerDone && out.Kick == nil && time.Now().After(drainBy) {
					probs.add("the PING after the flood was not answered within 10s")
					break loop
				}
				continue
			}
			if IsClosed(err) {
				out.Closed = true
			} else {
				probs.add("read: %v", err)
			}
			break loop
		}
		switch op {
		case WSPong:
			if out.Kick != nil {
				out.AfterKick++
				continue
			}
			if len(p) != 4 {
				probs.add("pong payload %x, not a ping's", p)
				continue
			}
			s := binary.BigEndian.Uint32(p)
			if s <= last {
				probs.add("pong %d after pong %d", s, last)
			}
			last = s
			out.Pongs++
			out.LastPong = time.Since(start)
		case WSBinary:
			fr, n, err := codec.Decode(p, MaxFrame)
			if err != nil || n != len(p) {
				probs.add("binary message of %d bytes is not one frame (%v)", len(p), err)
				continue
			}
			if out.Kick != nil {
				out.AfterKick++
				continue
			}
			switch {
			case fr.Op == codec.OpKick:
				out.Kick = &Kick{Status: fr.Status, Reason: Reason(fr), After: time.Since(start), AnswersBefore: out.Pongs}
				kickedAt = time.Now()
			case fr.Op == codec.OpPong && fr.Seq == markerSeq:
				out.Drained = true
				break loop
			default:
				probs.add("unexpected %v status %v", fr.Op, fr.Status)
			}
		case WSClose:
			if len(p) >= 2 {
				out.CloseCode = int(binary.BigEndian.Uint16(p))
			} else {
				out.CloseCode = 1005
			}
			if out.Kick == nil {
				probs.add("close frame %d without a KICK", out.CloseCode)
			}
		default:
			probs.add("unexpected opcode %d", op)
		}
	}
	close(ended)
	<-wrote
	out.Sent = <-sent
	if endedAt.IsZero() {
		endedAt = time.Now()
	}
	out.Elapsed = endedAt.Sub(start)
	if out.Kick != nil && out.Kick.After < out.Elapsed {
		out.Elapsed = out.Kick.After
	}
	out.Problems = probs.list
	return out
}
