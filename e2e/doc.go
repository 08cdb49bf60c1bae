// Package e2e holds the end-to-end tests: each starts the real longlink
// binary as a separate process on loopback ports and drives it with raw
// TCP clients speaking the wire protocol and with HTTP calls to its API,
// exactly as devices and business backends would.
package e2e
