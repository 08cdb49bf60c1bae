package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/longlink/longlink/codec"
)

// The client side of RFC 6455, as much as the generator needs: the opening
// handshake, masked client frames, and unmasked server frames parsed in
// place out of the connection's read buffer. It keeps no state and starts
// no goroutine: a WebSocket connection costs the generator what a TCP one
// does (one reader goroutine, a 512-byte read buffer), where a library
// would add its own buffered reader and writer per connection (see
// docs/transports.md for the measurement).

// Opcodes (RFC 6455 section 5.2).
const (
	wsOpContinuation = 0x0
	wsOpText         = 0x1
	wsOpBinary       = 0x2
	wsOpClose        = 0x8
	wsOpPing         = 0x9
	wsOpPong         = 0xA
)

const (
	wsGUID        = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	wsSubprotocol = "longlink.v1"
	// wsMaxHeader is the largest frame header: 2 bytes, a 64-bit length
	// and a mask key.
	wsMaxHeader = 14
	// wsMaxUpgradeAnswer bounds the server's answer to the upgrade.
	wsMaxUpgradeAnswer = 4096
	// wsCloseNormal is the close code the generator answers a close with
	// when the server's close carried none.
	wsCloseNormal = 1000
)

// errWSClosed is a close frame from the server: the server ended the
// connection (after a KICK, or going away), not a protocol fault.
var errWSClosed = errors.New("websocket: closed by the server")

// wsHeader is a parsed server frame header.
type wsHeader struct {
	fin bool
	op  byte
	len int // payload length
}

// wsParseHeader parses the server frame header at the start of b. It
// returns n == 0 and a nil error while b does not hold the whole header.
// It refuses what a client must refuse from a server: reserved bits (no
// extension is negotiated), a masked frame, an unknown opcode, a
// fragmented or oversized control frame, a non-minimal or negative
// length, and a payload above max.
func wsParseHeader(b []byte, max int) (h wsHeader, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	if b[0]&0x70 != 0 {
		return h, 0, errors.New("websocket: reserved bits set")
	}
	if b[1]&0x80 != 0 {
		return h, 0, errors.New("websocket: server frame is masked")
	}
	h.fin = b[0]&0x80 != 0
	h.op = b[0] & 0x0F
	switch h.op {
	case wsOpContinuation, wsOpText, wsOpBinary, wsOpClose, wsOpPing, wsOpPong:
	default:
		return h, 0, fmt.Errorf("websocket: unknown opcode %#x", h.op)
	}
	n = 2
	switch l := b[1] & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		v := binary.BigEndian.Uint16(b[2:])
		if v < 126 {
			return h, 0, errors.New("websocket: non-minimal length")
		}
		h.len, n = int(v), 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 || v <= 0xFFFF {
			return h, 0, errors.New("websocket: non-minimal or negative length")
		}
		if v > uint64(max) {
			return h, 0, fmt.Errorf("websocket: message of %d bytes above -max-frame %d", v, max)
		}
		h.len, n = int(v), 10
	default:
		h.len = int(l)
	}
	if h.op >= wsOpClose && (!h.fin || h.len > 125) {
		return h, 0, errors.New("websocket: fragmented or oversized control frame")
	}
	if h.len > max {
		return h, 0, fmt.Errorf("websocket: message of %d bytes above -max-frame %d", h.len, max)
	}
	return h, n, nil
}

// wsAppendFrame appends one whole (FIN) client frame: op, payload masked
// with key.
func wsAppendFrame(dst []byte, op byte, payload []byte, key uint32) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = binary.BigEndian.AppendUint16(append(dst, 0x80|126), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint64(append(dst, 0x80|127), uint64(n))
	}
	dst = binary.BigEndian.AppendUint32(dst, key)
	start := len(dst)
	dst = append(dst, payload...)
	wsMask(dst[start:], key)
	return dst
}

// wsMask XORs b with the mask key (its big-endian bytes, repeating from
// b[0]), eight bytes at a time.
func wsMask(b []byte, key uint32) {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], key)
	kw := uint64(binary.LittleEndian.Uint32(k[:]))
	kw |= kw << 32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^kw)
	}
	for ; i < len(b); i++ {
		b[i] ^= k[i&3]
	}
}

// wsMaskKey is a fresh mask key. Masking protects intermediaries from
// scripts in browsers; the runtime's ChaCha8 generator is unpredictable
// enough for that and costs no system call.
func wsMaskKey() uint32 { return rand.Uint32() }

// wsAppendMessages appends each protocol frame of frames (one or more
// whole frames back to back, as the generator encodes them) as its own
// binary message: one frame per message, as docs/protocol.md requires.
func wsAppendMessages(dst, frames []byte) []byte {
	for len(frames) > 0 {
		size := len(frames)
		if size >= codec.HeaderSize {
			metaLen := int(binary.BigEndian.Uint16(frames[10:]))
			bodyLen := int(binary.BigEndian.Uint32(frames[16:]))
			size = min(size, codec.HeaderSize+metaLen+bodyLen)
		}
		dst = wsAppendFrame(dst, wsOpBinary, frames[:size], wsMaskKey())
		frames = frames[size:]
	}
	return dst
}

// wsNewKey is a fresh Sec-WebSocket-Key: 16 random bytes, base64.
func wsNewKey() string {
	var k [16]byte
	binary.LittleEndian.PutUint64(k[:], rand.Uint64())
	binary.LittleEndian.PutUint64(k[8:], rand.Uint64())
	return base64.StdEncoding.EncodeToString(k[:])
}

// wsAccept is the Sec-WebSocket-Accept a server must answer key with.
func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// wsAppendUpgrade appends the opening handshake: GET path on host,
// offering the longlink.v1 subprotocol and no extension.
func wsAppendUpgrade(dst []byte, host, path, key string) []byte {
	dst = append(dst, "GET "...)
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	dst = append(dst, key...)
	dst = append(dst, "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: "+wsSubprotocol+"\r\n\r\n"...)
	return dst
}

// wsCheckUpgrade checks the server's answer to the opening handshake at
// the start of b. It returns its length, or n == 0 and a nil error while
// the answer is incomplete. The answer must be 101 with Upgrade:
// websocket, Connection: Upgrade and the Sec-WebSocket-Accept for key; a
// subprotocol, if named, must be longlink.v1; no extension may be named
// (none was offered).
func wsCheckUpgrade(b []byte, key string) (n int, err error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) >= wsMaxUpgradeAnswer {
			return 0, errors.New("websocket: upgrade answer too long")
		}
		return 0, nil
	}
	lines := bytes.Split(b[:end], []byte("\r\n"))
	status := bytes.Fields(lines[0])
	if len(status) < 2 || !bytes.HasPrefix(status[0], []byte("HTTP/1.")) {
		return 0, fmt.Errorf("websocket: not an HTTP answer: %.60q", lines[0])
	}
	if string(status[1]) != "101" {
		return 0, fmt.Errorf("websocket: upgrade refused: %.100q", bytes.TrimSpace(b[len(lines[0]):min(len(b), end+4+100)]))
	}
	var upgrade, connection, accept bool
	for _, line := range lines[1:] {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("websocket: bad header line %.60q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = bytes.EqualFold(value, []byte("websocket"))
		case bytes.EqualFold(name, []byte("Connection")):
			connection = wsHasToken(value, "upgrade")
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Accept")):
			accept = string(value) == wsAccept(key)
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Protocol")):
			if string(value) != wsSubprotocol {
				return 0, fmt.Errorf("websocket: server chose subprotocol %q", value)
			}
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Extensions")):
			return 0, fmt.Errorf("websocket: server named extensions %q, none offered", value)
		}
	}
	switch {
	case !upgrade || !connection:
		return 0, errors.New("websocket: 101 without Upgrade: websocket and Connection: Upgrade")
	case !accept:
		return 0, errors.New("websocket: wrong or missing Sec-WebSocket-Accept")
	}
	return end + 4, nil
}

func wsHasToken(value []byte, token string) bool {
	for _, part := range bytes.Split(value, []byte(",")) {
		if bytes.EqualFold(bytes.TrimSpace(part), []byte(token)) {
			return true
		}
	}
	return false
}
