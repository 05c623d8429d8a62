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
		{desc: "18.16 on a cluster: replicated and Distributed tables, ON CLUSTER, no TTL", golden: "plan_18.16_cluster.sql",
			v: Version{18, 16, 1}, s: Schema{Cluster: "llmtap_cluster", Retention: 90 * day, BodyRetention: 7 * day}},
		{desc: "25.3 on a cluster: codecs, index and TTLs on requests_local only", golden: "plan_25.3_cluster.sql",
			v: Version{25, 3, 1}, s: Schema{Database: "obs", Cluster: "main", Retention: 90 * day, BodyRetention: 7 * day}},
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
	for _, bad := range []string{"CODEC", "TTL", "LowCardinality", "INDEX", "DateTime64", " Map("} {
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

// TestPlanCluster checks the shape of the cluster variant on both sides
// of the version gate: every statement ON CLUSTER, the rows in a
// replicated local table with everything the server offers, requests a
// Distributed table with types only, sharded by request id.
func TestPlanCluster(t *testing.T) {
	s := Schema{Database: "obs", Cluster: "main", Retention: 90 * day, BodyRetention: 7 * day}
	for _, v := range []Version{{18, 16, 1}, {25, 3, 1}} {
		f := FeaturesOf(v)
		plan := Plan(v, s)
		var all []string
		all = append(all, bootstrap(s)...)
		for _, m := range plan {
			all = append(all, m.Statements...)
		}
		for _, st := range all {
			if !strings.Contains(st, " ON CLUSTER main") {
				t.Errorf("%s: statement without ON CLUSTER:\n%s", v, st)
			}
		}
		if got := bootstrap(s)[1]; !strings.Contains(got, "ENGINE = ReplicatedMergeTree('/clickhouse/tables/obs/llmtap_migrations', '{shard}-{replica}')") {
			t.Errorf("%s: migrations table not replicated across the cluster:\n%s", v, got)
		}
		create := plan[0].Statements
		if len(create) != 3 {
			t.Fatalf("%s: migration 1 has %d statements, want database, local table, Distributed table", v, len(create))
		}
		local, dist := create[1], create[2]
		for _, want := range []string{
			"CREATE TABLE IF NOT EXISTS obs.requests_local ON CLUSTER main\n",
			"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/obs/requests_local', '{replica}', inserted_at)",
			"PARTITION BY toYYYYMM(start)", "ORDER BY " + sortKey,
		} {
			if !strings.Contains(local, want) {
				t.Errorf("%s: local table lacks %q:\n%s", v, want, local)
			}
		}
		if strings.Contains(local, "CODEC") != f.Codecs || strings.Contains(local, "bloom_filter") != f.SkipIndex ||
			strings.Contains(local, "LowCardinality") != f.LowCardinality {
			t.Errorf("%s: local table does not follow the version gate %+v:\n%s", v, f, local)
		}
		if !strings.HasPrefix(dist, "CREATE TABLE IF NOT EXISTS obs.requests ON CLUSTER main\n") ||
			!strings.HasSuffix(dist, "\nENGINE = Distributed(main, obs, requests_local, cityHash64(request_id))") {
			t.Errorf("%s: Distributed table:\n%s", v, dist)
		}
		for _, bad := range []string{"CODEC", "TTL", "INDEX", "PARTITION", "ORDER BY"} {
			if strings.Contains(dist, bad) {
				t.Errorf("%s: Distributed table has %s:\n%s", v, bad, dist)
			}
		}
		if strings.Contains(dist, "LowCardinality") != f.LowCardinality {
			t.Errorf("%s: Distributed column types differ from the local table's", v)
		}
		retention := plan[1].Statements
		if f.TTL != (len(retention) == 2) {
			t.Errorf("%s: %d retention statements with TTL %v", v, len(retention), f.TTL)
		}
		for _, st := range retention {
			if !strings.HasPrefix(st, "ALTER TABLE obs.requests_local ON CLUSTER main") {
				t.Errorf("%s: retention not on the local table:\n%s", v, st)
			}
		}
	}
}

// TestPlanSingleUnchanged: without a cluster nothing of the cluster
// variant shows.
func TestPlanSingleUnchanged(t *testing.T) {
	for _, v := range []Version{{18, 16, 1}, {25, 3, 1}} {
		got := renderPlan(v, Schema{Retention: 90 * day, BodyRetention: 7 * day})
		for _, bad := range []string{"ON CLUSTER", "Replicated", "Distributed", "requests_local", "cluster"} {
			if strings.Contains(got, bad) {
				t.Errorf("%s single-server plan contains %q", v, bad)
			}
		}
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
		want := Features{Codecs: tt.want, TTL: tt.want, LowCardinality: tt.want, SkipIndex: tt.want, IfNotExists: tt.want, AdaptiveGranularity: tt.want}
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
		{desc: "cluster", s: Schema{Cluster: "prod_2"}},
		{desc: "cluster with a dash", s: Schema{Cluster: "prod-eu"}, wantErr: `cluster name "prod-eu": use letters, digits and _ only`},
		{desc: "cluster with SQL", s: Schema{Cluster: "c ON CLUSTER x"}, wantErr: `cluster name "c ON CLUSTER x"`},
		{desc: "cluster starting with a digit", s: Schema{Cluster: "1c"}, wantErr: "cluster name"},
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
