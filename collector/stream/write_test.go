package stream_test

import (
	"testing"

	"github.com/llmtap/llmtap/collector/stream"
)

func TestWriteOf(t *testing.T) {
	ends := []int64{10, 25, 25, 40}
	tests := []struct {
		desc      string
		writeEnds []int64
		off       int
		want      int
	}{
		{desc: "first byte", writeEnds: ends, off: 1, want: 0},
		{desc: "last byte of first write", writeEnds: ends, off: 10, want: 0},
		{desc: "first byte of second write", writeEnds: ends, off: 11, want: 1},
		{desc: "empty write after is not the one", writeEnds: ends, off: 25, want: 1},
		{desc: "after an empty write", writeEnds: ends, off: 26, want: 3},
		{desc: "end of body", writeEnds: ends, off: 40, want: 3},
		{desc: "beyond listed writes", writeEnds: ends, off: 41, want: -1},
		{desc: "zero offset has no byte", writeEnds: ends, off: 0, want: -1},
		{desc: "negative", writeEnds: ends, off: -5, want: -1},
		{desc: "no writes", writeEnds: nil, off: 1, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := stream.WriteOf(tt.writeEnds, tt.off); got != tt.want {
				t.Errorf("WriteOf(%v, %d) = %d, want %d", tt.writeEnds, tt.off, got, tt.want)
			}
		})
	}
}

// TestWriteOfEvents maps the events of a stream written one event per write
// (the usual case) back to their writes.
func TestWriteOfEvents(t *testing.T) {
	body := []byte("data: a\n\ndata: b\n\ndata: [DONE]\n\n")
	writeEnds := []int64{9, 18, 32}
	for i, e := range stream.ParseSSE(body) {
		if got := stream.WriteOf(writeEnds, e.End); got != i {
			t.Errorf("event %d: write %d, want %d", i, got, i)
		}
	}
}
