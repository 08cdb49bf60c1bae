package conn

import (
	"testing"
	"unsafe"
)

// TestConnSize keeps the per-connection struct from growing unnoticed: it
// is multiplied by a million. Raise the bound only with a reason in the
// commit that does it. 208 is a size class of Go's allocator: a Conn of
// 200 bytes took 208 already, so the fan-out run's 8-byte mark in Outbox
// costs no memory.
func TestConnSize(t *testing.T) {
	const budget = 208
	if got := unsafe.Sizeof(Conn{}); got > budget {
		t.Fatalf("Conn is %d bytes, over its %d-byte budget", got, budget)
	}
}
