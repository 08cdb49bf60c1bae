package conn

import (
	"github.com/longlink/longlink/codec"
	"github.com/valyala/bytebufferpool"
)

// Transport is how a listener's connections carry frames.
type Transport uint8

const (
	TCP       Transport = iota // frames back to back on the byte stream
	WebSocket                  // one frame per binary WebSocket message (RFC 6455)
	TLS                        // frames back to back inside a TLS session
)

// transport carries one connection's frames over its socket: it turns
// the bytes the reactor read into frames for the session, and the
// session's frames into bytes for the socket. Each transport is one file
// (tcp.go, websocket.go, tls.go); the session reaches it only through
// Conn.t, and offers it only the calls of session.go's "what transports
// call" section: a frame came in, a transport frame came in (metered),
// the connection must end with a status.
//
// A transport's per-connection state is the link value itself (a
// WebSocket moves from opening to open to closed), Conn.partial (bytes of
// a frame split across reads) and Conn.ext (state only some transports
// need), so a connection pays for no transport state it does not use.
type transport interface {
	// input consumes bytes read from the socket, handing each whole frame
	// to the session in order while Conn.open reports true, and keeps what
	// is not a whole frame yet for the next call. input(c, nil) goes on
	// with what was kept.
	input(c *Conn, in []byte)
	// appendFrame appends the encoding of one protocol frame to dst and
	// returns where the frame's own bytes start, or -1 when the transport
	// cannot carry frames (yet, or any more).
	appendFrame(dst, frame []byte) ([]byte, int)
	// frameLen is downstream.Conn.FrameLen: the length of the unit at the
	// start of b as appendFrame or a raw send wrote it, 0 if incomplete.
	frameLen(b []byte) int
	// write writes b to the socket without blocking (downstream.Conn.Write).
	write(c *Conn, b []byte) (int, error)
	// watchWritable is downstream.Conn.WatchWritable: one report on ep,
	// with key, once the socket can take bytes again.
	watchWritable(c *Conn, ep int, key uint64) error
	// backlog is how many bytes the transport holds for the socket itself.
	backlog(c *Conn) int
	// terminate ends the connection: the transport's own goodbye, if it has
	// one, then the socket's close.
	terminate(c *Conn, status codec.Status)
	// refusal is what a connection turned away at accept is told, given
	// the KICK that says why: the KICK itself, or nil when the client
	// could not read a frame yet.
	refusal(kick []byte) []byte
	// release frees the transport's state of a closed connection.
	release(c *Conn)
}

// A link names a transport and, for WebSocket, its phase; Conn.kind holds
// one, and links maps it to its transport.
const (
	linkTCP       uint32 = iota
	linkWSOpening        // WebSocket: the handshake is not answered yet
	linkWSOpen           // WebSocket: messages flow
	linkWSClosed         // WebSocket: a close frame was sent; nothing more is
	linkTLS
	numLinks
)

var links = [numLinks]transport{
	linkTCP:       tcpTransport{},
	linkWSOpening: wsTransport{phase: linkWSOpening},
	linkWSOpen:    wsTransport{phase: linkWSOpen},
	linkWSClosed:  wsTransport{phase: linkWSClosed},
	linkTLS:       tlsTransport{},
}

// firstLink is the link a new connection of a listener's transport starts on.
var firstLink = [...]uint32{TCP: linkTCP, WebSocket: linkWSOpening, TLS: linkTLS}

// t is c's transport.
func (c *Conn) t() transport { return links[c.kind.Load()] }

// streamFrames hands the session each whole frame at the start of in, for
// transports whose frames lie back to back on a byte stream (TCP, TLS),
// and returns how many bytes it used. A frame the codec refuses ends the
// connection with the codec's status.
func streamFrames(c *Conn, in []byte) int {
	used := 0
	for used < len(in) && c.open() {
		f, n, err := codec.Decode(in[used:], c.maxFrame())
		if err != nil {
			e := err.(*codec.Error)
			c.kick(e.Status, e.Reason)
			return len(in)
		}
		if n == 0 {
			break
		}
		used += n
		over := c.meterIn()
		c.frameIn(&f, over)
	}
	return used
}

// withRest returns in behind the bytes *rest kept from earlier reads.
func withRest(rest *bytebufferpool.ByteBuffer, in []byte) []byte {
	if rest == nil {
		return in
	}
	rest.B = append(rest.B, in...)
	return rest.B
}

// keepRest keeps in[used:] in *rest for the next read while c is open,
// and frees *rest when nothing is left. in may be (*rest).B itself.
func keepRest(c *Conn, rest **bytebufferpool.ByteBuffer, in []byte, used int) {
	if len(in) > used && c.State() < StateClosing {
		if *rest == nil {
			*rest = bytebufferpool.Get()
			(*rest).B = append((*rest).B[:0], in[used:]...)
		} else {
			(*rest).B = (*rest).B[:copy((*rest).B, in[used:])]
		}
		c.checkHeld(len(in) - used)
		return
	}
	if *rest != nil {
		bytebufferpool.Put(*rest)
		*rest = nil
	}
}
