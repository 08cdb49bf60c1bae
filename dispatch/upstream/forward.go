package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/valyala/bytebufferpool"
)

// metaPrefix starts the header of each meta entry, both ways.
const metaPrefix = "X-Longlink-Meta-"

// Messages of the answers the dispatcher makes up itself.
const (
	msgTooLarge    = "response too large"
	msgBadIdentity = "device or app id cannot be sent as an HTTP header"
)

// contentType is shared by every request: net/http only reads headers.
var contentType = []string{"application/octet-stream"}

// forwarder is a worker's scratch state for HTTP calls.
type forwarder struct {
	lr      io.LimitedReader // bounds the answer body; reset per call
	scratch []byte           // builds header strings before their one allocation
}

// bodyReader is a request body that records its Close. net/http closes a
// request body when it is done reading it, and may do so in another
// goroutine after Do has returned (on a timeout, say). Until then
// Request.Body may still be read, so the worker recycles the Request only
// once closed is set.
type bodyReader struct {
	bytes.Reader
	closed atomic.Bool
}

func (b *bodyReader) Close() error {
	b.closed.Store(true)
	return nil
}

// forward sends req to the group's backend and answers it.
func (w *worker) forward(req *Request, answered *bool) {
	g, d := w.g, w.g.d
	deadline := req.Enqueued.Add(g.timeout)
	if !time.Now().Before(deadline) {
		// It waited its whole budget in the queue; the client has given up
		// on it, so the backend is spared the call.
		*answered = true
		g.answer(req, Result{Status: codec.StatusTimeout}, true)
		return
	}
	body, meta := d.bodies.Get(), d.metas.Get()
	defer func() {
		d.bodies.Put(body)
		d.metas.Put(meta)
	}()
	if !validValue(req.Device) || !validValue(req.App) {
		// The JWT's sub and app are the gateway's to vouch for; one that
		// net/http would refuse to send is not the business's failure.
		*answered = true
		body.B = append(body.B, msgBadIdentity...)
		g.answer(req, Result{Status: codec.StatusInternal, Body: body.B}, true)
		return
	}
	done, err := g.cb.Allow()
	if err != nil {
		// Opened while req was queued, or a half-open probe is in flight.
		*answered = true
		g.answer(req, Result{Status: codec.StatusBizUnavailable}, true)
		return
	}
	status, recycle := w.call(req, deadline, done, body, meta)
	res := Result{Status: status, Body: body.B}
	if status == codec.StatusOK {
		res.Meta = meta.B
	}
	*answered = true
	g.answer(req, res, recycle)
}

// call makes the HTTP exchange for req and reports its outcome to the
// breaker through done: before the answer goes out, so a client that has
// its answer sees the breaker's new state, and also if call panics, so a
// half-open probe slot is never lost. recycle is false when net/http may
// still be reading req.Body.
func (w *worker) call(req *Request, deadline time.Time, done func(error),
	body, meta *bytebufferpool.ByteBuffer) (status codec.Status, recycle bool) {
	g := w.g
	outcome := errNotCounted
	defer func() { done(outcome) }()
	ctx, cancel := context.WithDeadline(w.ctx, deadline)
	defer cancel()
	hr, rb := w.fwd.request(ctx, g, req)
	status, outcome = w.exchange(ctx, hr, body, meta)
	if outcome != nil && !errors.Is(outcome, errNotCounted) {
		g.lastFailure.Store(&failure{outcome})
		g.d.log.Debug("business call failed", "biz", g.id, "seq", req.Seq, "status", status.String(), "err", outcome)
	}
	return status, rb == nil || rb.closed.Load()
}

// request builds the HTTP request for req. Header values are set straight
// into the map, so meta keys keep their case on the wire. The returned
// bodyReader is nil for an empty body.
func (f *forwarder) request(ctx context.Context, g *group, req *Request) (*http.Request, *bodyReader) {
	meta := codec.Meta(req.Meta)
	n := 0
	meta.Range(func(_, _ []byte) bool {
		n++
		return true
	})
	// One string holds Conn and Seq; vals is one backing array for every
	// per-request value, so the headers cost a few allocations in all.
	f.scratch = strconv.AppendUint(f.scratch[:0], req.Conn, 10)
	connEnd := len(f.scratch)
	f.scratch = strconv.AppendUint(f.scratch, uint64(req.Seq), 10)
	nums := string(f.scratch)
	vals := make([]string, 4+n)
	vals[0], vals[1], vals[2], vals[3] = req.Device, req.App, nums[:connEnd], nums[connEnd:]
	h := make(http.Header, 7+n)
	h["Content-Type"] = contentType
	h["X-Longlink-Node"] = g.d.node
	h["X-Longlink-Biz"] = g.bizVal
	h["X-Longlink-Device"] = vals[0:1:1]
	h["X-Longlink-App"] = vals[1:2:2]
	h["X-Longlink-Conn"] = vals[2:3:3]
	h["X-Longlink-Seq"] = vals[3:4:4]
	i := 4
	meta.Range(func(k, v []byte) bool {
		if !validToken(k) || !validValue(v) {
			g.metaSkipped.Add(1)
			return true
		}
		f.scratch = append(append(append(f.scratch[:0], metaPrefix...), k...), v...)
		s := string(f.scratch)
		kl := len(metaPrefix) + len(k)
		vals[i] = s[kl:]
		h[s[:kl]] = vals[i : i+1 : i+1] // a repeated key: the last one wins
		i++
		return true
	})
	hr := &http.Request{Method: http.MethodPost, URL: g.url, Header: h, ContentLength: int64(len(req.Body))}
	var rb *bodyReader
	if len(req.Body) > 0 {
		rb = new(bodyReader)
		rb.Reset(req.Body)
		hr.Body = rb
	}
	return hr.WithContext(ctx), rb
}

// exchange sends hr and reads the answer into body and meta. err is the
// outcome for the breaker: nil when the business answered (even with an
// error of its own), errNotCounted on shutdown, a failure otherwise.
func (w *worker) exchange(ctx context.Context, hr *http.Request,
	body, meta *bytebufferpool.ByteBuffer) (codec.Status, error) {
	g := w.g
	resp, err := g.d.client.Do(hr)
	if err != nil {
		return g.classify(ctx, err)
	}
	defer resp.Body.Close()
	var failed error
	if resp.StatusCode >= 500 {
		failed = fmt.Errorf("upstream: biz %d: %s answered %s", g.id, g.target, resp.Status)
	}
	limit := g.d.maxBody
	if resp.ContentLength > int64(limit) {
		return tooLarge(body), failed
	}
	w.fwd.lr = io.LimitedReader{R: resp.Body, N: int64(limit) + 1}
	_, err = body.ReadFrom(&w.fwd.lr)
	w.fwd.lr.R = nil
	if err != nil {
		return g.classify(ctx, err)
	}
	if body.Len() > limit {
		return tooLarge(body), failed
	}
	if resp.StatusCode/100 != 2 {
		return codec.StatusBizError, failed
	}
	meta.B = g.appendAnswerMeta(meta.B, resp.Header)
	if len(meta.B) > codec.MaxMetaLen || len(meta.B)+body.Len() > limit {
		return tooLarge(body), nil
	}
	return codec.StatusOK, nil
}

// classify maps an error of the HTTP exchange to a status and an outcome.
func (g *group) classify(ctx context.Context, err error) (codec.Status, error) {
	if g.d.aborted.Load() {
		return codec.StatusShuttingDown, errNotCounted
	}
	err = fmt.Errorf("upstream: biz %d: %w", g.id, err)
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return codec.StatusTimeout, err
	}
	return codec.StatusBizUnavailable, err
}

// tooLarge replaces body with the message of an oversized answer.
func tooLarge(body *bytebufferpool.ByteBuffer) codec.Status {
	body.B = append(body.B[:0], msgTooLarge...)
	return codec.StatusBizError
}

// appendAnswerMeta appends an entry for each X-Longlink-Meta-* header of
// an answer, its key lower-cased (Go has canonicalised it, so the
// business's own case is lost anyway) and its last value. A header that
// does not fit an entry is skipped and counted.
func (g *group) appendAnswerMeta(dst []byte, h http.Header) []byte {
	for k, vv := range h {
		if len(k) <= len(metaPrefix) || len(vv) == 0 || !strings.EqualFold(k[:len(metaPrefix)], metaPrefix) {
			continue
		}
		key, v := k[len(metaPrefix):], vv[len(vv)-1]
		if len(key) > 255 || len(v) > 0xFFFF {
			g.metaSkipped.Add(1)
			continue
		}
		start := len(dst) + 1 // past klen
		dst = codec.AppendMetaString(dst, key, v)
		for i := start; i < start+len(key); i++ {
			if c := dst[i]; 'A' <= c && c <= 'Z' {
				dst[i] = c + ('a' - 'A')
			}
		}
	}
	return dst
}

// tokenChars are the bytes of an HTTP token (RFC 9110, section 5.6.2),
// the only ones a header name may hold.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validToken reports whether k is a non-empty HTTP token.
func validToken(k []byte) bool {
	for _, c := range k {
		if !tokenChars[c] {
			return false
		}
	}
	return len(k) > 0
}

// validValue reports whether net/http will send v as a header value: no
// control characters but horizontal tab (so no CR, LF or NUL), no DEL.
func validValue[T string | []byte](v T) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
