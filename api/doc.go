// Package api is Longlink's HTTP API: the door through which business
// backends push messages, manage groups, look up and kick devices and mint
// login tokens, and through which operators check health, metrics and
// profiles.
//
// It is a thin, strict layer over the Gateway interface: it authenticates,
// decodes and checks every input, calls one or two Gateway methods, and
// encodes the answer. It holds no state of its own, so the gateway's
// end-to-end tests cover behaviour and this package's tests cover the
// HTTP contract with a fake Gateway. JSON goes in and out through
// github.com/bytedance/sonic (ConfigStd: encoding/json compatible, and
// strings are copied out of the pooled request buffer), because a push body
// is on the hot path of every downstream message. A body that is not valid
// UTF-8 is refused rather than silently "repaired" with U+FFFD, which would
// corrupt a push's data.
//
// # Routes
//
//	POST   /v1/push                      {"devices":[...],"biz":1,"data":"..."|"data_base64":"...","id":"...","ack":true}
//	                                     → {"delivered":n,"offline":[...]} (+ "unrouted":[...] when not empty)
//	POST   /v1/groups/{group}/push       the same without devices → {"delivered":n}
//	POST   /v1/broadcast                 the same without devices → {"delivered":n}
//	PUT    /v1/groups/{group}/members    {"devices":[...]} → {"group":"...","members":n}
//	DELETE /v1/groups/{group}/members    {"devices":[...]} → {"group":"...","members":n}
//	GET    /v1/groups/{group}            → {"group":"...","members":n}
//	GET    /v1/devices/{device}          → {"online":true,"node":"...","conn":"..."} or {"online":false}
//	DELETE /v1/devices/{device}          optional {"reason":"..."} or ?reason= → {"kicked":true|false}
//	POST   /v1/tokens                    {"device":"...","app":"...","ttl_seconds":3600,"groups":[...]}
//	                                     → {"token":"...","expires_at":unix,"endpoints":[...]}
//	GET    /v1/endpoints                 → {"endpoints":[...]}, least loaded first
//	GET    /v1/nodes                     → {"nodes":[...]}, the deployment's nodes by id
//	GET    /v1/stats                     → the metrics.Snapshot
//	GET    /metrics                      Prometheus (Options.Metrics; 404 without it)
//	GET    /debug/pprof/...              net/http/pprof (Options.Pprof; 404 when off), cmdline redacted
//	GET    /healthz                      → {"status":"ok"}
//	GET    /readyz                       → {"status":"ok"}, or 503 {"status":"draining"}
//
// Members calls answer with the group's size right after the change.
// "offline", "endpoints" and the lists and maps of /v1/stats are always
// arrays and objects, never null.
//
// # Authentication
//
// Every /v1 call needs "Authorization: Bearer <api key>". The key is
// compared in constant time (both sides hashed with SHA-256 first, so its
// length does not leak either); a missing or wrong key gets 401 with
// WWW-Authenticate: Bearer. An empty Options.APIKey refuses every /v1 call.
//
// /healthz, /readyz and /demo/ never need a key, so that probes and
// browsers need no secret. /metrics needs none either unless
// Options.MetricsKey is set. /debug/pprof/ is not served at all unless
// Options.Pprof asks for it: PprofKey puts it behind the key like /v1
// (every path under it, known or not), PprofOpen serves it to anyone, for
// an API port on a private network only (profiles show stacks and heap
// contents, and a CPU profile or trace costs CPU for as long as the caller
// asks). /debug/pprof/cmdline is this package's own handler: it prints
// the command line with the values of -api-key, -jwt-secret and
// -redis-password replaced by "[redacted]". The pprof handlers are
// registered on this package's mux; importing net/http/pprof also
// registers them on http.DefaultServeMux, which Longlink never serves.
//
// # Connections
//
// LimitListener caps the connections to the API port: one over the cap
// gets a 503 {"error":"too many API connections"} with Connection: close
// and is closed at once, without waiting for a slot. The timeouts of the
// http.Server (package gateway) bound how long each connection may take.
//
// # Errors
//
// Every error is JSON, {"error":"<message>"}, with a status:
//
//	400  malformed JSON or a wrong type (the message names the field), a body
//	     that is empty, not an object or not UTF-8, data and data_base64 both set, bad base64,
//	     an empty or too long devices list, a device id that
//	     auth.ValidDevice refuses (the rule of a LOGIN sub; the message
//	     quotes the id), a group or app name empty, over 128 bytes, not
//	     UTF-8 or with a control character, an id over 128 or a reason
//	     over 256 bytes, biz outside 0..65535,
//	     ttl_seconds missing, <= 0 or over Options.MaxTTL, over 256 token
//	     groups; or a Gateway error wrapping ErrInvalid
//	401  missing or wrong API key
//	404  no such endpoint          405  wrong method, with Allow
//	413  body over Options.MaxBody
//	499  the caller went away (context canceled)
//	500  any other Gateway error, with its message; a panic ("internal
//	     error"; the panic and its stack go to the log)
//	503  route.ErrUnavailable (the shared route is unreachable),
//	     ErrPeersUnavailable (the other nodes could not be reached) or a
//	     context deadline
//
// Unknown JSON fields are ignored, so a newer client can talk to an older
// node. Duplicate devices in a list are passed to the Gateway as they are.
//
// # Push bodies
//
// "data" is a string whose UTF-8 bytes are the body; "data_base64" carries
// any bytes. Both are optional (a missing data is an empty body), but not
// both at once. data_base64 accepts the standard alphabet and, as
// businesses in other languages often produce it, the URL-safe one, each
// with or without padding; the alphabet is picked by the presence of '-'
// or '_', and padding, when present, must be complete. A missing biz is 0,
// the gateway's own business.
//
// # Concurrency
//
// The handler New returns is safe for concurrent use; it keeps no state
// between requests besides a pool of body buffers. Each request's context
// is passed to the Gateway, so a caller that hangs up cancels its call.
package api
