// Package auth checks and issues Longlink's login tokens: JWTs signed with
// HMAC-SHA256 (HS256) under a secret shared by the gateway and the
// business backends. A backend (or the gateway's POST /v1/tokens) mints a
// token with Mint; a device sends it in LOGIN meta "token"; the gateway
// checks it with Verifier.Verify before the connection counts as logged
// in. A shared secret keeps the control layer stateless: any node can
// verify any token without asking anyone.
//
// # What a valid token is
//
// The header's "alg" must be exactly "HS256". Every other algorithm is
// refused before the key is used, even where its signature would verify
// with the shared secret (HS384, HS512), so a token's header can never
// choose how it is checked; "none" is refused likewise. A header with
// "crit" is refused, as RFC 7515 requires of extensions we do not know.
// "typ", "kid" and other header fields are ignored.
//
// Claims (JSON null counts as absent):
//
//	claim   type             rule
//	sub     string           required; the device id, as ValidDevice defines it
//	exp     number           required; seconds since the epoch, fractions allowed
//	nbf     number           optional; honoured when present
//	app     string           optional; at most MaxAppLen (128) bytes
//	groups  array of string  optional; at most MaxGroups (64) names, each 1..MaxGroupLen (128) bytes
//
// A device id is 1..MaxDeviceLen (128) bytes of valid UTF-8 with no
// control character, C0 (U+0000..U+001F), DEL (U+007F) or C1
// (U+0080..U+009F); ValidDevice is that rule, and the HTTP API checks
// every device id it takes with it too, so that any device that can log
// in can be pushed to, looked up and kicked. app and group names may not
// contain ASCII control characters. All of them travel on as HTTP header
// values and route keys, where a CR or LF would break the request. Unknown claims (iat, iss, jti, anything else) are
// ignored, so a token made by any standard JWT library with the shared
// secret is accepted.
//
// A token is valid from nbf - Leeway until exp + Leeway; Leeway (5s)
// absorbs clock skew between the minting backend and the gateway without
// stretching a token's life noticeably. Tokens longer than MaxTokenLen
// (4 KiB) are refused before any decoding, so a hostile LOGIN costs no
// more than that.
//
// # Errors
//
// Every error from Verify is one of a fixed set of short, lower-case
// reasons ("token expired", "bad signature", "alg must be HS256", "missing
// sub", ...). It is sent to the device as the reason meta of LOGIN_ACK or
// KICK, so it is deliberately not wrapped: it names what is wrong with the
// token and never carries library or server internals.
//
// # Concurrency
//
// A Verifier is immutable after NewVerifier and safe for concurrent use
// by any number of goroutines; Mint has no state. Verify allocates (the
// JWT library decodes into maps and strings); BenchmarkVerify reports how
// much.
package auth
