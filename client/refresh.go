package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/longlink/longlink/codec"
)

// Session refresh (docs/protocol.md, "Session expiry and REFRESH").
//
// The gateway ends a session at its token's exp with KICK(UNAUTHORIZED,
// "token expired"). The client refreshes before that: when four fifths of
// the token's remaining life have passed it asks Config.Token for a new
// one and sends REFRESH; REFRESH_ACK's exp schedules the next. A refusal
// or a token error is retried every refreshRetry until the session ends;
// if the session ends all the same, the client reconnects with a fresh
// token (a "token expired" kick is not terminal).

// refreshRetry is the pause after a refused or failed refresh.
const refreshRetry = 5 * time.Second

// tokenExpiry reads a JWT's exp claim without verifying it (the client
// cannot, and needs only the time): zero when there is none.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}
	}
	sec, err := claims.Exp.Float64()
	if err != nil || sec <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(sec), 0)
}

// refreshDelay is how long to wait before refreshing a token that
// expires at exp.
func refreshDelay(exp, now time.Time) time.Duration {
	return max(0, exp.Sub(now)*4/5)
}

// refreshLoop keeps the session's token fresh until the session ends.
func (s *session) refreshLoop(exp time.Time) {
	defer s.wg.Done()
	if exp.IsZero() {
		return
	}
	t := time.NewTimer(refreshDelay(exp, time.Now()))
	defer t.Stop()
	var seq uint32
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		seq++
		next, err := s.refresh(seq)
		if err != nil {
			s.c.stats.refreshFails.Add(1)
			s.c.log.Warn("longlink: refresh failed", "err", err)
			t.Reset(refreshRetry)
			continue
		}
		s.c.stats.refreshes.Add(1)
		t.Reset(refreshDelay(next, time.Now()))
	}
}

// refresh gets a token from Config.Token, sends REFRESH and waits for its
// REFRESH_ACK: the new end of the session, or why not.
func (s *session) refresh(seq uint32) (time.Time, error) {
	ctx, cancel := context.WithTimeout(s.c.ctx, s.c.cfg.DialTimeout)
	defer cancel()
	token, err := s.c.cfg.Token(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("client: token: %w", err)
	}
	// A late answer to an earlier REFRESH is dropped.
	select {
	case <-s.refreshed:
	default:
	}
	frame := encodeFrame(codec.Header{Op: codec.OpRefresh, Seq: seq}, codec.AppendMetaString(nil, "token", token), nil)
	if !s.send(ctx.Done(), frame) {
		return time.Time{}, fmt.Errorf("client: refresh: %w", context.Cause(ctx))
	}
	for {
		select {
		case a := <-s.refreshed:
			if a.seq != seq {
				continue
			}
			if a.status != codec.StatusOK {
				return time.Time{}, fmt.Errorf("client: refresh refused: %v: %s", a.status, a.reason)
			}
			return a.exp, nil
		case <-s.done:
			return time.Time{}, s.reason
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("client: refresh: no REFRESH_ACK: %w", ctx.Err())
		}
	}
}

// refreshAck is what the reader hands the refresh loop.
type refreshAck struct {
	seq    uint32
	status codec.Status
	reason string
	exp    time.Time
}

// onRefreshAck takes a REFRESH_ACK from the reader.
func (s *session) onRefreshAck(f *codec.Frame) {
	a := refreshAck{seq: f.Seq, status: f.Status, reason: reason(f)}
	if v, ok := f.Meta.Get("exp"); ok {
		if sec, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			a.exp = time.Unix(sec, 0)
		}
	}
	select {
	case s.refreshed <- a:
	default: // nobody waits: a REFRESH_ACK that answers nothing pending
	}
}
