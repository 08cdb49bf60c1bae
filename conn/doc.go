// Package conn is the session layer: one small Conn per connection and
// the Hub that owns them all. It implements every rule of the protocol's
// session (docs/protocol.md): LOGIN with a JWT, the login timeout,
// PING/PONG, the idle timeout, duplicate login, REQUEST admission (rate
// limit, forwarding group), PUSH seq and PUSH_ACK, resume, and a KICK
// with a status before every close the server decides.
//
// # States
//
// A connection moves through four states; every change goes through
// Conn.setState, which checks the move is legal and updates the counters:
//
//	Accepted  -> LoggedIn (LOGIN ok), Closing (kick, failed login), Closed (peer left)
//	LoggedIn  -> Closing (kick), Closed (peer left)
//	Closing   -> Closed (socket closed after the KICK was written)
//	Closed    -> (none)
//
// # What a connection costs
//
// An idle connection holds its Conn (about 200 bytes, every field
// commented), netpoll's connection and read buffer, and entries in the
// Hub's indexes. It holds no goroutine and no timer: reads run on
// netpoll's pooled goroutines only while input exists, writes on the
// downstream task group, and every timeout (login, idle) on one timing
// wheel for the whole node.
//
// # What a client can make the node hold
//
// Every byte a client can make the node keep is bounded per connection,
// so a flood costs the flooder (docs/reliability.md, "Hostile clients"):
//
//   - Input: the reactor stops reading a connection whose unprocessed
//     input reaches Options.MaxInput (MaxLoginInput before login), and
//     TCP flow control slows the sender. A frame split across reads is
//     kept aside, at most one frame.
//   - Frames: before login one frame of at most codec.MaxLoginFrame; after
//     it Options.MaxFrame. Every frame, WebSocket control frames included,
//     takes a token of the frame rate bucket: past it PING gets PONG
//     OVERLOADED and REQUEST RESPONSE OVERLOADED (PUSH_ACK and WebSocket
//     pings get nothing), and a further burst over is KICK(OVERLOADED).
//   - Answers: queued answers count toward the downstream group's
//     MaxPending like pushes; past it the connection is cut off as a slow
//     consumer (KICK(SLOW_CONSUMER) once its socket takes it).
//   - Handshakes: a TLS handshake starts with the ClientHello and lasts at
//     most Options.HandshakeTimeout; per source address, connections not
//     logged in are capped (package admit).
//
// # Transports
//
// The session logic sees frames, never sockets: a transport (tcp.go,
// websocket.go, tls.go, behind the interface of transport.go) turns socket
// bytes into frames below it and the session's frames into bytes. The
// session calls only that interface; a transport calls back only meterIn,
// frameIn, kick, end and open.
//
// # Closes
//
// Every close has a CloseReason (closing.go): the client's, a read or
// write error, idle, kicked, slow consumer, shutdown. It is counted per
// reason and given to the disconnect event.
//
// # Concurrency
//
// For one connection, Hub.Data runs on one goroutine at a time (netpoll's
// guarantee) and owns the read side: partial, the rate bucket. With a
// shared route a login's route work runs on a login worker (login.go),
// which then shares the read side with Hub.Data under the connection's
// input lock. Its
// downstream worker owns the Outbox. State, the last-seen tick and the
// recovery entry are atomics; the socket is guarded by mu so a write can
// never reach a file descriptor number that was closed and reused. Lock
// order: registry shard, then Conn.mu; the wheel's lock is never held
// with another.
package conn
