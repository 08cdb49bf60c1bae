package websocket

import "encoding/binary"

// FrameLen is the total size of the server frame (unmasked) at the start
// of b, header included, or 0 when b is too short to hold its header. It
// checks nothing: it is for frames the gateway encoded itself
// (AppendHeader).
func FrameLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch l := int(b[1] & 0x7F); l {
	case 126:
		if len(b) < 4 {
			return 0
		}
		return 4 + int(binary.BigEndian.Uint16(b[2:]))
	case 127:
		if len(b) < 10 {
			return 0
		}
		return 10 + int(binary.BigEndian.Uint64(b[2:]))
	default:
		return 2 + l
	}
}
