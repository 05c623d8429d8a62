package stream

import "bytes"

// ParseNDJSON returns one event per non-blank line of an NDJSON body (lines
// of only spaces, tabs and CRs are skipped). Data is the line without its
// newline or a CR before it. A last line without a newline is returned with
// Complete false: a writer of NDJSON ends every line, so the body was cut.
func ParseNDJSON(body []byte) []Event {
	var events []Event
	for pos := 0; pos < len(body); {
		start := pos
		line := body[pos:]
		complete := false
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, pos, complete = line[:i], pos+i+1, true
		} else {
			pos = len(body)
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.Trim(line, " \t\r")) == 0 {
			continue
		}
		events = append(events, Event{Data: line[:len(line):len(line)], Start: start, End: pos, Complete: complete})
	}
	return events
}
