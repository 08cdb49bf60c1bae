package route

import (
	"fmt"
	"hash/fnv"
	"testing"
)

func TestShardIndexIsFNV1a(t *testing.T) {
	for _, key := range []string{"", "a", "dev-1", "room-42", "设备"} {
		h := fnv.New32a()
		h.Write([]byte(key))
		if got, want := shardIndex(key), int(h.Sum32()%shardCount); got != want {
			t.Errorf("shardIndex(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestMemoryForgets checks that groups without members and devices without
// a binding or a group leave no entry behind.
func TestMemoryForgets(t *testing.T) {
	ctx := t.Context()
	m := NewMemory()
	devices := make([]string, 1000)
	for i := range devices {
		devices[i] = fmt.Sprintf("dev-%d", i)
	}
	loc := Location{Node: "node-1", Conn: 1}
	for _, d := range devices {
		m.Bind(ctx, d, loc)
	}
	m.Join(ctx, "room-1", devices)
	m.Join(ctx, "room-2", devices[:10])
	if got := m.entries(); got != 1000+1000+2 {
		t.Fatalf("%d entries after Bind and Join, want %d", got, 1000+1000+2)
	}
	for _, d := range devices {
		m.Unbind(ctx, d, loc)
	}
	m.Leave(ctx, "room-1", devices)
	m.Leave(ctx, "room-2", devices[:5])
	if got := m.entries(); got != 5+1 {
		t.Fatalf("%d entries after Unbind and Leave, want 6 (room-2 and its 5 members)", got)
	}
	m.Leave(ctx, "room-2", devices)
	if got := m.entries(); got != 0 {
		t.Errorf("%d entries after everyone left, want 0", got)
	}
}

// entries counts the map entries of m: bindings, devices with groups and
// groups.
func (m *Memory) entries() int {
	n := 0
	for i := range m.devices {
		n += len(m.devices[i].locs) + len(m.devices[i].groups)
	}
	for i := range m.groups {
		n += len(m.groups[i].groups)
	}
	return n
}
