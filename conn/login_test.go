package conn

import (
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/codec"
)

// TestLoginAckMeansReachable: LOGIN_ACK is not written before the device
// is in the registry, so a backend that pushes as soon as the client has
// read it finds the device (a CI run once saw a push right after the ack
// answered "offline"). The test holds the device's registry shard while
// the login runs: no LOGIN_ACK may leave until the shard is free, and once
// it has arrived the device is registered.
func TestLoginAckMeansReachable(t *testing.T) {
	fh := newFuzzHub(t)
	const device = "reachable-dev"
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": device, "exp": 4102444800}).SignedString([]byte(fuzzSecret))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetNonblock(pair[0], true); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(pair[1])
	// The test's reads time out, so a LOGIN_ACK that is not there shows as
	// EAGAIN instead of a hang.
	if err := syscall.SetsockoptTimeval(pair[1], syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Usec: 100_000}); err != nil {
		t.Fatal(err)
	}
	nc := &fakeConn{fd: pair[0], closed: make(chan struct{})}
	ctx := fh.h.prepare(nc, TCP)
	c, _ := ctx.(*Conn)
	if c == nil {
		t.Fatal("prepare refused the connection")
	}

	shard := fh.h.reg.device(device)
	shard.mu.Lock()
	nc.in = codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1}, codec.AppendMetaString(nil, "token", tok), nil)
	fed := make(chan error, 1)
	go func() {
		_, err := nc.data(fh.h, ctx)
		fed <- err
	}()
	var buf [4096]byte
	if n, err := syscall.Read(pair[1], buf[:]); n > 0 {
		shard.mu.Unlock()
		t.Fatalf("%d bytes written before the device could enter the registry", n)
	} else if err != syscall.EAGAIN {
		shard.mu.Unlock()
		t.Fatalf("read while the registry is held: %d, %v; want a timeout", n, err)
	}
	shard.mu.Unlock()

	var out []byte
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, _ := syscall.Read(pair[1], buf[:])
		out = append(out, buf[:max(n, 0)]...)
		if f, k, _ := codec.Decode(out, 1<<16); k > 0 {
			if f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
				t.Fatalf("first frame %v %v; want LOGIN_ACK OK", f.Op, f.Status)
			}
			if got := fh.h.Lookup(device); got != c {
				t.Fatalf("after LOGIN_ACK the registry has %p for the device, want its connection %p", got, c)
			}
			if err := <-fed; err != nil {
				t.Fatalf("data: %v", err)
			}
			c.kick(codec.StatusShuttingDown, "test over")
			<-nc.closed
			return
		}
	}
	t.Fatal("no LOGIN_ACK within 5s of the registry being free")
}
