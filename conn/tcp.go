package conn

import (
	"github.com/longlink/longlink/codec"
)

// tcpTransport carries frames back to back on the socket's byte stream.
type tcpTransport struct{ reactorSocket }

func (tcpTransport) input(c *Conn, in []byte) {
	in = withRest(c.partial, in)
	keepRest(c, &c.partial, in, streamFrames(c, in))
}

func (tcpTransport) appendFrame(dst, frame []byte) ([]byte, int) {
	return append(dst, frame...), len(dst)
}

func (tcpTransport) frameLen(b []byte) int { return codec.FrameSize(b) }

func (tcpTransport) backlog(*Conn) int { return 0 }

func (tcpTransport) terminate(c *Conn, _ codec.Status) { c.closeSocket() }

// refusal is a KICK: the socket is new, and the client reads frames from
// its first byte.
func (tcpTransport) refusal(kick []byte) []byte { return kick }

func (tcpTransport) release(*Conn) {}
