// Package stream splits a captured response body into its events: the
// server-sent events of text/event-stream bodies and the lines of NDJSON
// bodies. It knows nothing of providers; provider reads the events' data.
//
// The parsers work on whatever was captured, which may end mid-event, so
// they never fail: a trailing event the body cut off is returned with
// Complete false, and offsets always refer to the body as given, so an
// event can be mapped back to the write (and so the time) that delivered it.
package stream

import "slices"

// Event is one server-sent event, or one NDJSON line, in a captured body.
//
// Data may share memory with the parsed body (a single-line event's data is
// a slice of it), so a caller that changes the body must copy Data first.
type Event struct {
	Name string // SSE `event:` field ("" = message); "" for NDJSON
	// ID is the SSE last event ID when the event was dispatched: as the
	// WHATWG rules say, an `id:` field carries over to later events until
	// another one replaces it.
	ID    string
	Data  []byte // SSE data lines joined by "\n"; the NDJSON line
	Start int    // byte offset in the body where the event's first line starts
	// End is the offset just past the event's terminating blank line (SSE)
	// or newline (NDJSON); len(body) for a trailing incomplete event.
	End int
	// Complete is false for a trailing event the body cut off.
	Complete bool
}

// WriteOf returns the index of the write that delivered byte offset off-1
// (the write whose range contains an event's last byte when off is its
// End), or -1 if unknown: off beyond the listed writes, or off <= 0.
//
// writeEnds[i] is the body offset just after write i, so write i delivered
// the bytes [writeEnds[i-1], writeEnds[i]), and the answer is the first i
// with writeEnds[i] >= off. When the plugin dropped writes, its last slot
// stands for the latest write, so an offset in the unlisted stretch maps to
// that last write: a time no earlier than the true one.
func WriteOf(writeEnds []int64, off int) int {
	if off <= 0 {
		return -1
	}
	// BinarySearch finds the first element >= off even among equal ends
	// (empty writes), which is the write that actually carried the byte.
	i, _ := slices.BinarySearch(writeEnds, int64(off))
	if i == len(writeEnds) {
		return -1
	}
	return i
}
