// Package codec is the binary frame format of Longlink's wire protocol,
// version 1 (docs/protocol.md): a 20-byte header, a meta section of
// key/value entries, and an opaque body.
//
// Decoding never allocates and never copies: Decode returns a Frame whose
// Meta and Body are sub-slices of the input, valid for as long as the input
// is (for netpoll, until Reader.Release). A frame is judged from its header
// alone first: a bad magic, version or op, or a declared size above the
// limit, is an *Error before a single body byte is buffered, so a hostile
// peer costs at most one header.
//
// Encoding appends to a caller's slice (typically a pooled buffer from
// github.com/valyala/bytebufferpool), so a steady stream of frames reuses
// the same memory and allocates nothing once the buffer has grown.
//
// Every function here is safe for concurrent use: the package has no state.
package codec
