package route_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/longlink/longlink/route"
	"github.com/longlink/longlink/route/routetest"
)

func TestMemory(t *testing.T) {
	routetest.Run(t, func(*testing.T) route.Route { return route.NewMemory() })
}

// boundMemory returns a Memory with n devices bound, and their names.
func boundMemory(b *testing.B, n int) (*route.Memory, []string) {
	m := route.NewMemory()
	devices := make([]string, n)
	for i := range devices {
		devices[i] = "dev-" + strconv.Itoa(i)
		if _, _, err := m.Bind(b.Context(), devices[i], route.Location{Node: "node-1", Conn: uint64(i)}); err != nil {
			b.Fatal(err)
		}
	}
	return m, devices
}

func BenchmarkMemoryLookup(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			m, devices := boundMemory(b, n)
			ctx := b.Context()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, online, _ := m.Lookup(ctx, devices[i%n]); !online {
					b.Fatal("offline")
				}
				i++
			}
		})
	}
}

func BenchmarkMemoryLookupParallel(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			m, devices := boundMemory(b, n)
			ctx := b.Context()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(n) // each goroutine walks from its own start
				for pb.Next() {
					if _, online, _ := m.Lookup(ctx, devices[i%n]); !online {
						b.Error("offline")
						return
					}
					i++
				}
			})
		})
	}
}

func BenchmarkMemoryBindUnbind(b *testing.B) {
	m := route.NewMemory()
	ctx := b.Context()
	loc := route.Location{Node: "node-1", Conn: 1}
	b.ReportAllocs()
	for b.Loop() {
		m.Bind(ctx, "dev", loc)
		m.Unbind(ctx, "dev", loc)
	}
}

// BenchmarkMemoryJoin times a Join of devices to a new group; the Leave
// that empties the group again is not timed.
func BenchmarkMemoryJoin(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			m := route.NewMemory()
			ctx := b.Context()
			devices := make([]string, n)
			for i := range devices {
				devices[i] = "dev-" + strconv.Itoa(i)
			}
			b.ReportAllocs()
			for b.Loop() {
				m.Join(ctx, "room", devices)
				b.StopTimer()
				m.Leave(ctx, "room", devices)
				b.StartTimer()
			}
		})
	}
}

func BenchmarkMemoryGroups(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) {
			m := route.NewMemory()
			ctx := b.Context()
			for i := range n {
				m.Join(ctx, "room-"+strconv.Itoa(i), []string{"dev"})
			}
			b.ReportAllocs()
			for b.Loop() {
				if groups, _ := m.Groups(ctx, "dev"); len(groups) != n {
					b.Fatalf("%d groups, want %d", len(groups), n)
				}
			}
		})
	}
}
