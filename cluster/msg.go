package cluster

import (
	"encoding/binary"
	"errors"
)

// Kind is what a message between nodes asks for.
type Kind uint8

const (
	KindPush    Kind = iota + 1 // deliver Frame to Devices connected at the receiver; reply lists the missing ones
	KindGroup                   // deliver Frame to the receiver's members of Group; reply counts them
	KindAll                     // deliver Frame to every connection of the receiver; reply counts them
	KindKick                    // kick Device's connection Conn with Status and Reason; reply Count 1 if kicked
	KindMembers                 // Devices joined (Join) or left Group: update the receiver's local index
	kindReply                   // the answer to a request
)

func (k Kind) String() string {
	switch k {
	case KindPush:
		return "push"
	case KindGroup:
		return "group"
	case KindAll:
		return "all"
	case KindKick:
		return "kick"
	case KindMembers:
		return "members"
	case kindReply:
		return "reply"
	}
	return "unknown"
}

// Msg is one message between nodes. Which fields count depends on Kind.
type Msg struct {
	Kind    Kind
	Devices []string // KindPush, KindMembers
	Group   string   // KindGroup, KindMembers
	Frame   []byte   // KindPush, KindGroup, KindAll: an encoded PUSH with seq 0
	Device  string   // KindKick
	Conn    uint64   // KindKick: the connection to kick; 0 means whichever the device has
	Status  uint16   // KindKick: the KICK status
	Reason  string   // KindKick
	Join    bool     // KindMembers: joined (true) or left
	Settle  bool     // KindKick: answer only once the connection is gone and its recovery state saved
	// Cached (KindPush): the sender took the devices' node from its cache
	// of routes, not from the route: a device not connected at the
	// receiver is answered missing and not kept there, and the sender
	// looks it up and routes it anew.
	Cached bool
	// Mark (KindPush, durable pushes): a key unique to this request that
	// the receiver journals with each delivery, so that a sender that got
	// no answer can tell later whether the receiver journaled the push.
	Mark string
}

// Reply is a node's answer to a request.
type Reply struct {
	Node    string   // who answered
	Count   int      // deliveries (KindGroup, KindAll), or 1 if kicked (KindKick)
	Missing []string // KindPush: the devices not connected there, their push kept there
	// Moved (KindPush): devices not connected there whose push it did not
	// keep, because a login of theirs is under way there or elsewhere: the
	// sender routes them again.
	Moved []string

	unsent bool // Links: the request was never written
}

// envelope is a Msg or a Reply with its routing: the request id (0: no
// reply wanted), the sender, and for a reply the instance it answers.
type envelope struct {
	kind     Kind
	id       uint64
	node     string // the sender's node id
	instance string // the sender's instance
	to       string // kindReply: the instance of the requester
	msg      Msg
	reply    Reply
}

// Encoding: kind (1 byte), then uvarints and strings (uvarint length,
// bytes), in the order encode writes them.

func (e *envelope) encode() []byte { return e.appendTo(make([]byte, 0, 64+len(e.msg.Frame))) }

// appendTo appends the encoded envelope to b.
func (e *envelope) appendTo(b []byte) []byte {
	b = append(b, byte(e.kind))
	b = binary.AppendUvarint(b, e.id)
	b = appendString(b, e.node)
	b = appendString(b, e.instance)
	switch e.kind {
	case KindPush:
		b = appendStrings(b, e.msg.Devices)
		b = appendBytes(b, e.msg.Frame)
		b = appendBool(b, e.msg.Cached)
		b = appendString(b, e.msg.Mark)
	case KindGroup:
		b = appendString(b, e.msg.Group)
		b = appendBytes(b, e.msg.Frame)
	case KindAll:
		b = appendBytes(b, e.msg.Frame)
	case KindKick:
		b = appendString(b, e.msg.Device)
		b = binary.AppendUvarint(b, e.msg.Conn)
		b = binary.AppendUvarint(b, uint64(e.msg.Status))
		b = appendString(b, e.msg.Reason)
		b = appendBool(b, e.msg.Settle)
	case KindMembers:
		b = appendString(b, e.msg.Group)
		b = appendBool(b, e.msg.Join)
		b = appendStrings(b, e.msg.Devices)
	case kindReply:
		b = appendString(b, e.to)
		b = binary.AppendUvarint(b, uint64(e.reply.Count))
		b = appendStrings(b, e.reply.Missing)
		b = appendStrings(b, e.reply.Moved)
	}
	return b
}

var errBadMsg = errors.New("cluster: malformed message")

func decode(b []byte) (envelope, error) {
	var e envelope
	if len(b) == 0 {
		return e, errBadMsg
	}
	d := decoder{b: b[1:]}
	e.kind = Kind(b[0])
	e.id = d.uvarint()
	e.node = d.string()
	e.instance = d.string()
	switch e.kind {
	case KindPush:
		e.msg.Devices = d.strings()
		e.msg.Frame = d.bytes()
		e.msg.Cached = d.bool()
		e.msg.Mark = d.string()
	case KindGroup:
		e.msg.Group = d.string()
		e.msg.Frame = d.bytes()
	case KindAll:
		e.msg.Frame = d.bytes()
	case KindKick:
		e.msg.Device = d.string()
		e.msg.Conn = d.uvarint()
		e.msg.Status = uint16(d.uvarint())
		e.msg.Reason = d.string()
		e.msg.Settle = d.bool()
	case KindMembers:
		e.msg.Group = d.string()
		e.msg.Join = d.bool()
		e.msg.Devices = d.strings()
	case kindReply:
		e.to = d.string()
		e.reply.Count = int(d.uvarint())
		e.reply.Missing = d.strings()
		e.reply.Moved = d.strings()
		e.reply.Node = e.node
	default:
		return e, errBadMsg
	}
	if d.bad || len(d.b) != 0 {
		return e, errBadMsg
	}
	if e.kind != kindReply {
		e.msg.Kind = e.kind
	}
	return e, nil
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// decoder reads what encode wrote; past the first problem it returns
// zero values and sets bad.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) strings() []string {
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each string takes at least a byte
		d.bad = true
		d.b = nil
		return nil
	}
	var ss []string
	if n > 0 {
		ss = make([]string, 0, n)
	}
	for range n {
		ss = append(ss, d.string())
	}
	return ss
}

func (d *decoder) bool() bool {
	if len(d.b) == 0 {
		d.bad = true
		return false
	}
	if d.b[0] > 1 {
		d.bad = true
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}
