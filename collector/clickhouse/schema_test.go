package clickhouse

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const day = 24 * time.Hour

func TestPlanGolden(t *testing.T) {
	tests := []struct {
		desc   string
		golden string
		v      Version
		s      Schema
	}{
		{desc: "18.16 with retention set: legacy DDL, no TTL", golden: "plan_18.16.sql",
			v: Version{18, 16, 1}, s: Schema{Retention: 90 * day, BodyRetention: 7 * day}},
		{desc: "last 19.x: still legacy", golden: "plan_19.17.sql",
			v: Version{19, 17, 9}, s: Schema{Database: "obs", Retention: 30 * day}},
		{desc: "24.8 with retention: codecs, LowCardinality, index, TTL", golden: "plan_24.8.sql",
			v: Version{24, 8, 4}, s: Schema{Retention: 90 * day, BodyRetention: 7 * day}},
		{desc: "24.8 keeping everything: no TTL statements", golden: "plan_24.8_keep.sql",
			v: Version{24, 8, 4}, s: Schema{}},
		{desc: "20.1, body retention in hours only", golden: "plan_20.1_bodies.sql",
			v: Version{20, 1, 2}, s: Schema{Database: "obs", BodyRetention: 36 * time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			if err := tt.s.Validate(); err != nil {
				t.Fatal(err)
			}
			got := renderPlan(tt.v, tt.s)
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s (run go test -run TestPlanGolden -update to create): %v", tt.desc, err)
			}
			if got != string(want) {
				t.Errorf("%s: plan differs from %s (rerun with -update if intended):\n%s", tt.desc, path, got)
			}
		})
	}
}

func TestPlanIsPure(t *testing.T) {
	s := Schema{Retention: 90 * day, BodyRetention: 7 * day}
	a, b := renderPlan(Version{24, 8, 4}, s), renderPlan(Version{24, 8, 4}, s)
	if a != b {
		t.Fatal("two calls with the same arguments differ")
	}
}

func TestPlanBranches(t *testing.T) {
	s := Schema{Retention: 90 * day, BodyRetention: 7 * day}
	legacy := strings.Join(Plan(Version{18, 16, 1}, s)[0].Statements, "\n")
	modern := Plan(Version{24, 8, 4}, s)
	for _, bad := range []string{"CODEC", "TTL", "LowCardinality", "INDEX", "DateTime64", "Map("} {
		if strings.Contains(legacy, bad) {
			t.Errorf("18.16 DDL contains %s, which 18.16 lacks:\n%s", bad, legacy)
		}
	}
	if len(Plan(Version{18, 16, 1}, s)[1].Statements) != 0 {
		t.Error("18.16 got retention statements")
	}
	create := modern[0].Statements[1]
	for _, want := range []string{"CODEC(ZSTD(3))", "LowCardinality(String)", "bloom_filter", "ReplacingMergeTree(inserted_at)", "ORDER BY " + sortKey} {
		if !strings.Contains(create, want) {
			t.Errorf("modern CREATE lacks %s", want)
		}
	}
	if got := len(modern[1].Statements); got != 2 {
		t.Errorf("modern retention: %d statements, want 2 (table TTL, body TTLs)", got)
	}
}

func TestFeaturesOf(t *testing.T) {
	tests := []struct {
		v    Version
		want bool
	}{
		{Version{18, 16, 1}, false},
		{Version{19, 6, 2}, false},
		{Version{19, 17, 9}, false},
		{Version{20, 1, 0}, true},
		{Version{20, 3, 1}, true},
		{Version{23, 8, 1}, true},
		{Version{25, 6, 2}, true},
	}
	for _, tt := range tests {
		f := FeaturesOf(tt.v)
		want := Features{Codecs: tt.want, TTL: tt.want, LowCardinality: tt.want, SkipIndex: tt.want}
		if f != want {
			t.Errorf("FeaturesOf(%s) = %+v, want %+v", tt.v, f, want)
		}
	}
}

func TestSchemaValidate(t *testing.T) {
	tests := []struct {
		desc    string
		s       Schema
		wantErr string
	}{
		{desc: "defaults", s: Schema{}},
		{desc: "both retentions", s: Schema{Retention: 90 * day, BodyRetention: 7 * day}},
		{desc: "bodies only", s: Schema{BodyRetention: 7 * day}},
		{desc: "bad database", s: Schema{Database: "llm-tap; DROP"}, wantErr: `database name "llm-tap; DROP"`},
		{desc: "database starting with a digit", s: Schema{Database: "1db"}, wantErr: "database name"},
		{desc: "negative", s: Schema{Retention: -time.Hour}, wantErr: "retention -1h0m0s"},
		{desc: "fractional seconds", s: Schema{BodyRetention: 1500 * time.Millisecond}, wantErr: "body retention 1.5s"},
		{desc: "bodies outlive rows", s: Schema{Retention: day, BodyRetention: 2 * day}, wantErr: "exceeds retention"},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.desc, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", tt.desc, err, tt.wantErr)
		}
	}
}

func TestPending(t *testing.T) {
	plan := []Migration{{Version: 2, Name: "retention rows=90d bodies=off"}, {Version: 1, Name: "create_requests"}}
	tests := []struct {
		desc   string
		latest map[uint32]string
		want   []uint32
	}{
		{desc: "fresh", latest: map[uint32]string{}, want: []uint32{1, 2}},
		{desc: "all recorded", latest: map[uint32]string{1: "create_requests", 2: "retention rows=90d bodies=off"}},
		{desc: "retention changed", latest: map[uint32]string{1: "create_requests", 2: "retention rows=30d bodies=off"}, want: []uint32{2}},
		{desc: "only the first", latest: map[uint32]string{1: "create_requests"}, want: []uint32{2}},
	}
	for _, tt := range tests {
		var got []uint32
		for _, m := range pending(plan, tt.latest) {
			got = append(got, m.Version)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: pending %v, want %v", tt.desc, got, tt.want)
		}
	}
}

func TestInterval(t *testing.T) {
	for d, want := range map[time.Duration]string{
		90 * day:          "INTERVAL 90 DAY",
		36 * time.Hour:    "INTERVAL 36 HOUR",
		90 * time.Minute:  "INTERVAL 90 MINUTE",
		100 * time.Second: "INTERVAL 100 SECOND",
	} {
		if got := interval(d); got != want {
			t.Errorf("interval(%s) = %q, want %q", d, got, want)
		}
	}
	if got := shortDuration(0); got != "off" {
		t.Errorf("shortDuration(0) = %q", got)
	}
}
