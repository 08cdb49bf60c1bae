package conn

import (
	"testing"
	"unsafe"
)

// TestConnSize keeps the per-connection struct from growing unnoticed: it
// is multiplied by a million. Raise the bound only with a reason in the
// commit that does it.
func TestConnSize(t *testing.T) {
	const budget = 200
	if got := unsafe.Sizeof(Conn{}); got > budget {
		t.Fatalf("Conn is %d bytes, over its %d-byte budget", got, budget)
	}
}
