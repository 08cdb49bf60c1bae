package upstream

import (
	"sync"
	"time"

	"github.com/longlink/longlink/codec"
)

// Business is the configuration of one business: where its requests go
// and how its forwarding group is sized. Zero fields take the defaults
// below.
type Business struct {
	ID      uint16        // the frame's biz; 1..65535
	Echo    bool          // the built-in echo business: answers with the request itself, inside Submit
	URL     string        // the backend's URL, for a business that is not Echo
	Workers int           // forwarding goroutines; zero means DefaultWorkers; not for Echo
	Queue   int           // queued requests beyond which OVERLOADED is answered; zero means DefaultQueue; not for Echo
	Timeout time.Duration // per request; zero means DefaultTimeout; not for Echo
}

// Defaults of a forwarding group.
const (
	DefaultWorkers = 64
	DefaultQueue   = 4096
	DefaultTimeout = 5 * time.Second
)

// Request is one REQUEST frame on its way to a business. The gateway takes
// it from Get, fills it, and hands it to Dispatcher.Submit; the dispatcher
// calls its Reply exactly once for every submitted request and returns it
// to the pool afterwards, so nobody may keep it past the Reply.
type Request struct {
	Biz    uint16
	Seq    uint32
	Conn   uint64 // the connection's id on this node
	Device string
	App    string
	Meta   []byte // encoded meta section (codec.Meta), owned by the request
	Body   []byte // owned by the request
	// Reply answers the request: the connection it came on. Submit
	// refuses a request without one.
	Reply Replier
	// Enqueued is when Submit accepted the request, for latency metrics.
	Enqueued time.Time
}

// Result is a business's answer to a Request. Meta is an encoded meta
// section (codec.Meta). Both slices are valid only during Reply.
type Result struct {
	Status codec.Status
	Meta   []byte
	Body   []byte
}

// Replier receives the answer to a submitted Request: each Request carries
// its own (Request.Reply). It is called from the dispatcher's workers,
// concurrently, and must not block.
type Replier interface {
	Reply(req *Request, res Result)
}

var requestPool = sync.Pool{New: func() any { return new(Request) }}

// Get returns an empty Request from the pool; its Meta and Body keep their
// capacity from earlier use, so appending to them[:0] does not allocate.
func Get() *Request { return requestPool.Get().(*Request) }

func put(r *Request) {
	meta, body := r.Meta[:0], r.Body[:0]
	if cap(body) > 64<<10 {
		body = nil // do not pin a large body in the pool
	}
	*r = Request{Meta: meta, Body: body}
	requestPool.Put(r)
}

// Release returns a Request that was not submitted, or whose Submit did
// not return codec.StatusOK, to the pool. A request Submit accepted is
// recycled by the dispatcher and must not be released.
func Release(req *Request) { put(req) }
