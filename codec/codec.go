package codec

import (
	"encoding/binary"
	"strconv"
)

// HeaderSize is the fixed size of a frame header, in bytes.
const HeaderSize = 20

// Magic bytes and the protocol version carried by every frame.
const (
	Magic0  = 'L'
	Magic1  = 'K'
	Version = 1
)

// DefaultMaxFrame is the default limit on a frame's total size
// (header + meta + body), the `-max-frame` flag's default.
const DefaultMaxFrame = 65536

// MaxLoginFrame is the limit on a frame's total size before a successful
// LOGIN, whatever -max-frame allows after it (docs/protocol.md, "Limits
// before login"): an unauthenticated connection holds kilobytes.
const MaxLoginFrame = 8192

// Op is a frame's operation.
type Op uint8

// The operations of protocol version 1.
const (
	OpLogin    Op = 0x01 // c->s: authenticate; must be the first frame
	OpLoginAck Op = 0x02 // s->c: result of LOGIN, seq copied
	OpPing     Op = 0x03 // c->s: heartbeat
	OpPong     Op = 0x04 // s->c: answer to PING, seq copied
	OpRequest  Op = 0x05 // c->s: upstream request to business biz
	OpResponse Op = 0x06 // s->c: answer to REQUEST, biz and seq copied
	OpPush     Op = 0x07 // s->c: downstream message
	OpPushAck  Op = 0x08 // c->s: cumulative ack of pushes up to seq
	OpKick     Op = 0x09 // s->c: the server is closing the connection

	// Additions to version 1 (docs/protocol.md, "Session expiry and REFRESH").
	OpRefresh    Op = 0x0A // c->s: replace the session's token before it expires
	OpRefreshAck Op = 0x0B // s->c: result of REFRESH, seq copied
)

var opNames = [...]string{
	OpLogin: "LOGIN", OpLoginAck: "LOGIN_ACK", OpPing: "PING", OpPong: "PONG",
	OpRequest: "REQUEST", OpResponse: "RESPONSE", OpPush: "PUSH",
	OpPushAck: "PUSH_ACK", OpKick: "KICK", OpRefresh: "REFRESH", OpRefreshAck: "REFRESH_ACK",
}

// Valid reports whether op is an operation of protocol version 1 or of
// its additions.
func (op Op) Valid() bool { return op >= OpLogin && op <= OpRefreshAck }

func (op Op) String() string {
	if op.Valid() {
		return opNames[op]
	}
	return "OP(" + strconv.Itoa(int(op)) + ")"
}

// FlagAckRequired asks the client to acknowledge a PUSH with PUSH_ACK.
const FlagAckRequired = 0x01

// Status is a result code in replies and the reason of a KICK.
type Status uint16

// The status codes of protocol version 1.
const (
	StatusOK             Status = 0  // success
	StatusBadFrame       Status = 1  // malformed frame
	StatusUnauthorized   Status = 2  // token missing, invalid or expired
	StatusNotLoggedIn    Status = 3  // frame before a successful LOGIN
	StatusUnknownBiz     Status = 4  // no such business
	StatusBizUnavailable Status = 5  // business down or circuit open
	StatusTimeout        Status = 6  // business did not answer in time
	StatusOverloaded     Status = 7  // rate limit or queue full; not forwarded
	StatusFrameTooLarge  Status = 8  // frame over the maximum size
	StatusDuplicateLogin Status = 9  // the device logged in on another connection
	StatusShuttingDown   Status = 10 // the node is draining
	StatusIdleTimeout    Status = 11 // no frame within the idle timeout
	StatusBizError       Status = 12 // the business answered with an error
	StatusInternal       Status = 13 // gateway fault
	StatusSlowConsumer   Status = 14 // the client did not read fast enough
)

// NumStatus is one more than the largest status code, for tables indexed
// by status.
const NumStatus = 15

var statusNames = [NumStatus]string{
	"OK", "BAD_FRAME", "UNAUTHORIZED", "NOT_LOGGED_IN", "UNKNOWN_BIZ",
	"BIZ_UNAVAILABLE", "TIMEOUT", "OVERLOADED", "FRAME_TOO_LARGE",
	"DUPLICATE_LOGIN", "SHUTTING_DOWN", "IDLE_TIMEOUT", "BIZ_ERROR",
	"INTERNAL", "SLOW_CONSUMER",
}

func (s Status) String() string {
	if s < NumStatus {
		return statusNames[s]
	}
	return "STATUS(" + strconv.Itoa(int(s)) + ")"
}

// Header is a decoded frame header.
type Header struct {
	Op      Op
	Flags   uint8
	Biz     uint16
	Status  Status
	MetaLen uint16
	Seq     uint32
	BodyLen uint32
}

// Size is the frame's total size: header, meta and body.
func (h *Header) Size() int { return HeaderSize + int(h.MetaLen) + int(h.BodyLen) }

// Frame is a decoded frame. Meta and Body alias the decoded input.
type Frame struct {
	Header
	Meta Meta
	Body []byte
}

// Offsets of the header fields, for code that patches encoded frames.
const (
	OffsetSeq = 12
)

// ParseHeader decodes and checks the header at the start of b, which must
// hold at least HeaderSize bytes. It refuses a bad magic, version or op and
// a declared total size above maxFrame, so the caller never buffers the
// body of a frame it will refuse. The reserved byte and undefined flag bits
// are ignored, as docs/protocol.md names only those faults as BAD_FRAME.
func ParseHeader(b []byte, maxFrame int) (Header, error) {
	_ = b[HeaderSize-1]
	if b[0] != Magic0 || b[1] != Magic1 {
		return Header{}, errBadMagic
	}
	if b[2] != Version {
		return Header{}, errBadVersion
	}
	h := Header{
		Op:      Op(b[3]),
		Flags:   b[4],
		Biz:     binary.BigEndian.Uint16(b[6:]),
		Status:  Status(binary.BigEndian.Uint16(b[8:])),
		MetaLen: binary.BigEndian.Uint16(b[10:]),
		Seq:     binary.BigEndian.Uint32(b[12:]),
		BodyLen: binary.BigEndian.Uint32(b[16:]),
	}
	if !h.Op.Valid() {
		return Header{}, errBadOp
	}
	// BodyLen is checked on its own first so the sum cannot overflow int.
	if int64(h.BodyLen) > int64(maxFrame) || h.Size() > maxFrame {
		return Header{}, errTooLarge
	}
	return h, nil
}

// Decode decodes the first frame of b. It returns the frame and its size,
// or n == 0 and a nil error when b does not yet hold the whole frame (the
// header, when present, has been checked already). The frame's Meta has
// been validated. Decode does not allocate.
func Decode(b []byte, maxFrame int) (f Frame, n int, err error) {
	if len(b) < HeaderSize {
		return Frame{}, 0, nil
	}
	h, err := ParseHeader(b, maxFrame)
	if err != nil {
		return Frame{}, 0, err
	}
	n = h.Size()
	if len(b) < n {
		return Frame{}, 0, nil
	}
	metaEnd := HeaderSize + int(h.MetaLen)
	meta := Meta(b[HeaderSize:metaEnd:metaEnd])
	if err := meta.Validate(); err != nil {
		return Frame{}, 0, err
	}
	return Frame{Header: h, Meta: meta, Body: b[metaEnd:n:n]}, n, nil
}

// FrameSize is the total size the frame header at the start of b
// declares, or 0 when b is shorter than a header. It checks nothing: it
// is for frames the gateway encoded itself.
func FrameSize(b []byte) int {
	if len(b) < HeaderSize {
		return 0
	}
	return HeaderSize + int(binary.BigEndian.Uint16(b[10:])) + int(binary.BigEndian.Uint32(b[16:]))
}

// PutHeader writes h into the first HeaderSize bytes of b.
func PutHeader(b []byte, h *Header) {
	_ = b[HeaderSize-1]
	b[0], b[1], b[2], b[3], b[4], b[5] = Magic0, Magic1, Version, byte(h.Op), h.Flags, 0
	binary.BigEndian.PutUint16(b[6:], h.Biz)
	binary.BigEndian.PutUint16(b[8:], uint16(h.Status))
	binary.BigEndian.PutUint16(b[10:], h.MetaLen)
	binary.BigEndian.PutUint32(b[12:], h.Seq)
	binary.BigEndian.PutUint32(b[16:], h.BodyLen)
}

// AppendFrame appends a whole frame to dst: h's MetaLen and BodyLen are
// set from meta (an encoded meta section, see AppendMeta) and body.
// It does not check sizes against a limit: the gateway only encodes
// frames it has bounded on the way in.
func AppendFrame(dst []byte, h Header, meta, body []byte) []byte {
	dst, start := BeginFrame(dst)
	dst = append(dst, meta...)
	dst = append(dst, body...)
	EndFrame(dst, start, h, len(meta))
	return dst
}

// SetSeq overwrites the seq field of the encoded frame at the start of b.
// A broadcast is encoded once and each copy gets its device's seq this way.
func SetSeq(b []byte, seq uint32) {
	binary.BigEndian.PutUint32(b[OffsetSeq:], seq)
}

// BeginFrame starts a frame at the end of dst by appending a header-sized
// placeholder; append meta entries (AppendMeta) and then the body to the
// result, and finish with EndFrame. This builds a frame in one buffer
// without knowing the meta's size in advance, and without allocating.
func BeginFrame(dst []byte) (b []byte, start int) {
	start = len(dst)
	return append(dst, make([]byte, HeaderSize)...), start
}

// EndFrame writes h into the frame begun at start, with MetaLen metaLen
// and BodyLen whatever follows the meta.
func EndFrame(b []byte, start int, h Header, metaLen int) {
	h.MetaLen = uint16(metaLen)
	h.BodyLen = uint32(len(b) - start - HeaderSize - metaLen)
	PutHeader(b[start:], &h)
}
