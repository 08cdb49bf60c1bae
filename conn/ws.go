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
		buf := bytebufferpool.Get()
		buf.B = websocket.AppendAccept(buf.B[:0], hs)
		c.state.Or(wsUpgraded)
		h.down.SendRaw(c, buf.B)
		bytebufferpool.Put(buf)
		used = n
	}
	for used < len(in) {
		wh, n, err := websocket.ParseHeader(in[used:], h.opts.MaxFrame)
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
		c.wsMessage(&wh, payload)
		if c.State() >= StateClosing {
			return len(in)
		}
	}
	return used
}

// wsMessage handles one WebSocket frame's payload.
func (c *Conn) wsMessage(wh *websocket.Header, payload []byte) {
	h := c.hub
	switch wh.Op {
	case websocket.OpBinary:
		if c.ext != nil && c.ext.frag != nil {
			c.kick(codec.StatusBadFrame, "a new message began inside a fragmented one")
			return
		}
		if wh.Fin {
			c.deliverWS(payload)
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
		if len(frag.B)+len(payload) > h.opts.MaxFrame {
			c.kick(codec.StatusFrameTooLarge, "message exceeds the maximum frame size")
			return
		}
		frag.B = append(frag.B, payload...)
		if wh.Fin {
			c.deliverWS(frag.B)
			bytebufferpool.Put(frag)
			c.ext.frag = nil
		}
	case websocket.OpText:
		c.kick(codec.StatusBadFrame, "text messages are not part of the protocol")
	case websocket.OpPing:
		var b [2 + 125]byte
		h.down.SendRaw(c, append(websocket.AppendHeader(b[:0], websocket.OpPong, len(payload)), payload...))
	case websocket.OpPong:
	case websocket.OpClose:
		// The client closes: answer its close and end, no KICK needed.
		code, err := websocket.CloseCode(payload)
		switch {
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
func (c *Conn) deliverWS(msg []byte) {
	f, n, err := codec.Decode(msg, c.hub.opts.MaxFrame)
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
	c.handle(&f)
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
