package client

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/longlink/longlink/codec"
)

// Response is the answer of a business to a request (status OK).
type Response struct {
	Biz  uint16
	Meta map[string]string // the business's X-Longlink-Meta-* headers; nil if none
	Body []byte
}

// RequestOption modifies one request.
type RequestOption struct{ apply func(*call) }

// Idempotent marks a request as safe to send twice: if the connection is
// lost while it is in flight, it is sent again after the reconnect instead
// of failing with ErrDisconnected (until its context ends).
func Idempotent() RequestOption { return RequestOption{func(cl *call) { cl.idem = true }} }

// call is one request. Whoever removes it from Client.queue or
// Client.inflight (under Client.mu) completes it, exactly once.
type call struct {
	biz  uint16
	meta []byte // encoded
	body []byte
	idem bool
	seq  uint32 // REQUEST seq of its latest sending; 0 while never sent

	done chan struct{}
	resp *Response
	err  error
}

// frame encodes the REQUEST with seq. seq is passed, not read from cl,
// because a call re-queued after a disconnect gets a new one under
// Client.mu while its first sender may still be encoding.
func (cl *call) frame(seq uint32) []byte {
	return encodeFrame(codec.Header{Op: codec.OpRequest, Biz: cl.biz, Seq: seq}, cl.meta, cl.body)
}

func (cl *call) complete(resp *Response, err error) {
	cl.resp, cl.err = resp, err
	close(cl.done)
}

func sortCalls(calls []*call) {
	slices.SortFunc(calls, func(a, b *call) int { return cmp.Compare(a.seq, b.seq) })
}

// nextSeq returns a fresh REQUEST seq, never 0. Caller holds c.mu.
func (c *Client) nextSeq() uint32 {
	for {
		seq := c.reqSeq.Add(1)
		if seq == 0 {
			continue
		}
		if _, busy := c.inflight[seq]; !busy {
			return seq
		}
	}
}

// Request sends body to business biz and waits for its response, until ctx
// ends. meta becomes the request's metadata (keys 1..255 bytes). While the
// client is disconnected the request waits in a bounded queue and goes out
// after the reconnect.
//
// Errors: *StatusError when the gateway or the business answered with a
// status other than OK (its Message is the body); ErrDisconnected (wrapping
// the cause) when the connection was lost with the request in flight and
// it is not Idempotent; ErrQueueFull; ErrTooLarge; ctx.Err(); and, once the
// client has stopped, Err() (ErrClosed, *KickError, *LoginError).
func (c *Client) Request(ctx context.Context, biz uint16, meta map[string]string, body []byte, opts ...RequestOption) (*Response, error) {
	cl := &call{biz: biz, body: body, done: make(chan struct{})}
	for _, o := range opts {
		if o.apply != nil {
			o.apply(cl)
		}
	}
	for k, v := range meta {
		if len(k) == 0 || len(k) > 255 || len(v) > 0xFFFF {
			return nil, fmt.Errorf("client: request meta %q: key must be 1..255 bytes and value at most 65535", k)
		}
		cl.meta = codec.AppendMetaString(cl.meta, k, v)
	}
	if codec.HeaderSize+len(cl.meta)+len(body) > c.cfg.MaxFrame || len(cl.meta) > codec.MaxMetaLen {
		return nil, ErrTooLarge
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	s := c.sess
	if s != nil {
		select {
		case <-s.done: // dying: wait for the next connection rather than fail
			s = nil
		default:
		}
	}
	if s == nil {
		switch {
		case c.cfg.QueueSize < 0:
			err := c.lastErr
			c.mu.Unlock()
			if err == nil {
				return nil, ErrDisconnected
			}
			return nil, fmt.Errorf("%w: %w", ErrDisconnected, err)
		case len(c.queue) >= c.cfg.QueueSize:
			c.mu.Unlock()
			return nil, ErrQueueFull
		}
		c.queue = append(c.queue, cl)
		c.mu.Unlock()
	} else {
		seq := c.nextSeq()
		cl.seq = seq
		c.inflight[seq] = cl
		c.mu.Unlock()
		if s.send(ctx.Done(), cl.frame(seq)) {
			c.stats.reqSent.Add(1)
		}
	}

	select {
	case <-cl.done:
	case <-ctx.Done():
		if c.abandon(cl) {
			c.stats.reqFailed.Add(1)
			return nil, ctx.Err()
		}
		<-cl.done // being completed right now
	}
	return cl.resp, cl.err
}

// abandon removes a call whose context ended; it reports false if someone
// else already took it to complete it.
func (c *Client) abandon(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl.seq != 0 && c.inflight[cl.seq] == cl {
		delete(c.inflight, cl.seq)
		return true
	}
	if i := slices.Index(c.queue, cl); i >= 0 {
		c.queue = slices.Delete(c.queue, i, i+1)
		return true
	}
	return false
}

// onResponse completes the call a RESPONSE answers.
func (c *Client) onResponse(f *codec.Frame) {
	c.mu.Lock()
	cl := c.inflight[f.Seq]
	if cl != nil {
		delete(c.inflight, f.Seq)
	}
	c.mu.Unlock()
	if cl == nil {
		return // its context ended
	}
	if f.Status != codec.StatusOK {
		cl.complete(nil, &StatusError{Status: f.Status, Message: string(f.Body)})
		return
	}
	r := &Response{Biz: f.Biz, Body: append([]byte(nil), f.Body...)}
	if len(f.Meta) > 0 {
		r.Meta = make(map[string]string)
		f.Meta.Range(func(k, v []byte) bool {
			r.Meta[string(k)] = string(v)
			return true
		})
	}
	cl.complete(r, nil)
}
