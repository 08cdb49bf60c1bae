// Package dispatch holds the gateway's two shared worker groups, one
// package each: dispatch/upstream forwards REQUEST frames to business
// backends through one bounded forwarding group per business, and
// dispatch/downstream serialises and coalesces every write to a
// connection through a fixed task group. Neither costs a goroutine per
// connection. This package itself has no code.
package dispatch
