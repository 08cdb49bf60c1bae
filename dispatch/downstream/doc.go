// Package downstream is the gateway's downstream task group: a fixed number
// of writer goroutines that carry every byte the gateway sends to a device
// (responses, pongs, pushes, kicks).
//
// Each connection is bound to one worker (id % workers), which owns its
// Outbox. That gives three properties with no lock per connection:
//
//   - writes to a socket come from one goroutine, in the order they were
//     handed in, so a connection's frames are never interleaved;
//   - every frame queued for a connection between two wake-ups of its
//     worker goes out in one write system call (coalescing), which is what
//     lets a group push reach a million deliveries per second;
//   - a connection whose peer does not read accumulates at most
//     Options.MaxPending bytes; past that it is kicked with SLOW_CONSUMER
//     and everyone else keeps receiving.
//
// Writes are non-blocking. A socket that cannot take more is parked on its
// worker's blocked list, and the group's own epoll instance reports, once,
// when the kernel has room for it again (EPOLLOUT); only then is it
// written to. A slow reader costs neither a goroutine, nor a timer, nor a
// system call while it stays slow. A worker-wide timer (Options.Retry)
// tries the blocked sockets again now and then all the same, which is also
// when a socket that refused every byte for Options.WriteTimeout is cut.
//
// A push is encoded once (Push) and the same bytes are handed to every
// worker; each copy gets its device's seq when the worker copies it into
// the connection's outbox (Conn.StampPush). A group push or broadcast
// (PushMany) is one task per worker, not one per connection: the worker
// picks its own connections out of the shared target list by the ID
// carried beside each (Target), so the API call that queues it costs the
// same for ten members as for a million. Consecutive pushes to the same
// list (a group's member snapshot) are not copied into every outbox as
// they arrive: they are held in the worker's fan-out run, and a cursor
// walking the list copies and writes each member's share in one visit
// (run.go), so a member is touched once per write instead of once per
// push, with the frames of every other task still in queue order.
//
// Concurrency: Send, SendFirst, Push, PushMany and Kick are safe to call from any
// goroutine and never block on a socket. The Conn methods are called only
// from the connection's worker.
package downstream
