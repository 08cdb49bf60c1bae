package downstream

import (
	"runtime"
	"testing"

	"github.com/valyala/bytebufferpool"
)

// TestSpareBuffers: an emptied outbox buffer is kept by its worker and
// handed out again, empty, even after GCs (which empty bytebufferpool's
// sync.Pool); the kept capacity stays within maxSpareBytes, past which
// buffers go back to bytebufferpool.
func TestSpareBuffers(t *testing.T) {
	w := &worker{}
	b := w.getBuf()
	b.B = append(b.B, "pending bytes"...)
	w.putBuf(b)
	runtime.GC()
	runtime.GC()
	if got := w.getBuf(); got != b || len(got.B) != 0 {
		t.Fatalf("after two GCs getBuf = %p (len %d), want the kept buffer %p, empty", got, len(got.B), b)
	}
	if w.spareBytes != 0 || len(w.spareBufs) != 0 {
		t.Fatalf("spare list %d buffers, %d bytes after taking the only one", len(w.spareBufs), w.spareBytes)
	}

	const size = 64 << 10
	kept := 0
	for range 2 * maxSpareBytes / size {
		w.putBuf(&bytebufferpool.ByteBuffer{B: make([]byte, 0, size)})
		if w.spareBytes > maxSpareBytes {
			t.Fatalf("spare list holds %d bytes, over the %d bound", w.spareBytes, maxSpareBytes)
		}
		kept = len(w.spareBufs)
	}
	if kept != maxSpareBytes/size {
		t.Fatalf("spare list kept %d buffers of %d bytes, want %d", kept, size, maxSpareBytes/size)
	}
	for range kept {
		w.getBuf()
	}
	if w.spareBytes != 0 {
		t.Fatalf("spare bytes %d after every kept buffer was taken", w.spareBytes)
	}
}
