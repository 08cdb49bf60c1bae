package conn

import (
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/websocket"
	"github.com/valyala/bytebufferpool"
)

// feedWS is feed for a WebSocket connection: the opening handshake, then
// messages, each of which must carry exactly one protocol frame. It
// returns how many bytes it used; an incomplete handshake, frame header
// or payload is left for the next read.
func (c *Conn) feedWS(in []byte) int {
	h := c.hub
	used := 0
	if c.state.Load()&wsUpgraded == 0 {
		hs, n, err := websocket.ParseHandshake(in)
		if err != nil {
			c.rejectHandshake(err.(*websocket.Error))
			return len(in)
		}
		if n == 0 {
			return 0
		}
		if !h.opts.Origins.Allow(hs.Origin) {
			c.rejectHandshake(websocket.ErrOrigin)
			return len(in)
		}
		buf := bytebufferpool.Get()
		buf.B = websocket.AppendAccept(buf.B[:0], hs)
		c.state.Or(wsUpgraded)
		h.down.SendRaw(c, buf.B)
		bytebufferpool.Put(buf)
		used = n
	}
	for used < len(in) {
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
		// frames included: a ping costs the node a pong.
		m := c.meter()
		if m == frameKick {
			c.kick(codec.StatusOverloaded, "frame rate exceeded")
			return len(in)
		}
		c.wsMessage(&wh, payload, m == frameOver)
		if c.State() >= StateClosing {
			return len(in)
		}
	}
	return used
}

// wsMessage handles one WebSocket frame's payload; over says it came
// over the frame rate.
func (c *Conn) wsMessage(wh *websocket.Header, payload []byte, over bool) {
	h := c.hub
	switch wh.Op {
	case websocket.OpBinary:
		if c.ext != nil && c.ext.frag != nil {
			c.kick(codec.StatusBadFrame, "a new message began inside a fragmented one")
			return
		}
		if wh.Fin {
			c.deliverWS(payload, over)
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
			c.deliverWS(frag.B, over)
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
		if c.setState(StateClosing, codec.StatusOK) {
			var b [4]byte
			h.down.SendRaw(c, websocket.AppendClose(b[:0], code, ""))
			c.state.And(^uint32(wsUpgraded)) // Terminate must not send a second close
			h.down.CloseAfterFlush(c, codec.StatusOK)
		}
	}
}

// deliverWS handles one whole message: exactly one protocol frame.
func (c *Conn) deliverWS(msg []byte, over bool) {
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
	c.hub.framesIn.Add(1)
	c.handle(&f, over)
}

// rejectHandshake answers a bad opening handshake with an HTTP error and
// closes.
func (c *Conn) rejectHandshake(e *websocket.Error) {
	if !c.setState(StateClosing, codec.StatusBadFrame) {
		return
	}
	c.hub.countKick(codec.StatusBadFrame)
	buf := bytebufferpool.Get()
	buf.B = websocket.AppendReject(buf.B[:0], e)
	c.hub.down.SendRaw(c, buf.B)
	bytebufferpool.Put(buf)
	c.hub.down.CloseAfterFlush(c, codec.StatusBadFrame)
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
