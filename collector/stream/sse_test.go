package stream_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/llmtap/llmtap/collector/stream"
)

// ev builds an expected event; data nil means an event with empty data.
func ev(name, id, data string, start, end int, complete bool) stream.Event {
	return stream.Event{Name: name, ID: id, Data: []byte(data), Start: start, End: end, Complete: complete}
}

func TestParseSSE(t *testing.T) {
	tests := []struct {
		desc string
		body string
		want []stream.Event
	}{
		{desc: "empty body", body: "", want: nil},
		{desc: "one event", body: "data: hi\n\n", want: []stream.Event{ev("", "", "hi", 0, 10, true)}},
		{
			desc: "two events, offsets exact",
			body: "data: a\n\ndata: bc\n\n",
			want: []stream.Event{ev("", "", "a", 0, 9, true), ev("", "", "bc", 9, 19, true)},
		},
		{
			desc: "multi-line data joined by LF",
			body: "data: one\ndata: two\ndata:\ndata: four\n\n",
			want: []stream.Event{ev("", "", "one\ntwo\n\nfour", 0, 38, true)},
		},
		{
			desc: "CR, LF and CRLF mixed",
			body: "data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r",
			want: []stream.Event{ev("", "", "a\nb\nc", 0, 27, true), ev("", "", "d", 27, 36, true)},
		},
		{
			desc: "CRLF blank line is one line, not two",
			body: "data: a\r\n\r\n",
			want: []stream.Event{ev("", "", "a", 0, 11, true)},
		},
		{
			desc: "comments are ignored but belong to their block",
			body: ": keep-alive\n\n: note\ndata: x\n\n",
			want: []stream.Event{ev("", "", "x", 14, 30, true)},
		},
		{
			desc: "event name and id",
			body: "event: message_start\nid: 7\ndata: {}\n\n",
			want: []stream.Event{ev("message_start", "7", "{}", 0, 37, true)},
		},
		{
			desc: "id carries over, name does not",
			body: "event: a\nid: 1\ndata: x\n\ndata: y\n\nid\ndata: z\n\n",
			want: []stream.Event{ev("a", "1", "x", 0, 24, true), ev("", "1", "y", 24, 33, true), ev("", "", "z", 33, 45, true)},
		},
		{
			desc: "id with NUL is ignored",
			body: "id: 1\ndata: x\n\nid: 2\x003\ndata: y\n\n",
			want: []stream.Event{ev("", "1", "x", 0, 15, true), ev("", "1", "y", 15, 32, true)},
		},
		{
			desc: "retry and unknown fields are ignored",
			body: "retry: 3000\nfoo: bar\ndata: x\n\n",
			want: []stream.Event{ev("", "", "x", 0, 30, true)},
		},
		{
			desc: "leading BOM skipped",
			body: "\xEF\xBB\xBFdata: x\n\n",
			want: []stream.Event{ev("", "", "x", 3, 12, true)},
		},
		{
			desc: "BOM only at the start",
			body: "data: a\n\n\xEF\xBB\xBFdata: b\n\n",
			want: []stream.Event{ev("", "", "a", 0, 9, true)},
		},
		{
			desc: "field without colon has empty value",
			body: "data\n\nevent\ndata\ndata\n\n",
			want: []stream.Event{ev("", "", "", 0, 6, true), ev("", "", "\n", 6, 23, true)},
		},
		{
			desc: "no space after colon, only one space stripped",
			body: "data:x\ndata:  y\n\n",
			want: []stream.Event{ev("", "", "x\n y", 0, 17, true)},
		},
		{
			desc: "colon in value kept",
			body: "data: {\"a\":1}\n\n",
			want: []stream.Event{ev("", "", `{"a":1}`, 0, 15, true)},
		},
		{
			desc: "event without data is not dispatched",
			body: "event: ping\n\ndata: x\n\n",
			want: []stream.Event{ev("", "", "x", 13, 22, true)},
		},
		{
			desc: "extra blank lines between events",
			body: "\n\ndata: a\n\n\n\ndata: b\n\n",
			want: []stream.Event{ev("", "", "a", 2, 11, true), ev("", "", "b", 13, 22, true)},
		},
		{
			desc: "DONE is an ordinary event",
			body: "data: [DONE]\n\n",
			want: []stream.Event{ev("", "", "[DONE]", 0, 14, true)},
		},
		{
			desc: "trailing event missing its blank line",
			body: "data: a\n\nevent: e\ndata: b\n",
			want: []stream.Event{ev("", "", "a", 0, 9, true), ev("e", "", "b", 9, 26, false)},
		},
		{
			desc: "trailing event cut mid-line",
			body: "data: a\n\ndata: {\"cho",
			want: []stream.Event{ev("", "", "a", 0, 9, true), ev("", "", `{"cho`, 9, 20, false)},
		},
		{
			desc: "trailing block without data is dropped",
			body: "data: a\n\nevent: e\n",
			want: []stream.Event{ev("", "", "a", 0, 9, true)},
		},
		{
			desc: "comments only",
			body: ": ping\n\n: ping\n\n",
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got := stream.ParseSSE([]byte(tt.body))
			if !equalEvents(got, tt.want) {
				t.Errorf("ParseSSE(%q)\n got %s\nwant %s", tt.body, fmtEvents(got), fmtEvents(tt.want))
			}
			checkInvariants(t, []byte(tt.body), got)
		})
	}
}

// TestParseSSEDataDoesNotClobberBody: Data of a single-line event is a slice
// of the body, capped so that appending to it copies.
func TestParseSSEDataDoesNotClobberBody(t *testing.T) {
	body := []byte("data: a\n\ndata: b\n\n")
	evs := stream.ParseSSE(body)
	_ = append(evs[0].Data, 'X')
	if string(body) != "data: a\n\ndata: b\n\n" {
		t.Errorf("body changed to %q", body)
	}
}

// TestParseSSEFixture checks a captured OpenAI stream from a file: the
// events tile the body exactly.
func TestParseSSEFixture(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "chat.sse"))
	if err != nil {
		t.Fatal(err)
	}
	evs := stream.ParseSSE(body)
	if len(evs) != 5 {
		t.Fatalf("got %d events, want 5", len(evs))
	}
	if string(evs[4].Data) != "[DONE]" {
		t.Errorf("last event data %q, want [DONE]", evs[4].Data)
	}
	end := 0
	for i, e := range evs {
		if e.Start != end {
			t.Errorf("event %d starts at %d, want %d", i, e.Start, end)
		}
		if !bytes.HasPrefix(body[e.Start:], []byte("data: ")) {
			t.Errorf("event %d does not start at a data line", i)
		}
		end = e.End
	}
	if end != len(body) {
		t.Errorf("last event ends at %d, want %d", end, len(body))
	}
}

func equalEvents(a, b []stream.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.ID != y.ID || !bytes.Equal(x.Data, y.Data) ||
			x.Start != y.Start || x.End != y.End || x.Complete != y.Complete {
			return false
		}
	}
	return true
}

func fmtEvents(evs []stream.Event) string {
	var b bytes.Buffer
	for _, e := range evs {
		b.WriteString("\n  ")
		fmt.Fprintf(&b, "{Name:%q ID:%q Data:%q Start:%d End:%d Complete:%t}", e.Name, e.ID, e.Data, e.Start, e.End, e.Complete)
	}
	return b.String()
}

// checkInvariants holds for every body: events lie within it, in order,
// without overlap, and only the last may be incomplete.
func checkInvariants(t *testing.T, body []byte, evs []stream.Event) {
	t.Helper()
	prev := 0
	for i, e := range evs {
		if e.Start < prev || e.Start > e.End || e.End > len(body) {
			t.Fatalf("event %d spans [%d,%d) after %d in a body of %d bytes", i, e.Start, e.End, prev, len(body))
		}
		if !e.Complete && (i != len(evs)-1 || e.End != len(body)) {
			t.Fatalf("incomplete event %d of %d ends at %d, body %d", i, len(evs), e.End, len(body))
		}
		if len(e.Data) > e.End-e.Start {
			t.Fatalf("event %d has %d data bytes in a %d-byte span", i, len(e.Data), e.End-e.Start)
		}
		prev = e.End
	}
}

func FuzzParseSSE(f *testing.F) {
	f.Add([]byte("data: a\r\n\r\nevent: x\rid: 1\rdata: b\r\r: c\ndata"))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkInvariants(t, body, stream.ParseSSE(body))
	})
}

func BenchmarkParseSSE(b *testing.B) {
	chunk, err := os.ReadFile(filepath.Join("testdata", "chat.sse"))
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat(chunk, 500)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		stream.ParseSSE(body)
	}
}
