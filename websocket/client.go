package websocket

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
)

// The client side of RFC 6455, as much as the load generator needs to
// speak to the gateway: the opening handshake (offering Subprotocol and
// no extension), masked client frames, and server frame headers parsed
// in place. Like the server side it keeps no state and never reads: a
// client on its own read buffer calls ParseAccept and ParseServerHeader
// again when more bytes arrive.

const (
	// MaxHeader is the largest frame header: 2 bytes, a 64-bit length
	// and a mask key.
	MaxHeader = 14
	// MaxAccept bounds the server's answer to the opening handshake,
	// headers included.
	MaxAccept = 4096
)

// NewKey is a fresh Sec-WebSocket-Key: 16 random bytes, base64.
func NewKey() string {
	var k [16]byte
	binary.LittleEndian.PutUint64(k[:], rand.Uint64())
	binary.LittleEndian.PutUint64(k[8:], rand.Uint64())
	return base64.StdEncoding.EncodeToString(k[:])
}

// NewMask is a fresh mask key for a client frame. Masking protects
// intermediaries from scripts in browsers (RFC 6455 section 10.3); the
// runtime's ChaCha8 generator is unpredictable enough for that and costs
// no system call.
func NewMask() (m [4]byte) {
	binary.LittleEndian.PutUint32(m[:], rand.Uint32())
	return m
}

// AppendHandshake appends the opening handshake request: GET path on
// host with key, offering Subprotocol and no extension.
func AppendHandshake(dst []byte, host, path, key string) []byte {
	dst = append(dst, "GET "...)
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	dst = append(dst, key...)
	return append(dst, "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: "+Subprotocol+"\r\n\r\n"...)
}

var (
	errAnswerTooLong = errors.New("websocket: handshake answer too long")
	errNoUpgrade     = errors.New("websocket: 101 without Upgrade: websocket and Connection: Upgrade")
	errAccept        = errors.New("websocket: wrong or missing Sec-WebSocket-Accept")
)

// ParseAccept checks the server's answer to the handshake AppendHandshake
// made with key, at the start of b. It returns the answer's length, or
// n == 0 and a nil error while the answer is incomplete; what follows it
// in b is the first frame. The answer must be 101 with Upgrade:
// websocket, Connection: Upgrade and the Sec-WebSocket-Accept for key
// (RFC 6455 section 4.1); a subprotocol, if named, must be Subprotocol;
// no extension may be named, as none was offered. Any other answer is an
// error (not an *Error: a client fails the connection, it answers
// nothing), which quotes a refusal's status line and what came of its
// body.
func ParseAccept(b []byte, key string) (n int, err error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) >= MaxAccept {
			return 0, errAnswerTooLong
		}
		return 0, nil
	}
	if end+4 > MaxAccept {
		return 0, errAnswerTooLong
	}
	status, rest, _ := bytes.Cut(b[:end], []byte("\r\n"))
	if !bytes.HasPrefix(status, []byte("HTTP/1.")) || len(status) < 12 || status[8] != ' ' {
		return 0, fmt.Errorf("websocket: not an HTTP answer: %.60q", status)
	}
	if string(status[9:12]) != "101" || (len(status) > 12 && status[12] != ' ') {
		return 0, fmt.Errorf("websocket: upgrade refused: %.60q %.100q", status, b[end+4:])
	}
	want := acceptValue(key)
	var upgrade, connection, accept bool
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("websocket: bad header line %.60q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = bytes.EqualFold(value, []byte("websocket"))
		case bytes.EqualFold(name, []byte("Connection")):
			connection = connection || hasToken(value, "upgrade")
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Accept")):
			accept = bytes.Equal(value, want[:])
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Protocol")):
			if string(value) != Subprotocol {
				return 0, fmt.Errorf("websocket: server chose subprotocol %.60q", value)
			}
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Extensions")):
			return 0, fmt.Errorf("websocket: server named extensions %.60q, none offered", value)
		}
	}
	switch {
	case !upgrade || !connection:
		return 0, errNoUpgrade
	case !accept:
		return 0, errAccept
	}
	return end + 4, nil
}

// AppendClientFrame appends one whole (FIN) client frame: op, and
// payload masked with mask. Masking needs a copy, so dst should have room
// for MaxHeader + len(payload) more bytes to append without allocating.
func AppendClientFrame(dst []byte, op byte, payload []byte, mask [4]byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = binary.BigEndian.AppendUint16(append(dst, 0x80|126), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint64(append(dst, 0x80|127), uint64(n))
	}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	Unmask(dst[start:], mask)
	return dst
}

// ParseServerHeader parses the server frame header at the start of b,
// as ParseHeader does a client's, with the rules for frames from a
// server: the same reserved bits, opcodes, control frame and length
// rules and the payload limit max, but the frame must not be masked
// (RFC 6455 section 5.1). It returns the header (Masked false) and its
// size, or n == 0 and a nil error when b is too short to hold the whole
// header.
func ParseServerHeader(b []byte, max int) (h Header, n int, err error) {
	return parseHeader(b, max, false)
}
