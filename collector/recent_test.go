package collector

import (
	"strconv"
	"testing"
)

func TestRecent(t *testing.T) {
	r := NewRecent(4)
	r.Add("a", "chat", 1)
	for _, tt := range []struct {
		desc      string
		id, route string
		start     int64
		seen      bool
	}{
		{"the same record", "a", "chat", 1, true},
		{"the id reused later", "a", "chat", 2, false},
		{"another route", "a", "tts", 1, false},
		{"another id", "b", "chat", 1, false},
		{"no confusion across fields", "ac", "hat", 1, false},
	} {
		if isNew := r.Add(tt.id, tt.route, tt.start); isNew == tt.seen {
			t.Errorf("%s: new %v, want %v", tt.desc, isNew, !tt.seen)
		}
		r.Forget(tt.id, tt.route, tt.start)
	}
	r.Forget("a", "chat", 1)
	if !r.Add("a", "chat", 1) {
		t.Error("a forgotten record is not new again")
	}
}

// Two generations at most: the oldest records are forgotten, the latest
// size are always remembered.
func TestRecentBounded(t *testing.T) {
	const size = 100
	r := NewRecent(size)
	for i := 0; i < 10*size; i++ {
		if !r.Add(strconv.Itoa(i), "chat", 1) {
			t.Fatalf("record %d not new", i)
		}
	}
	if n := len(r.cur) + len(r.old); n > 2*size {
		t.Errorf("%d entries, want at most %d", n, 2*size)
	}
	for i := 9 * size; i < 10*size; i++ {
		if r.Add(strconv.Itoa(i), "chat", 1) {
			t.Fatalf("record %d of the latest %d forgotten", i, size)
		}
	}
	if !r.Add("0", "chat", 1) {
		t.Error("the first record still remembered after 10 generations")
	}
}
