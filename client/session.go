package client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
)

// session is one logged-in connection. Its reader and writer goroutines
// live exactly as long as it does; fail ends it.
type session struct {
	c  *Client
	nc net.Conn
	br *bufio.Reader
	ep Endpoint

	// From LOGIN_ACK.
	hb         time.Duration // PING interval
	node, conn string
	resumed    string // "1", "0", or "" when resume was not sent

	writeTimeout time.Duration // bounds every write, so a stalled peer cannot block the writer
	initial      [][]byte      // frames the writer sends first (queued requests)
	out          chan []byte   // frames to write
	ackWake      chan struct{} // the reader has added to acks
	acks         *ackBatcher
	outstanding  atomic.Int32  // PINGs sent since the last PONG
	pingSeq      atomic.Uint32 // seq of the last PING sent
	pingAt       atomic.Int64  // when it was sent, unix nanos
	healthy      atomic.Bool   // a PONG came back: the connection works both ways
	expires      time.Time     // the login token's exp; zero when unknown
	refreshed    chan refreshAck
	rbuf         []byte // read buffer, reused across frames

	wg     sync.WaitGroup // reader and writer
	once   sync.Once
	done   chan struct{} // closed by fail
	reason error         // why the session ended; set before done is closed
}

const outQueue = 256

func newSession(c *Client, nc net.Conn, ep Endpoint) *session {
	return &session{
		c:         c,
		nc:        nc,
		br:        bufio.NewReaderSize(nc, 16<<10),
		ep:        ep,
		out:       make(chan []byte, outQueue),
		ackWake:   make(chan struct{}, 1),
		refreshed: make(chan refreshAck, 1),
		acks:      newAckBatcher(c.cfg.AckBatch, c.cfg.AckDelay),
		done:      make(chan struct{}),
	}
}

// fail ends the session with err (the first reason wins) and closes the
// connection, which unblocks the reader and the writer.
func (s *session) fail(err error) {
	s.once.Do(func() {
		s.reason = err
		close(s.done)
		s.nc.Close()
	})
}

// login sends LOGIN and reads LOGIN_ACK. The caller interrupts it by
// closing the connection.
func (s *session) login(token string, resume bool, last uint32) error {
	s.expires = tokenExpiry(token)
	meta := codec.AppendMetaString(nil, "token", token)
	if resume {
		meta = codec.AppendMetaString(meta, "resume", strconv.FormatUint(uint64(last), 10))
	}
	if _, err := s.nc.Write(encodeFrame(codec.Header{Op: codec.OpLogin, Seq: 1}, meta, nil)); err != nil {
		return err
	}
	f, err := s.readFrame()
	if err != nil {
		return err
	}
	switch f.Op {
	case codec.OpLoginAck:
	case codec.OpKick:
		s.c.stats.kicks.Add(1)
		return kickError(&f)
	default:
		return &ProtocolError{Reason: "expected LOGIN_ACK, got " + f.Op.String()}
	}
	if f.Status != codec.StatusOK {
		return &LoginError{Status: f.Status, Reason: reason(&f)}
	}
	// Config.Heartbeat may shorten the gateway's interval, not lengthen
	// it: the gateway closes connections silent for about 3 x hb.
	s.hb = DefaultHeartbeat
	if v, ok := f.Meta.Get("hb"); ok {
		if n, err := strconv.Atoi(string(v)); err == nil && n > 0 {
			s.hb = time.Duration(n) * time.Second
		}
	}
	if h := s.c.cfg.Heartbeat; h > 0 && h < s.hb {
		s.hb = h
	}
	s.writeTimeout = s.hb * time.Duration(s.c.cfg.MissedPongs)
	if v, ok := f.Meta.Get("node"); ok {
		s.node = string(v)
	}
	if v, ok := f.Meta.Get("conn"); ok {
		s.conn = string(v)
	}
	if v, ok := f.Meta.Get("resumed"); ok && resume {
		s.resumed = string(v)
	}
	return nil
}

func (s *session) start() {
	s.wg.Add(3)
	go s.readLoop()
	go s.writeLoop()
	go s.refreshLoop(s.expires)
}

// send hands a frame to the writer. It gives up when the session ends or
// ctx does; the caller's bookkeeping (the in-flight map) decides the rest.
func (s *session) send(done <-chan struct{}, frame []byte) bool {
	select {
	case s.out <- frame:
		return true
	case <-s.done:
	case <-done:
	}
	return false
}

// readFrame reads one whole frame. Its Meta and Body alias s.rbuf until the
// next call.
func (s *session) readFrame() (codec.Frame, error) {
	if cap(s.rbuf) < 4096 {
		s.rbuf = make([]byte, 4096)
	}
	hdr := s.rbuf[:codec.HeaderSize]
	if _, err := io.ReadFull(s.br, hdr); err != nil {
		return codec.Frame{}, err
	}
	h, err := codec.ParseHeader(hdr, maxIncoming)
	if err != nil {
		return codec.Frame{}, &ProtocolError{Reason: err.Error()}
	}
	n := h.Size()
	buf := s.rbuf
	if cap(buf) < n {
		buf = make([]byte, n)
		copy(buf, hdr)
		if n <= 256<<10 {
			s.rbuf = buf // keep moderately larger buffers, not huge ones
		}
	}
	buf = buf[:n]
	if _, err := io.ReadFull(s.br, buf[codec.HeaderSize:]); err != nil {
		return codec.Frame{}, err
	}
	f, _, err := codec.Decode(buf, maxIncoming)
	if err != nil {
		return codec.Frame{}, &ProtocolError{Reason: err.Error()}
	}
	return f, nil
}

func (s *session) readLoop() {
	defer s.wg.Done()
	for {
		f, err := s.readFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("client: connection closed by peer: %w", err)
			} else if _, ok := err.(*ProtocolError); !ok {
				err = fmt.Errorf("client: read: %w", err)
			}
			s.fail(err)
			return
		}
		switch f.Op {
		case codec.OpPong:
			s.outstanding.Store(0)
			s.healthy.Store(true)
			if f.Seq == s.pingSeq.Load() {
				s.c.stats.rtt.Store(time.Now().UnixNano() - s.pingAt.Load())
			}
		case codec.OpResponse:
			s.c.onResponse(&f)
		case codec.OpPush:
			s.c.onPush(s, &f)
		case codec.OpRefreshAck:
			s.onRefreshAck(&f)
		case codec.OpKick:
			s.c.stats.kicks.Add(1)
			s.fail(kickError(&f))
			return
		default:
			s.fail(&ProtocolError{Reason: "unexpected " + f.Op.String() + " from the gateway"})
			return
		}
	}
}

// maxBatch bounds how many queued frames the writer takes before it looks
// at its timers again.
const maxBatch = 64

func (s *session) writeLoop() {
	defer s.wg.Done()
	bw := bufio.NewWriterSize(s.nc, 16<<10)
	hb := time.NewTicker(s.hb)
	defer hb.Stop()
	ackTimer := time.NewTimer(time.Hour)
	ackTimer.Stop()
	defer ackTimer.Stop()
	var pingSeq uint32

	ack := func() error {
		seq, send, at := s.acks.poll(time.Now())
		if send {
			s.c.stats.acks.Add(1)
			_, err := bw.Write(encodeFrame(codec.Header{Op: codec.OpPushAck, Seq: seq}, nil, nil))
			return err
		}
		if !at.IsZero() {
			ackTimer.Reset(time.Until(at))
		}
		return nil
	}

	s.nc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	var err error
	for _, f := range s.initial {
		if _, err = bw.Write(f); err != nil {
			break
		}
	}
	s.initial = nil
	for {
		if err == nil && bw.Buffered() > 0 {
			err = bw.Flush()
		}
		if err != nil {
			s.fail(fmt.Errorf("client: write: %w", err))
			return
		}
		select {
		case <-s.done:
			return
		case f := <-s.out:
			s.nc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
			_, err = bw.Write(f)
			for i := 1; i < maxBatch && err == nil; i++ {
				select {
				case f = <-s.out:
					_, err = bw.Write(f)
					continue
				default:
				}
				break
			}
		case <-hb.C:
			if int(s.outstanding.Load()) >= s.c.cfg.MissedPongs {
				s.c.stats.hbTimeouts.Add(1)
				s.fail(ErrHeartbeatTimeout)
				return
			}
			pingSeq++
			s.outstanding.Add(1)
			s.pingSeq.Store(pingSeq)
			s.pingAt.Store(time.Now().UnixNano())
			s.nc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
			_, err = bw.Write(encodeFrame(codec.Header{Op: codec.OpPing, Seq: pingSeq}, s.c.qualityMeta(), nil))
		case <-s.ackWake:
			s.nc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
			err = ack()
		case <-ackTimer.C:
			s.nc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
			err = ack()
		}
	}
}

func encodeFrame(h codec.Header, meta, body []byte) []byte {
	return codec.AppendFrame(make([]byte, 0, codec.HeaderSize+len(meta)+len(body)), h, meta, body)
}

func kickError(f *codec.Frame) *KickError {
	ke := &KickError{Status: f.Status, Reason: reason(f)}
	if v, ok := f.Meta.Get("redirect"); ok {
		ke.Redirect = string(v)
	}
	return ke
}

// reason is a frame's meta "reason", or its body.
func reason(f *codec.Frame) string {
	if v, ok := f.Meta.Get("reason"); ok {
		return string(v)
	}
	return string(f.Body)
}
