// Package upstream forwards REQUEST frames to business backends and hands
// their answers back to the gateway: the upstream half of the dispatch
// layer in docs/architecture.md.
//
// # One forwarding group per business
//
// Following Baidu's unified long-connection design, every business gets
// its own forwarding group: a bounded queue (a buffered channel of
// *Request), a fixed set of worker goroutines, a per-request timeout and a
// circuit breaker. Nothing is shared between groups but the HTTP client's
// connection pool, so a slow or dead business fills only its own queue and
// ties up only its own workers: its clients get OVERLOADED, TIMEOUT or
// BIZ_UNAVAILABLE while every other business is served as before, and the
// goroutine that read the frame is never made to wait.
//
// The built-in echo business is the exception: it is answered inside
// Submit, on the reading goroutine. It cannot be slow, so a queue and
// workers would isolate nothing and cost two goroutine handoffs per
// request (about half the latency of a round trip on a busy node); it
// takes no workers, queue or timeout.
//
// # Concurrency contract
//
//	step     called by                      may block   notes
//	Get      the connection's reader        no          a pooled Request; fill it
//	Submit   the connection's reader        never       OK: queued; otherwise answer the status yourself
//	Release  the connection's reader        no          only after a Submit that did not return OK
//	Reply    a worker of the business       must not    exactly once per queued request, concurrently
//	         (echo: the caller of Submit)
//	Stats    anyone                         no          a few atomic loads per business
//	Close    the shutdown path, once        until ctx   drains, then answers the rest SHUTTING_DOWN
//
// Submit, Has, Stats and Release are safe for concurrent use. Submit never
// blocks: it checks the business's circuit with one atomic load (an open
// circuit answers BIZ_UNAVAILABLE without queueing) and tries a
// non-blocking channel send (a full queue answers OVERLOADED). The request
// then belongs to the dispatcher: its Reply (the Replier the request
// carries, the connection it came on) is called exactly once from one of
// the business's workers, and the Request, its Meta and Body, and the
// Result's slices must not be used after Reply returns. A Replier that
// blocks stalls its business's workers (and only those), so it should
// queue the answer to the connection's writer and return.
//
// The dispatcher takes no lock of its own on the hot path: requests travel
// through the channel, counters are atomics, and each worker derives its
// requests' deadlines from a context of its own so they do not contend on
// a shared parent. Beyond net/http's own, the one mutex a forwarded
// request meets is the circuit breaker's (github.com/sony/gobreaker/v2),
// per business, taken briefly before and after the call, never across
// it. The echo business meets none and allocates nothing.
//
// # Request lifetime
//
// After Reply returns, the worker puts the Request back in the pool,
// with two exceptions where the garbage collector takes it instead: when
// Reply panicked (the Replier may still hold it), and when net/http
// may still be reading its Body (after a timeout, RoundTrip can return
// before the transport has finished with the request body; the body's
// Close tells the worker when it has). A panic in a worker is recovered,
// logged with its stack, answered INTERNAL unless Reply was already
// called, and the worker carries on.
//
// # HTTP contract
//
// A request becomes `POST <url>` with the body as
// application/octet-stream and the headers X-Longlink-Device, -App, -Conn,
// -Node, -Biz and -Seq, plus `X-Longlink-Meta-<key>` per meta entry. Meta
// keys are case-sensitive in the protocol, so the header is set without
// canonicalisation and the key's case reaches the wire as the client sent
// it. An entry that cannot be sent (a key that is not an HTTP token, a
// value with control characters) is skipped and counted (MetaSkipped):
// net/http would refuse the whole request, and a client could trip a
// business's breaker with one bad key.
//
// The answer maps to the RESPONSE like this:
//
//	2xx                        OK; body, and each X-Longlink-Meta-* header as meta
//	other status (incl. 3xx)   BIZ_ERROR with the body as message
//	body + meta > MaxBody      BIZ_ERROR "response too large"
//	no answer in Timeout       TIMEOUT
//	refused, DNS, transport    BIZ_UNAVAILABLE
//	circuit open               BIZ_UNAVAILABLE, not forwarded
//
// HTTP header names are case-insensitive and Go canonicalises them, so a
// business cannot choose the case of a meta key it returns: answer meta
// keys reach the client in lower case (X-Longlink-Meta-Trace-Id becomes
// "trace-id"). When a header repeats, its last value is used, as the
// protocol's "last one wins" would.
//
// Timeout counts from Submit, not from when a worker picked the request
// up: a request that waited its whole budget in the queue is answered
// TIMEOUT without being forwarded.
//
// # Circuit breaker
//
// Refused or unreachable backends, transport errors, timeouts and 5xx
// answers are failures; FailureThreshold consecutive failures open the
// circuit for OpenTimeout, after which one probe request is let through
// (half-open) and its success closes the circuit again. A 4xx, or an
// answer too large to accept, is the business answering and counts as a
// success. Shutdown cancellations and gateway faults are not counted.
package upstream
