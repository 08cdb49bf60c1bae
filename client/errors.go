package client

import (
	"errors"

	"github.com/longlink/longlink/codec"
)

var (
	// ErrClosed: the client was closed with Close.
	ErrClosed = errors.New("client: closed")
	// ErrDisconnected: the connection was lost while the request was in
	// flight (it may or may not have reached the business), or it was made
	// while disconnected with the queue disabled. The error also wraps the
	// cause of the disconnection.
	ErrDisconnected = errors.New("client: disconnected")
	// ErrQueueFull: the request was made while disconnected and
	// Config.QueueSize requests were already waiting.
	ErrQueueFull = errors.New("client: request queue full")
	// ErrTooLarge: the request's frame would exceed Config.MaxFrame.
	ErrTooLarge = errors.New("client: request too large")
	// ErrHeartbeatTimeout: Config.MissedPongs PINGs went unanswered; the
	// connection was declared dead.
	ErrHeartbeatTimeout = errors.New("client: heartbeat timeout: missed PONGs")
)

// KickError is a KICK the gateway sent before closing the connection.
// UNAUTHORIZED and DUPLICATE_LOGIN are terminal (the client stops);
// others make it reconnect.
type KickError struct {
	Status   codec.Status
	Reason   string // meta "reason"
	Redirect string // meta "redirect", the address to reconnect to, if any
}

func (e *KickError) Error() string { return statusText("kicked", e.Status, e.Reason) }

// LoginError is a LOGIN_ACK whose status is not OK. UNAUTHORIZED is
// terminal; others make the client try again.
type LoginError struct {
	Status codec.Status
	Reason string // meta "reason" or the body
}

func (e *LoginError) Error() string { return statusText("login refused", e.Status, e.Reason) }

// StatusError is a RESPONSE whose status is not OK: the business (or the
// gateway for it) refused or failed the request. Message is the body.
type StatusError struct {
	Status  codec.Status
	Message string
}

func (e *StatusError) Error() string { return statusText("request failed", e.Status, e.Message) }

// statusText is "client: <what>: <STATUS>[: <detail>]".
func statusText(what string, s codec.Status, detail string) string {
	t := "client: " + what + ": " + s.String()
	if detail != "" {
		t += ": " + detail
	}
	return t
}

// ProtocolError: the gateway sent something the protocol does not allow.
// The client drops the connection and reconnects.
type ProtocolError struct {
	Reason string
}

func (e *ProtocolError) Error() string { return "client: protocol error: " + e.Reason }

// terminal reports whether err stops the client for good.
// ReasonTokenExpired is the reason of the KICK(UNAUTHORIZED) that ends a
// session at its token's exp; the client reconnects after it.
const ReasonTokenExpired = "token expired"

func terminal(err error) bool {
	if errors.Is(err, ErrClosed) {
		return true
	}
	var ke *KickError
	if errors.As(err, &ke) {
		// A session that outlived its token is not refused: the next
		// attempt brings a fresh one from Config.Token.
		expired := ke.Status == codec.StatusUnauthorized && ke.Reason == ReasonTokenExpired
		return (ke.Status == codec.StatusUnauthorized && !expired) || ke.Status == codec.StatusDuplicateLogin
	}
	var le *LoginError
	if errors.As(err, &le) {
		return le.Status == codec.StatusUnauthorized
	}
	return false
}
