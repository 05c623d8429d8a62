package mock

import (
	"context"
	"testing"
)

// The store forgets by order of arrival, whatever order requests end in.
func TestTruthStoreOrder(t *testing.T) {
	for _, tc := range []struct {
		desc string
		// arrivals, then the order (indexes into arrivals) the requests end in
		arrive []string
		end    []int
		kept   map[string]bool
		// for a reused id, the arrival whose truth is kept
		from map[string]int64
	}{
		{desc: "in order", arrive: []string{"a", "b", "c", "d"}, end: []int{0, 1, 2, 3},
			kept: map[string]bool{"a": false, "b": true, "c": true, "d": true}},
		{desc: "the first ends last", arrive: []string{"a", "b", "c", "d"}, end: []int{1, 2, 3, 0},
			kept: map[string]bool{"a": false, "b": true, "c": true, "d": true}},
		{desc: "reversed", arrive: []string{"a", "b", "c", "d"}, end: []int{3, 2, 1, 0},
			kept: map[string]bool{"a": false, "b": true, "c": true, "d": true}},
		{desc: "an id reused, the older ending last", arrive: []string{"a", "b", "a"}, end: []int{2, 1, 0},
			kept: map[string]bool{"a": true, "b": true}, from: map[string]int64{"a": 2}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := newTruthStore(3)
			flights := make([]flight, len(tc.arrive))
			for i, id := range tc.arrive {
				flights[i] = s.begin(id)
			}
			for _, i := range tc.end {
				s.end(Truth{RequestID: tc.arrive[i], Bytes: int64(i)}, flights[i])
			}
			for id, want := range tc.kept {
				got, ok := s.get(context.Background(), id, 0)
				if ok != want {
					t.Errorf("truth of %s kept %v, want %v", id, ok, want)
				}
				if from, ok := tc.from[id]; ok && got.Bytes != from {
					t.Errorf("truth of %s is arrival %d's, want %d's", id, got.Bytes, from)
				}
			}
		})
	}
}
