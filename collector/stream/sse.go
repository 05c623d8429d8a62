package stream

import "bytes"

// bom is the UTF-8 byte order mark an event stream may start with.
var bom = []byte("\xEF\xBB\xBF")

// ParseSSE splits an event-stream body into its events by the WHATWG rules
// (HTML Living Standard, "Server-sent events", interpreting an event
// stream): lines end with CRLF, LF or CR; a leading BOM is skipped; a line
// starting with ':' is a comment; "field:value" loses one leading space from
// value, and a line without a colon is a field with an empty value; data
// lines are joined by "\n"; an `id` containing NUL is ignored, as is `retry`
// and any unknown field; a blank line dispatches the event, unless no data
// line was seen, in which case the block is dropped (a keep-alive comment,
// an `event:` alone).
//
// Unlike a browser, ParseSSE also returns the trailing event the body cut
// off (Complete false) when it has data: a cut stream's last words are still
// worth reading. Start is the offset of the block's first line (a comment in
// the same block counts), End is just past its terminating blank line.
//
// Memory is O(len(body)): single-line data is a slice of body, and only
// events with several data lines get a buffer of their own.
func ParseSSE(body []byte) []Event {
	var (
		events []Event
		lastID string // carries over between events, per the spec

		blockStart = -1 // offset of the pending block's first line
		name       string
		nData      int    // data lines in the pending block
		data       []byte // the first data line, or the joined buffer once nData > 1
	)
	pos := 0
	if bytes.HasPrefix(body, bom) {
		pos = len(bom)
	}
	for pos < len(body) {
		line, next := cutLine(body, pos)
		if len(line) == 0 {
			// A blank line: dispatch. It is always terminated, since an
			// unterminated line at the end of the body is never empty.
			if nData > 0 {
				events = append(events, Event{Name: name, ID: lastID, Data: data, Start: blockStart, End: next, Complete: true})
			}
			blockStart, name, nData, data = -1, "", 0, nil
			pos = next
			continue
		}
		if blockStart < 0 {
			blockStart = pos
		}
		pos = next
		if line[0] == ':' {
			continue // comment
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) { // no allocation: the compiler special-cases this conversion
		case "data":
			switch nData {
			case 0:
				// Cap the slice at its length so that a caller appending to
				// Data cannot overwrite the body after it.
				data = value[:len(value):len(value)]
			case 1:
				first := data
				data = make([]byte, 0, len(first)+1+len(value))
				data = append(data, first...)
				data = append(append(data, '\n'), value...)
			default:
				data = append(append(data, '\n'), value...)
			}
			nData++
		case "event":
			name = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				lastID = string(value)
			}
		}
	}
	if nData > 0 {
		events = append(events, Event{Name: name, ID: lastID, Data: data, Start: blockStart, End: len(body), Complete: false})
	}
	return events
}

// cutLine returns the line starting at pos without its terminator (CRLF,
// LF or CR) and the offset just past the terminator, or len(body) for a
// last line the body cut off.
func cutLine(body []byte, pos int) (line []byte, next int) {
	rest := body[pos:]
	// Two IndexByte scans (vectorized) beat one IndexAny (byte by byte); CR
	// is rare, so the second scan usually covers one line only.
	i := bytes.IndexByte(rest, '\n')
	head := rest
	if i >= 0 {
		head = rest[:i]
	}
	if j := bytes.IndexByte(head, '\r'); j >= 0 {
		if j+1 < len(rest) && rest[j+1] == '\n' {
			return rest[:j], pos + j + 2 // CRLF
		}
		return rest[:j], pos + j + 1 // CR
	}
	if i < 0 {
		return rest, len(body)
	}
	return rest[:i], pos + i + 1 // LF
}
