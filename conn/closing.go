package conn

import (
	"github.com/longlink/longlink/codec"
	"golang.org/x/sys/unix"
)

// CloseReason says why a connection closed, for the metrics and the
// disconnect events: a client that leaves, a network that fails and a
// server that decides are told apart, as are the server's reasons.
type CloseReason uint8

const (
	CloseClient       CloseReason = iota // the client closed: a TCP FIN, a WebSocket close, a TLS close_notify
	CloseReadError                       // the connection failed: a reset, a TLS alert or bad record, a failed handshake
	CloseWriteError                      // a write to the socket failed
	CloseIdle                            // no frame within the idle timeout (KICK IDLE_TIMEOUT)
	CloseKicked                          // the server closed it with another status: a KICK, a refused LOGIN
	CloseSlowConsumer                    // it did not read its frames in time (KICK SLOW_CONSUMER)
	CloseShutdown                        // the node drained (KICK SHUTTING_DOWN)
	NumCloseReasons
)

var closeNames = [NumCloseReasons]string{
	CloseClient:       "client_closed",
	CloseReadError:    "read_error",
	CloseWriteError:   "write_error",
	CloseIdle:         "idle",
	CloseKicked:       "kicked",
	CloseSlowConsumer: "slow_consumer",
	CloseShutdown:     "shutdown",
}

func (r CloseReason) String() string {
	if r < NumCloseReasons {
		return closeNames[r]
	}
	return "invalid"
}

// The state word's close bits: a transport saw its socket fail, a write
// failed; and, once closed, the reason in the top byte.
const (
	readFailed  = 1 << 8
	writeFailed = 1 << 14
	reasonShift = 24
)

// failed closes c because its transport cannot go on reading it (a TLS
// handshake that failed, an alert, a flood): a read error, not a kick.
func (c *Conn) failed() {
	c.state.Or(readFailed)
	c.nc.Close()
}

// closeReason decides, in the close hook while the descriptor is still
// open, why c closed. A close the server decided carries its status; a
// close it did not decide is the client's when the kernel saw the
// client's FIN, and a failure otherwise (a reset).
func (c *Conn) closeReason() CloseReason {
	w := c.state.Load()
	switch {
	case w&writeFailed != 0:
		return CloseWriteError
	case w&readFailed != 0:
		return CloseReadError
	case State(w&stateMask) == StateClosing:
		switch codec.Status(w >> 16 & 0xFF) {
		case codec.StatusOK:
			return CloseClient // it asked to close (a WebSocket close)
		case codec.StatusIdleTimeout:
			return CloseIdle
		case codec.StatusSlowConsumer:
			return CloseSlowConsumer
		case codec.StatusShuttingDown:
			return CloseShutdown
		}
		return CloseKicked
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return CloseClient
	}
	info, err := unix.GetsockoptTCPInfo(int(c.fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return CloseReadError
	}
	switch info.State {
	case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_CLOSING, unix.BPF_TCP_TIME_WAIT:
		return CloseClient // the client's FIN arrived
	}
	return CloseReadError
}

// CloseReason is why c closed, and the status of the KICK that closed it
// (OK when none did); meaningful once c is closed.
func (c *Conn) CloseReason() (CloseReason, codec.Status) {
	w := c.state.Load()
	return CloseReason(w >> reasonShift & 7), codec.Status(w >> 16 & 0xFF)
}
