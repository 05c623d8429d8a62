package clickhouse

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector"
)

// roundTrip converts a fact to a row and back, as a write then a read do.
func roundTrip(f *collector.Fact) *collector.Fact {
	r := toRow(f, time.Now())
	return r.fact()
}

func TestRowRoundTrip(t *testing.T) {
	for i := range 200 {
		f := testFact(i)
		if got, want := roundTrip(f), stored(f); !reflect.DeepEqual(got, want) {
			t.Fatalf("fact %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

// TestRowChunks: chunks that are runs of the body are stored as spans of
// it, any others as texts, and both read back as the chunks.
func TestRowChunks(t *testing.T) {
	for _, tt := range []struct {
		name   string
		body   string
		chunks []string
		spans  bool
	}{
		{"sse", "data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n", []string{`{"a":1}`, `{"a":2}`, "[DONE]"}, true},
		{"ndjson", "{\"a\":1}\n{\"a\":2}\n", []string{`{"a":1}`, `{"a":2}`}, true},
		{"repeated chunks", "data: x\n\ndata: x\n\n", []string{"x", "x"}, true},
		{"empty chunk", "data: \n\ndata: y\n\n", []string{"", "y"}, true},
		{"cut body with its gap marker", "data: a\n\n\n[… 99 bytes not captured …]\ndata: z\n\n", []string{"a", "z"}, true},
		{"multi-line event, joined", "data: one\ndata: two\n\n", []string{"one\ntwo"}, false},
		{"out of order", "data: x1\n\ndata: x2\n\n", []string{"x2", "x1"}, false},
		{"no body", "", []string{"a"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &collector.Fact{RequestID: "r", Start: time.Unix(1700000000, 0), ResponseBody: tt.body, Chunks: tt.chunks}
			r := toRow(f, time.Now())
			if got := len(r.ChunkEnds) > 0; got != tt.spans {
				t.Errorf("stored as spans: %v, want %v (starts %v, ends %v)", got, tt.spans, r.ChunkStarts, r.ChunkEnds)
			}
			if tt.spans && (len(r.ResponseChunks) != 0 || len(r.ChunkStarts) != len(tt.chunks)) {
				t.Errorf("spans %v %v and texts %q for %d chunks", r.ChunkStarts, r.ChunkEnds, r.ResponseChunks, len(tt.chunks))
			}
			if !tt.spans && !reflect.DeepEqual(r.ResponseChunks, tt.chunks) {
				t.Errorf("texts %q, want %q", r.ResponseChunks, tt.chunks)
			}
			if got := r.fact().Chunks; !reflect.DeepEqual(got, tt.chunks) {
				t.Errorf("read back %q, want %q", got, tt.chunks)
			}
		})
	}
}

// TestRowChunksAfterBodyRetention: a body emptied by its TTL leaves no
// chunks, as the alias chunks reads such a row.
func TestRowChunksAfterBodyRetention(t *testing.T) {
	r := toRow(&collector.Fact{RequestID: "r", ResponseBody: "data: a\n\ndata: b\n\n", Chunks: []string{"a", "b"}}, time.Now())
	r.ResponseBody = ""
	if got := r.fact().Chunks; got != nil {
		t.Errorf("chunks of an emptied body: %q", got)
	}
}

func TestRowNilAndZeroTokens(t *testing.T) {
	f := &collector.Fact{RequestID: "a", Start: time.Unix(1700000000, 0)}
	f.Usage.Output = i64(0)
	f.TTFAMs = i64(0)
	got := roundTrip(f)
	if got.Usage.Input != nil || got.Usage.CacheRead != nil || got.TTFTMs != nil {
		t.Errorf("nil pointers came back set: %+v", got)
	}
	if got.Usage.Output == nil || *got.Usage.Output != 0 || got.TTFAMs == nil || *got.TTFAMs != 0 {
		t.Errorf("pointers to 0 came back %v, %v; want 0, 0", got.Usage.Output, got.TTFAMs)
	}
}

func TestRowMillisecondPrecision(t *testing.T) {
	loc := time.FixedZone("UTC+5:30", 5*3600+1800)
	tests := []struct {
		desc   string
		start  time.Time
		wantS  int64
		wantMs uint16
	}{
		{desc: "sub-millisecond dropped, not rounded", start: time.Date(2026, 1, 2, 3, 4, 5, 123_999_999, time.UTC), wantS: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Unix(), wantMs: 123},
		{desc: "last millisecond of a second", start: time.Unix(1700000000, 999_000_000), wantS: 1700000000, wantMs: 999},
		{desc: "zone does not matter", start: time.Date(2026, 1, 2, 8, 34, 5, 7_000_000, loc), wantS: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Unix(), wantMs: 7},
		{desc: "before 1970 clamps", start: time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC), wantS: 0, wantMs: 0},
		{desc: "zero time clamps", start: time.Time{}, wantS: 0, wantMs: 0},
		{desc: "after 2106 clamps", start: time.Date(2200, 1, 1, 0, 0, 0, 5_000_000, time.UTC), wantS: math.MaxUint32, wantMs: 0},
	}
	for _, tt := range tests {
		r := toRow(&collector.Fact{Start: tt.start}, time.Now())
		if r.Start.Unix() != tt.wantS || r.StartMs != tt.wantMs || r.Start.Location() != time.UTC {
			t.Errorf("%s: start %v ms %d, want %d s %d ms UTC", tt.desc, r.Start, r.StartMs, tt.wantS, tt.wantMs)
		}
		back := r.fact().Start
		if want := time.Unix(tt.wantS, int64(tt.wantMs)*1e6).UTC(); !back.Equal(want) || back.Location() != time.UTC {
			t.Errorf("%s: read back %v, want %v", tt.desc, back, want)
		}
	}
}

func TestRowClampsStatus(t *testing.T) {
	for in, want := range map[int]uint16{-1: 0, 0: 0, 200: 200, 70000: math.MaxUint16} {
		if got := toRow(&collector.Fact{Status: in}, time.Now()).Status; got != want {
			t.Errorf("status %d stored as %d, want %d", in, got, want)
		}
	}
}

// TestRowMatchesColumns checks values() and dests() line up with the
// column list: one per column, each of the Go type clickhouse-go maps the
// column's type to. The integration tests check the order against a real
// table.
func TestRowMatchesColumns(t *testing.T) {
	goType := map[string]reflect.Type{
		"String":          reflect.TypeFor[string](),
		"DateTime":        reflect.TypeFor[time.Time](),
		"UInt8":           reflect.TypeFor[uint8](),
		"UInt16":          reflect.TypeFor[uint16](),
		"Int64":           reflect.TypeFor[int64](),
		"Nullable(Int64)": reflect.TypeFor[*int64](),
		"Array(String)":   reflect.TypeFor[[]string](),
		"Array(Int64)":    reflect.TypeFor[[]int64](),
		"Array(UInt32)":   reflect.TypeFor[[]uint32](),
	}
	r := toRow(testFact(1), time.Now())
	vals, dests := r.values(), r.dests()
	if len(vals) != len(columns) || len(dests) != len(columns) {
		t.Fatalf("%d values, %d dests for %d columns", len(vals), len(dests), len(columns))
	}
	rt := reflect.TypeOf(r)
	if rt.NumField() != len(columns) {
		t.Fatalf("row has %d fields for %d columns", rt.NumField(), len(columns))
	}
	for i, c := range columns {
		want := goType[c.typ]
		if got := reflect.TypeOf(vals[i]); got != want {
			t.Errorf("column %s (%s): value %d is %v, want %v", c.name, c.typ, i, got, want)
		}
		if got := reflect.TypeOf(dests[i]).Elem(); got != want {
			t.Errorf("column %s (%s): dest %d is *%v, want *%v", c.name, c.typ, i, got, want)
		}
		fv := reflect.ValueOf(&r).Elem().Field(i)
		if reflect.ValueOf(dests[i]).Pointer() != fv.Addr().Pointer() {
			t.Errorf("dest %d does not point at row field %d", i, i)
		}
		if !reflect.DeepEqual(vals[i], fv.Interface()) {
			t.Errorf("value %d is not row field %d", i, i)
		}
		// Field names follow column names: request_id is RequestID.
		field := strings.ToLower(rt.Field(i).Name)
		if field != strings.ReplaceAll(c.name, "_", "") {
			t.Errorf("column %d is %s but row field %d is %s", i, c.name, i, rt.Field(i).Name)
		}
	}
}

func BenchmarkChunkSpans(b *testing.B) {
	var body strings.Builder
	var chunks []string
	for k := range 40 {
		c := fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word%d "}}]}`, k)
		chunks = append(chunks, c)
		body.WriteString("data: " + c + "\n\n")
	}
	s := body.String()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := chunkSpans(s, chunks); !ok {
			b.Fatal("not found")
		}
	}
}
