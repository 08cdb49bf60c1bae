// Package websocket is the part of RFC 6455 a gateway on an event loop
// needs: parsing the opening handshake and frame headers out of bytes
// that have already arrived, and encoding the answers. It never reads
// from a socket and never blocks, so the gateway can run WebSocket on its
// reactor with no goroutine per connection, which no WebSocket library
// built on blocking reads allows.
//
// client.go has the client side, for the load generator: the handshake
// request and the check of the server's answer, masked client frames,
// and the parsing of server frame headers.
//
// Every function works on a byte slice and reports "incomplete" (n == 0,
// nil error) when the slice does not yet hold the whole handshake or
// frame header; the caller keeps the bytes and calls again when more
// arrive. Limits are checked on the header, before any payload is
// buffered.
//
// The package has no state; every function is safe for concurrent use.
package websocket

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"unicode/utf8"
)

// Opcodes of RFC 6455 section 5.2.
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// Close codes of RFC 6455 section 7.4.1 that the gateway sends.
const (
	CloseNormal      = 1000
	CloseGoingAway   = 1001
	CloseProtocol    = 1002
	CloseUnsupported = 1003
	CloseInvalidData = 1007 // a close reason that is not UTF-8
	ClosePolicy      = 1008
	CloseTooBig      = 1009
)

// MaxHandshake bounds the opening handshake request, headers included.
const MaxHandshake = 8192

// Subprotocol is echoed when the client offers it.
const Subprotocol = "longlink.v1"

// Error is a handshake or framing failure. Status is the HTTP status to
// answer a bad handshake with, or 0 for a framing error, which is
// answered with a close frame carrying Code.
type Error struct {
	Status int
	Code   uint16
	Reason string
}

func (e *Error) Error() string { return "websocket: " + e.Reason }

var (
	errTooLongHandshake = &Error{Status: 431, Reason: "handshake too long"}
	errNotGet           = &Error{Status: 405, Reason: "handshake must be a GET"}
	errNotUpgrade       = &Error{Status: 400, Reason: "not a WebSocket upgrade"}
	errVersion          = &Error{Status: 426, Reason: "unsupported WebSocket version (13 required)"}
	errKey              = &Error{Status: 400, Reason: "bad Sec-WebSocket-Key"}
	errOrigins          = &Error{Status: 400, Reason: "more than one Origin header"}
	errRSV              = &Error{Code: CloseProtocol, Reason: "reserved bits set"}
	errUnmasked         = &Error{Code: CloseProtocol, Reason: "client frame not masked"}
	errMasked           = &Error{Code: CloseProtocol, Reason: "server frame masked"}
	errBadOpcode        = &Error{Code: CloseProtocol, Reason: "unknown opcode"}
	errControl          = &Error{Code: CloseProtocol, Reason: "fragmented or oversized control frame"}
	errLength           = &Error{Code: CloseProtocol, Reason: "non-minimal or 64-bit length with the high bit set"}
	// ErrTooBig is returned for a frame whose payload exceeds the limit.
	ErrTooBig = &Error{Code: CloseTooBig, Reason: "message too big"}
)

// Handshake is a parsed opening handshake.
type Handshake struct {
	Key         []byte // Sec-WebSocket-Key, aliasing the input
	Origin      []byte // Origin, aliasing the input; nil when absent or empty
	Subprotocol bool   // the client offered Subprotocol
}

// ParseHandshake parses the HTTP upgrade request at the start of b. It
// returns n == 0 and a nil error while the request is incomplete.
func ParseHandshake(b []byte) (h Handshake, n int, err error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) >= MaxHandshake {
			return h, 0, errTooLongHandshake
		}
		return h, 0, nil
	}
	if end+4 > MaxHandshake {
		return h, 0, errTooLongHandshake
	}
	lines := bytes.Split(b[:end], []byte("\r\n"))
	req := bytes.Split(lines[0], []byte(" "))
	if len(req) != 3 || len(req[1]) == 0 || !validHTTPVersion(req[2]) {
		return h, 0, errNotUpgrade
	}
	if string(req[0]) != "GET" {
		return h, 0, errNotGet
	}
	var upgrade, connection, version, host bool
	for _, line := range lines[1:] {
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return h, 0, errNotUpgrade
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		// Repeated list headers combine (RFC 7230 section 3.2.2).
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = upgrade || hasToken(value, "websocket")
		case bytes.EqualFold(name, []byte("Connection")):
			connection = connection || hasToken(value, "upgrade")
		case bytes.EqualFold(name, []byte("Host")):
			host = true
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Version")):
			version = string(value) == "13"
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Key")):
			if h.Key != nil {
				return h, 0, errKey // one key only (RFC 6455 section 11.3.1)
			}
			h.Key = value
		case bytes.EqualFold(name, []byte("Origin")):
			// One only (RFC 6454 section 7.3): with two, a check of
			// either would let the other through.
			if h.Origin != nil {
				return h, 0, errOrigins
			}
			h.Origin = value
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Protocol")):
			h.Subprotocol = h.Subprotocol || hasExactToken(value, Subprotocol)
		}
	}
	if !upgrade || !connection || !host {
		return h, 0, errNotUpgrade
	}
	if !version {
		return h, 0, errVersion
	}
	if k, err := base64.StdEncoding.DecodeString(string(h.Key)); err != nil || len(k) != 16 {
		return h, 0, errKey
	}
	return h, end + 4, nil
}

// validHTTPVersion accepts HTTP/1.1 and later 1.x versions: the opening
// handshake needs at least HTTP/1.1 (RFC 6455 section 4.2.1).
func validHTTPVersion(v []byte) bool {
	return len(v) == 8 && bytes.HasPrefix(v, []byte("HTTP/1.")) && v[7] >= '1' && v[7] <= '9'
}

// hasExactToken reports whether the comma-separated header value holds
// token exactly: subprotocol names are compared as they are.
func hasExactToken(value []byte, token string) bool {
	for len(value) > 0 {
		var part []byte
		part, value, _ = bytes.Cut(value, []byte(","))
		if string(bytes.TrimSpace(part)) == token {
			return true
		}
	}
	return false
}

// hasToken reports whether the comma-separated header value holds token,
// case-insensitively.
func hasToken(value []byte, token string) bool {
	for len(value) > 0 {
		var part []byte
		part, value, _ = bytes.Cut(value, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(part), []byte(token)) {
			return true
		}
	}
	return false
}

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptValue is the Sec-WebSocket-Accept that answers key (RFC 6455
// section 4.2.2): base64 of the SHA-1 of key and the GUID.
func acceptValue[K string | []byte](key K) (v [28]byte) {
	var buf [64]byte
	sum := sha1.Sum(append(append(buf[:0], key...), acceptGUID...))
	base64.StdEncoding.Encode(v[:], sum[:])
	return v
}

// AppendAccept appends the 101 answer to a parsed handshake.
func AppendAccept(dst []byte, h Handshake) []byte {
	v := acceptValue(h.Key)
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = append(dst, v[:]...)
	if h.Subprotocol {
		dst = append(dst, "\r\nSec-WebSocket-Protocol: "+Subprotocol...)
	}
	return append(dst, "\r\n\r\n"...)
}

// AppendReject appends an HTTP error answer to a bad handshake.
func AppendReject(dst []byte, e *Error) []byte {
	status := e.Status
	if status == 0 {
		status = 400
	}
	text := map[int]string{400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 426: "Upgrade Required", 431: "Request Header Fields Too Large"}[status]
	dst = append(dst, "HTTP/1.1 "...)
	dst = appendInt(dst, status)
	dst = append(dst, ' ')
	dst = append(dst, text...)
	dst = append(dst, "\r\nConnection: close\r\nContent-Type: text/plain\r\n"...)
	if status == 426 {
		dst = append(dst, "Sec-WebSocket-Version: 13\r\n"...)
	}
	dst = append(dst, "Content-Length: "...)
	dst = appendInt(dst, len(e.Reason))
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, e.Reason...)
}

func appendInt(dst []byte, v int) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

// Header is a parsed frame header.
type Header struct {
	Fin    bool
	Op     byte
	Masked bool
	Mask   [4]byte
	Len    int // payload length
}

// ParseHeader parses the client frame header at the start of b, checking
// it against the rules for frames from a client and the payload limit
// max. It returns the header and its size, or n == 0 and a nil error when
// b is too short to hold the whole header.
func ParseHeader(b []byte, max int) (h Header, n int, err error) {
	return parseHeader(b, max, true)
}

// parseHeader is ParseHeader and ParseServerHeader: masked says which
// side the frame comes from (a client masks, a server must not).
func parseHeader(b []byte, max int, masked bool) (h Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	if b[0]&0x70 != 0 {
		return h, 0, errRSV
	}
	h.Fin = b[0]&0x80 != 0
	h.Op = b[0] & 0x0F
	h.Masked = b[1]&0x80 != 0
	switch h.Op {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
	default:
		return h, 0, errBadOpcode
	}
	if h.Masked != masked {
		if masked {
			return h, 0, errUnmasked
		}
		return h, 0, errMasked
	}
	n = 2
	switch l := b[1] & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.Len = int(binary.BigEndian.Uint16(b[2:]))
		if h.Len < 126 {
			return h, 0, errLength
		}
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 || v < 1<<16 {
			return h, 0, errLength
		}
		if v > uint64(max) {
			return h, 0, ErrTooBig
		}
		h.Len = int(v)
		n = 10
	default:
		h.Len = int(l)
	}
	if h.Op >= OpClose && (!h.Fin || h.Len > 125) {
		return h, 0, errControl
	}
	if h.Len > max {
		return h, 0, ErrTooBig
	}
	if !masked {
		return h, n, nil
	}
	if len(b) < n+4 {
		return h, 0, nil
	}
	copy(h.Mask[:], b[n:])
	return h, n + 4, nil
}

// Unmask applies a frame's mask to its payload in place, eight bytes at
// a time. Masking is the same XOR, so it also masks a client frame's
// payload (AppendClientFrame).
func Unmask(p []byte, mask [4]byte) {
	m32 := uint64(binary.LittleEndian.Uint32(mask[:]))
	m := m32 | m32<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^m)
	}
	for ; i < len(p); i++ {
		p[i] ^= mask[i&3]
	}
}

// AppendHeader appends an unmasked server frame header (FIN set) for a
// payload of n bytes.
func AppendHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}

// AppendClose appends a close frame with code and reason, cut to fit a
// control frame on a character boundary (a close reason must be UTF-8).
func AppendClose(dst []byte, code uint16, reason string) []byte {
	if len(reason) > 123 {
		i := 123
		for i > 0 && !utf8.RuneStart(reason[i]) {
			i--
		}
		reason = reason[:i]
	}
	dst = AppendHeader(dst, OpClose, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}

var errCloseCode = &Error{Code: CloseProtocol, Reason: "invalid close code"}

// ErrCloseReason is CloseCode's error for a close frame whose reason is
// not valid UTF-8, answered with CloseInvalidData: RFC 6455 section 5.5.1
// requires the reason to be UTF-8, and section 8.1 fails a connection
// that sends invalid UTF-8 where UTF-8 is due.
var ErrCloseReason = &Error{Code: CloseInvalidData, Reason: "close reason is not valid UTF-8"}

// CloseCode returns the status code of a close frame's payload, 1005 (no
// status) when it has none. A code that may not appear on the wire (RFC
// 6455 section 7.4) is an error, answered with CloseProtocol; a valid
// code with a reason that is not UTF-8 is ErrCloseReason.
func CloseCode(payload []byte) (uint16, error) {
	switch {
	case len(payload) == 0:
		return 1005, nil
	case len(payload) == 1:
		return 0, errCloseCode
	}
	code := binary.BigEndian.Uint16(payload)
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		if !utf8.Valid(payload[2:]) {
			return 0, ErrCloseReason
		}
		return code, nil
	}
	return 0, errCloseCode
}
