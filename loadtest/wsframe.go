package main

import (
	"encoding/binary"
	"errors"

	"github.com/longlink/longlink/codec"
	gws "github.com/longlink/longlink/websocket"
)

// The client side of RFC 6455 is package websocket's (the opening
// handshake, masked client frames, server frame headers parsed in place
// out of the connection's read buffer); what is here is Longlink over it:
// one protocol frame per binary message. It keeps no state and starts no
// goroutine: a WebSocket connection costs the generator what a TCP one
// does (one reader goroutine, a 512-byte read buffer), where a library
// would add its own buffered reader and writer per connection (see
// docs/transports.md for the measurement).

// errWSClosed is a close frame from the server: the server ended the
// connection (after a KICK, or going away), not a protocol fault.
var errWSClosed = errors.New("websocket: closed by the server")

// wsAppendMessages appends each protocol frame of frames (one or more
// whole frames back to back, as the generator encodes them) as its own
// masked binary message: one frame per message, as docs/protocol.md
// requires.
func wsAppendMessages(dst, frames []byte) []byte {
	for len(frames) > 0 {
		size := len(frames)
		if size >= codec.HeaderSize {
			metaLen := int(binary.BigEndian.Uint16(frames[10:]))
			bodyLen := int(binary.BigEndian.Uint32(frames[16:]))
			size = min(size, codec.HeaderSize+metaLen+bodyLen)
		}
		dst = gws.AppendClientFrame(dst, gws.OpBinary, frames[:size], gws.NewMask())
		frames = frames[size:]
	}
	return dst
}
