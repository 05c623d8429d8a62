package stream_test

import (
	"testing"

	"github.com/llmtap/llmtap/collector/stream"
)

func TestParseNDJSON(t *testing.T) {
	tests := []struct {
		desc string
		body string
		want []stream.Event
	}{
		{desc: "empty body", body: "", want: nil},
		{
			desc: "lines",
			body: "{\"a\":1}\n{\"b\":2}\n",
			want: []stream.Event{ev("", "", `{"a":1}`, 0, 8, true), ev("", "", `{"b":2}`, 8, 16, true)},
		},
		{
			desc: "CRLF and blank lines",
			body: "{}\r\n\r\n  \n{\"b\":2}\r\n",
			want: []stream.Event{ev("", "", `{}`, 0, 4, true), ev("", "", `{"b":2}`, 9, 18, true)},
		},
		{
			desc: "trailing line without newline is incomplete",
			body: "{}\n{\"done\":tr",
			want: []stream.Event{ev("", "", `{}`, 0, 3, true), ev("", "", `{"done":tr`, 3, 13, false)},
		},
		{desc: "blank only", body: "\n \t\r\n", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got := stream.ParseNDJSON([]byte(tt.body))
			if !equalEvents(got, tt.want) {
				t.Errorf("ParseNDJSON(%q)\n got %s\nwant %s", tt.body, fmtEvents(got), fmtEvents(tt.want))
			}
			checkInvariants(t, []byte(tt.body), got)
		})
	}
}

func FuzzParseNDJSON(f *testing.F) {
	f.Add([]byte("{}\r\n\n {\"a\":1}\n{\"b\""))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkInvariants(t, body, stream.ParseNDJSON(body))
	})
}
