package gateway

import (
	"slices"
	"testing"
)

// TestInRequestOrder: a push's offline devices, closing connections here
// and devices connected nowhere, are listed in request order
// (docs/api.md), as when a single node appended each as it met it.
func TestInRequestOrder(t *testing.T) {
	order := map[string]int{"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}
	for _, tc := range []struct {
		closing, nowhere, want []string
	}{
		{nil, nil, []string{}},
		{[]string{"b"}, nil, []string{"b"}},
		{nil, []string{"a", "e"}, []string{"a", "e"}},
		{[]string{"a", "c"}, []string{"b", "d", "e"}, []string{"a", "b", "c", "d", "e"}},
		{[]string{"d", "e"}, []string{"a", "b"}, []string{"a", "b", "d", "e"}},
	} {
		got := inRequestOrder(tc.closing, tc.nowhere, order)
		if got == nil || !slices.Equal(got, tc.want) {
			t.Errorf("inRequestOrder(%q, %q) = %#v, want %q", tc.closing, tc.nowhere, got, tc.want)
		}
	}
}
