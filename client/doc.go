// Package client is the Go SDK of Longlink: one persistent connection from
// a device to the gateway that survives bad networks. It logs in with a
// token, keeps the connection alive, reconnects and resumes after
// failures, delivers pushes to a handler per business exactly once and in
// order, and carries requests to businesses.
//
// # A complete app
//
//	c, err := client.Dial(ctx, client.Config{
//		Endpoints: []client.Endpoint{{Proto: "tcp", Addr: "gw.example.com:7000"}},
//		Token:     func(ctx context.Context) (string, error) { return myBackend.Token(ctx) },
//		Handlers: map[uint16]func(client.Push){
//			1: func(p client.Push) { showMessage(p.ID, p.Body) },
//		},
//		OnGap: func(lastSeq uint32) { go resyncFromBackend() },
//	})
//	if err != nil {
//		return err // e.g. *client.LoginError{Status: UNAUTHORIZED}
//	}
//	defer c.Close()
//	resp, err := c.Request(ctx, 2, map[string]string{"op": "profile"}, nil)
//
// # What it does about failures
//
// Dead connections are found by missed PONGs, not only by socket errors:
// PING goes out every heartbeat (LOGIN_ACK's hb, or Config.Heartbeat if
// shorter) and when Config.MissedPongs of them are unanswered the
// connection is closed. Every write has a deadline, so a stalled network
// cannot block the client either. Each PING after the first PONG reports
// the last round trip (meta rtt) and Config.Network (meta net), for the
// gateway's longlink_client_rtt_seconds{net}; Stats.RTT has it too.
//
// Reconnection waits an exponential backoff with full jitter and a cap
// (Config.Backoff); the attempt counter resets once a connection has
// completed a heartbeat round trip. Endpoints are tried in turn. A KICK
// decides what comes next:
//
//	KICK status        next
//	UNAUTHORIZED       stop: StateClosed, Err() is the *KickError
//	DUPLICATE_LOGIN    stop: another instance of the device took over
//	SHUTTING_DOWN      reconnect at once: to meta "redirect", else the next endpoint
//	anything else      reconnect after the backoff, to "redirect" first if given
//
// A LOGIN_ACK with UNAUTHORIZED also stops the client (Dial returns the
// *LoginError); Config.Token is called before every attempt, so a token
// that merely expired is replaced on reconnect.
//
// # Pushes
//
// The client remembers the seq of the last push received and logs in again
// with resume=<seq>; the gateway redelivers what it holds. When it could
// not (LOGIN_ACK resumed=0: too much was missed, or the gateway lost its
// state), OnGap(lastSeq) asks the app to fetch what it missed from its own
// backend, and the next push's seq becomes the new baseline.
//
// A push whose seq is not above the last one, or whose meta "id" is among
// the Config.DedupWindow ids seen most recently, is a duplicate: it is
// dropped before the handler and counted in Stats.DroppedDuplicates. So a
// handler sees each push once, in seq order. Pushes that ask for it
// (ACK_REQUIRED) are acknowledged as they are received, with cumulative
// PUSH_ACKs batched over Config.AckDelay or Config.AckBatch pushes.
//
// # Requests
//
// Request sends a REQUEST and waits for its RESPONSE; any number may be in
// flight, matched by seq. A status other than OK is a *StatusError. If the
// connection is lost with the request in flight, it fails with
// ErrDisconnected (the business may or may not have seen it) unless it was
// made with Idempotent(), in which case it is sent again after the
// reconnect. Requests made while disconnected wait, up to Config.QueueSize,
// and go out in order after the reconnect; each one gives up when its
// context ends.
//
// # Concurrency
//
// Every method of Client is safe for concurrent use.
//
// The push handlers, OnState and OnGap run on one goroutine of the client,
// one at a time, in the order of the events: OnState(StateConnected), then
// OnGap if the resume was incomplete, then that connection's pushes; and
// OnState(StateClosed) last of all. A slow callback delays the ones after
// it but never the connection: pushes queue up in memory, and heartbeats
// and responses keep flowing. Callbacks should still return quickly. A
// callback may call Request (it waits for the response), but must not call
// Close, which waits for the callbacks to finish: use go c.Close().
//
// Close fails waiting requests with ErrClosed, lets the callbacks drain,
// and returns when every goroutine of the client has exited. Done and Err
// tell the app when and why the client stopped on its own.
//
// # Transports
//
// "tcp" and "tls" endpoints work out of the box. Config.Dialer is the
// seam for others: the client reads and writes a byte stream of frames
// (package codec), so a WebSocket dialer returns a net.Conn that sends each
// frame as one binary message (the 20-byte header gives its length) and
// reads messages back as a stream.
package client
