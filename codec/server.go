package codec

import "strconv"

// The frames the server sends, encoded in one place so that every
// transport, the session and the push API write them the same way. Each
// appends one whole frame to dst and allocates nothing when dst has room.

// LoginAck is what a successful LOGIN_ACK carries.
type LoginAck struct {
	Seq       uint32 // the LOGIN's seq
	Conn      uint64 // meta "conn": the connection's id
	Node      string // meta "node"
	Heartbeat int64  // meta "hb": the heartbeat interval granted, in seconds
	// HeartbeatMin and HeartbeatMax are meta "hb_min" and "hb_max": the
	// bounds a LOGIN's "hb" is clamped to, in seconds; left out when 0.
	HeartbeatMin, HeartbeatMax int64
	// Resumed is meta "resumed": ResumedNone leaves it out (the LOGIN
	// carried no resume).
	Resumed Resumed
}

// Resumed is LOGIN_ACK's "resumed" meta.
type Resumed uint8

const (
	ResumedNone       Resumed = iota // not resuming: no "resumed" meta
	ResumedIncomplete                // "resumed" 0: some pushes were lost
	ResumedComplete                  // "resumed" 1
)

// AppendLoginAck appends a LOGIN_ACK with status OK.
func AppendLoginAck(dst []byte, a *LoginAck) []byte {
	b, start := BeginFrame(dst)
	var num [20]byte
	b = AppendMeta(b, "conn", strconv.AppendUint(num[:0], a.Conn, 10))
	b = AppendMetaString(b, "node", a.Node)
	b = AppendMeta(b, "hb", strconv.AppendInt(num[:0], a.Heartbeat, 10))
	if a.HeartbeatMin > 0 {
		b = AppendMeta(b, "hb_min", strconv.AppendInt(num[:0], a.HeartbeatMin, 10))
	}
	if a.HeartbeatMax > 0 {
		b = AppendMeta(b, "hb_max", strconv.AppendInt(num[:0], a.HeartbeatMax, 10))
	}
	switch a.Resumed {
	case ResumedIncomplete:
		b = AppendMetaString(b, "resumed", "0")
	case ResumedComplete:
		b = AppendMetaString(b, "resumed", "1")
	}
	EndFrame(b, start, Header{Op: OpLoginAck, Seq: a.Seq}, len(b)-start-HeaderSize)
	return b
}

// AppendLoginRefusal appends a LOGIN_ACK that refuses the LOGIN of seq
// with status and meta "reason".
func AppendLoginRefusal(dst []byte, seq uint32, status Status, reason string) []byte {
	return appendRefusal(dst, OpLoginAck, seq, status, reason)
}

// appendRefusal appends an answer op to the request of seq, refused with
// status and meta "reason".
func appendRefusal(dst []byte, op Op, seq uint32, status Status, reason string) []byte {
	b, start := BeginFrame(dst)
	b = AppendMetaString(b, "reason", reason)
	EndFrame(b, start, Header{Op: op, Seq: seq, Status: status}, len(b)-start-HeaderSize)
	return b
}

// AppendRefreshAck appends a REFRESH_ACK with status OK for the REFRESH
// of seq: the session now ends at exp (meta "exp", Unix seconds).
func AppendRefreshAck(dst []byte, seq uint32, exp int64) []byte {
	b, start := BeginFrame(dst)
	var num [20]byte
	b = AppendMeta(b, "exp", strconv.AppendInt(num[:0], exp, 10))
	EndFrame(b, start, Header{Op: OpRefreshAck, Seq: seq}, len(b)-start-HeaderSize)
	return b
}

// AppendRefreshRefusal appends a REFRESH_ACK that refuses the REFRESH of
// seq with status and meta "reason"; the session goes on.
func AppendRefreshRefusal(dst []byte, seq uint32, status Status, reason string) []byte {
	return appendRefusal(dst, OpRefreshAck, seq, status, reason)
}

// AppendKick appends a KICK with status, meta "reason" and, when not
// empty, meta "redirect".
func AppendKick(dst []byte, status Status, reason, redirect string) []byte {
	b, start := BeginFrame(dst)
	b = AppendMetaString(b, "reason", reason)
	if redirect != "" {
		b = AppendMetaString(b, "redirect", redirect)
	}
	EndFrame(b, start, Header{Op: OpKick, Status: status}, len(b)-start-HeaderSize)
	return b
}

// Push is what a PUSH carries besides its seq, which each delivery stamps
// (SetSeq).
type Push struct {
	Biz   uint16
	Ack   bool   // flags ACK_REQUIRED
	ID    string // meta "id" when not empty
	Group string // meta "group" when not empty
	Body  []byte
}

// PushSize is the size of p's frame.
func PushSize(p *Push) int {
	n := HeaderSize + len(p.Body)
	if p.ID != "" {
		n += 1 + len("id") + 2 + len(p.ID)
	}
	if p.Group != "" {
		n += 1 + len("group") + 2 + len(p.Group)
	}
	return n
}

// AppendPush appends p as a PUSH with seq 0.
func AppendPush(dst []byte, p *Push) []byte {
	b, start := BeginFrame(dst)
	if p.ID != "" {
		b = AppendMetaString(b, "id", p.ID)
	}
	if p.Group != "" {
		b = AppendMetaString(b, "group", p.Group)
	}
	metaLen := len(b) - start - HeaderSize
	b = append(b, p.Body...)
	h := Header{Op: OpPush, Biz: p.Biz}
	if p.Ack {
		h.Flags = FlagAckRequired
	}
	EndFrame(b, start, h, metaLen)
	return b
}

// AppendPong appends the PONG for the PING of seq, with status OK or,
// past the connection's frame rate, OVERLOADED.
func AppendPong(dst []byte, seq uint32, status Status) []byte {
	b, start := BeginFrame(dst)
	EndFrame(b, start, Header{Op: OpPong, Seq: seq, Status: status}, 0)
	return b
}

// AppendResponse appends the RESPONSE to the REQUEST of biz and seq; meta
// is an encoded meta section (AppendMeta).
func AppendResponse(dst []byte, biz uint16, seq uint32, status Status, meta, body []byte) []byte {
	return AppendFrame(dst, Header{Op: OpResponse, Biz: biz, Seq: seq, Status: status}, meta, body)
}
