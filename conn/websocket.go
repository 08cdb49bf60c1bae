package conn

import (
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/websocket"
	"github.com/valyala/bytebufferpool"
)

// wsTransport carries one protocol frame per binary WebSocket message
// (RFC 6455). Its phase is the connection's link: opening until the
// handshake is answered (no frames can be sent before), open, closed once
// a close frame went out (no frame and no second close follow it).
type wsTransport struct {
	reactorSocket
	phase uint32
}

// input takes the opening handshake, then messages, each of which must
// carry exactly one protocol frame. An incomplete handshake, frame header
// or payload is kept for the next read.
func (w wsTransport) input(c *Conn, in []byte) {
	in = withRest(c.partial, in)
	keepRest(c, &c.partial, in, w.frames(c, in))
}

// frames handles what it can of in and returns how many bytes it used.
func (w wsTransport) frames(c *Conn, in []byte) int {
	used := 0
	if w.phase == linkWSOpening {
		hs, n, err := websocket.ParseHandshake(in)
		if err != nil {
			c.rejectHandshake(err.(*websocket.Error))
			return len(in)
		}
		if n == 0 {
			return 0
		}
		if !c.hub.opts.Origins.Allow(hs.Origin) {
			c.rejectHandshake(websocket.ErrOrigin)
			return len(in)
		}
		buf := bytebufferpool.Get()
		buf.B = websocket.AppendAccept(buf.B[:0], hs)
		c.kind.Store(linkWSOpen)
		c.hub.down.SendRaw(c, buf.B)
		bytebufferpool.Put(buf)
		used = n
	}
	for used < len(in) && c.open() {
		wh, n, err := websocket.ParseHeader(in[used:], c.maxFrame())
		if err != nil {
			if err == websocket.ErrTooBig {
				c.kick(codec.StatusFrameTooLarge, "message exceeds the maximum frame size")
			} else {
				c.kick(codec.StatusBadFrame, err.Error())
			}
			return len(in)
		}
		if n == 0 || len(in)-used-n < wh.Len {
			break
		}
		payload := in[used+n : used+n+wh.Len]
		websocket.Unmask(payload, wh.Mask)
		used += n + wh.Len
		// Every WebSocket frame counts toward the frame rate, control
		// frames and fragments included: a ping costs the node a pong.
		if over := c.meterIn(); c.open() {
			w.message(c, &wh, payload, over)
		}
	}
	return used
}

// message handles one WebSocket frame's payload; over says it came over
// the frame rate.
func (wsTransport) message(c *Conn, wh *websocket.Header, payload []byte, over bool) {
	switch wh.Op {
	case websocket.OpBinary:
		if c.ext != nil && c.ext.frag != nil {
			c.kick(codec.StatusBadFrame, "a new message began inside a fragmented one")
			return
		}
		if wh.Fin {
			deliverWS(c, payload, over)
			return
		}
		if c.ext == nil {
			c.ext = &ext{}
		}
		c.ext.frag = bytebufferpool.Get()
		c.ext.frag.B = append(c.ext.frag.B[:0], payload...)
	case websocket.OpContinuation:
		if c.ext == nil || c.ext.frag == nil {
			c.kick(codec.StatusBadFrame, "continuation without a message")
			return
		}
		frag := c.ext.frag
		if len(frag.B)+len(payload) > c.maxFrame() {
			c.kick(codec.StatusFrameTooLarge, "message exceeds the maximum frame size")
			return
		}
		frag.B = append(frag.B, payload...)
		if wh.Fin {
			deliverWS(c, frag.B, over)
			bytebufferpool.Put(frag)
			c.ext.frag = nil
		}
	case websocket.OpText:
		c.kick(codec.StatusBadFrame, "text messages are not part of the protocol")
	case websocket.OpPing:
		if over {
			return // no pong past the frame rate
		}
		var b [2 + 125]byte
		c.sendRaw(append(websocket.AppendHeader(b[:0], websocket.OpPong, len(payload)), payload...))
	case websocket.OpPong:
	case websocket.OpClose:
		// The client closes: answer its close and end, no KICK needed.
		code, err := websocket.CloseCode(payload)
		switch {
		case err == websocket.ErrCloseReason:
			code = websocket.CloseInvalidData
		case err != nil:
			code = websocket.CloseProtocol
		case code == 1005:
			code = websocket.CloseNormal
		}
		var b [4]byte
		c.kind.Store(linkWSClosed) // terminate must not send a second close
		c.end(codec.StatusOK, websocket.AppendClose(b[:0], code, ""))
	}
}

// deliverWS hands the session one whole message: exactly one protocol
// frame.
func deliverWS(c *Conn, msg []byte, over bool) {
	f, n, err := codec.Decode(msg, c.maxFrame())
	if err != nil {
		e := err.(*codec.Error)
		c.kick(e.Status, e.Reason)
		return
	}
	if n == 0 || n != len(msg) {
		c.kick(codec.StatusBadFrame, "a WebSocket message must carry exactly one frame")
		return
	}
	c.frameIn(&f, over)
}

// rejectHandshake answers a bad opening handshake with an HTTP error and
// closes.
func (c *Conn) rejectHandshake(e *websocket.Error) {
	buf := bytebufferpool.Get()
	buf.B = websocket.AppendReject(buf.B[:0], e)
	c.end(codec.StatusBadFrame, buf.B)
	bytebufferpool.Put(buf)
}

func (w wsTransport) appendFrame(dst, frame []byte) ([]byte, int) {
	if w.phase != linkWSOpen {
		return dst, -1 // no frames before the handshake is answered, nor after a close
	}
	dst = websocket.AppendHeader(dst, websocket.OpBinary, len(frame))
	return append(dst, frame...), len(dst)
}

// frameLen: raw WebSocket bytes are control frames, except the
// handshake's answer, which is written first to an empty socket buffer
// and so is never left half-written.
func (wsTransport) frameLen(b []byte) int { return websocket.FrameLen(b) }

func (wsTransport) backlog(*Conn) int { return 0 }

// terminate sends a close frame that goes with status, once the
// handshake was answered, then closes.
func (w wsTransport) terminate(c *Conn, status codec.Status) {
	if w.phase == linkWSOpen {
		var b [4]byte
		_, _ = c.writeRaw(websocket.AppendClose(b[:0], closeCode(status), ""))
	}
	c.closeSocket()
}

// refusal is nothing: before its handshake is answered a WebSocket client
// reads no frame.
func (wsTransport) refusal([]byte) []byte { return nil }

func (wsTransport) release(c *Conn) {
	if c.ext != nil && c.ext.frag != nil {
		bytebufferpool.Put(c.ext.frag)
		c.ext.frag = nil
	}
}

// closeCode is the WebSocket close code that goes with a KICK status.
func closeCode(s codec.Status) uint16 {
	switch s {
	case codec.StatusBadFrame:
		return websocket.CloseProtocol
	case codec.StatusFrameTooLarge:
		return websocket.CloseTooBig
	case codec.StatusShuttingDown:
		return websocket.CloseGoingAway
	case codec.StatusOK:
		return websocket.CloseNormal
	}
	return websocket.ClosePolicy
}
