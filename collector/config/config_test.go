package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/llmtap/llmtap/collector/limits"
)

// Every secret in testdata and in testEnv contains this, so one check
// finds a leak of any of them.
const secretMark = "s3cret"

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

var testEnv = mapEnv(map[string]string{
	"LLMTAP_TEST_PORT":      "7000",
	"LLMTAP_TEST_TOKEN":     "s3cret-env",
	"LLMTAP_TEST_EMPTY":     "",
	"LLMTAP_TEST_MULTILINE": "s3cret\nline",
})

// Each bad file with the substrings its error must contain, in the
// manner of Prometheus's config tests. Every error must also name the
// file, fit on one line, match its sentinel, and repeat no secret.
var badFiles = []struct {
	file string
	is   error
	want []string
}{
	{"does-not-exist.yaml", fs.ErrNotExist, []string{"no such file"}},

	// Malformed files.
	{"syntax.bad.yaml", ErrParse, []string{"line 3:", "did not find expected key"}},
	{"unknown_key.bad.yaml", ErrParse, []string{"line 3: field listn not found in type config.Config"}},
	{"unknown_nested_key.bad.yaml", ErrParse, []string{"line 4: field flush_intervall not found in type config.ClickHouse"}},
	{"unknown_secret_key.bad.yaml", ErrParse, []string{"line 2: field passwrd not found in type config.Redis"}},
	{"duration.bad.yaml", ErrParse, []string{`line 4: clickhouse.flush_interval: invalid duration "1 sec"`}},
	{"duration_missing_unit.bad.yaml", ErrParse, []string{`line 1: shutdown_timeout: invalid duration "15"`}},
	{"duration_not_scalar.bad.yaml", ErrParse, []string{"line 2: clickhouse.dial_timeout: a duration must be a single value"}},
	{"size.bad.yaml", ErrParse, []string{`line 2: max_body_bytes: invalid size "16MBs"`, "KiB, MiB"}},
	{"size_ambiguous_unit.bad.yaml", ErrParse, []string{`line 2: clickhouse.spool_max_bytes: invalid size "1G"`}},
	{"size_fraction.bad.yaml", ErrParse, []string{`line 1: max_body_bytes: invalid size "1.5MiB"`, "whole number"}},
	{"size_overflow.bad.yaml", ErrParse, []string{`line 2: clickhouse.spool_max_bytes: invalid size "9000000TiB": too large`}},
	{"size_not_scalar.bad.yaml", ErrParse, []string{"line 1: max_body_bytes: a size must be a single value"}},
	{"wrong_type.bad.yaml", ErrParse, []string{"line 3: cannot unmarshal !!str `lots` into int"}},
	{"secret_not_scalar.bad.yaml", ErrParse, []string{"line 2: redis.password: a secret must be a single string value"}},
	{"duplicate_key.bad.yaml", ErrParse, []string{`line 3: mapping key "listen" already defined at line 2`}},
	{"two_documents.bad.yaml", ErrParse, []string{"line 2: a second YAML document"}},
	{"not_a_mapping.bad.yaml", ErrParse, []string{"line 1: cannot unmarshal !!seq into config.Config"}},

	// Environment substitution.
	{"unset_env.bad.yaml", ErrUnsetVar, []string{"line 4: environment variable not set: LLMTAP_TEST_UNSET", "${LLMTAP_TEST_UNSET:-default}"}},
	{"env_unterminated.bad.yaml", ErrParse, []string{"line 3: ${ without a closing }"}},
	{"env_bad_name.bad.yaml", ErrParse, []string{`line 1: ${1PORT}: "1PORT" is not a variable name`}},
	{"env_newline.bad.yaml", ErrParse, []string{"line 3: the value of LLMTAP_TEST_MULTILINE contains a line break"}},

	// Validation: one file per rule.
	{"listen.bad.yaml", ErrInvalid, []string{`listen: "7480" is not host:port`}},
	{"listen_port.bad.yaml", ErrInvalid, []string{`listen: ":http-alt": the port must be a number from 0 to 65535`}},
	{"ingest_token.bad.yaml", ErrInvalid, []string{"ingest_token: must not contain whitespace or control characters (value not shown)"}},
	{"admin_token.bad.yaml", ErrInvalid, []string{"admin_token: must not contain whitespace"}},
	{"max_body_bytes.bad.yaml", ErrInvalid, []string{"max_body_bytes: 0B must be greater than 0"}},
	{"queue_max_bytes.bad.yaml", ErrInvalid, []string{"clickhouse.queue_max_bytes: 48MiB is smaller than twice max_body_bytes (64MiB)"}},
	{"queue_wait.bad.yaml", ErrInvalid, []string{"clickhouse.queue_wait: 10s is longer than 4s"}},
	{"otel.bad.yaml", ErrInvalid, []string{`otel.protocol: "thrift" is not one of http/protobuf, grpc`, `otel.endpoint: "collector:4318": want http://host:port or https://host:port`, "otel.sampling_ratio: 1.5 is not from 0 to 1"}},
	{"redaction.bad.yaml", ErrInvalid, []string{`redaction: routes.support.pii: unknown kind "mail", want email, phone, card, iban, ip`}},
	{"redaction_regex.bad.yaml", ErrInvalid, []string{"redaction: patterns[0].regex: error parsing regexp"}},
	{"pricing.bad.yaml", ErrInvalid, []string{"line 3: pricing.models[0].output: is required", `line 10: pricing.routes["self-hosted"][0].input: -1 is not a price`, `pricing.aliases["my-deployment"]`}},
	{"pricing_unknown_key.bad.yaml", ErrParse, []string{"line 5", `unknown key "outptu"`}},
	{"tokens_encoding.bad.yaml", ErrInvalid, []string{`tokens.encodings[""]: an empty model prefix would match every model`, `tokens.encodings["llama"]: "llama3_bpe" is not an encoding: want o200k_base or cl100k_base`}},
	{"shutdown_timeout.bad.yaml", ErrInvalid, []string{"shutdown_timeout: 0s must be greater than 0"}},
	{"log_level.bad.yaml", ErrInvalid, []string{`log.level: "verbose" is not one of debug, info, warn, error`}},
	{"log_format.bad.yaml", ErrInvalid, []string{`log.format: "logfmt" is not one of text, json`}},
	{"clickhouse_addr.bad.yaml", ErrInvalid, []string{`clickhouse.addr: ":9000" has no host`}},
	{"clickhouse_addr_port.bad.yaml", ErrInvalid, []string{`clickhouse.addr: "clickhouse:0": the port must be a number from 1 to 65535`}},
	{"clickhouse_database.bad.yaml", ErrInvalid, []string{`clickhouse.database: "llmtap; DROP TABLE x" is not a plain identifier`}},
	{"dial_timeout.bad.yaml", ErrInvalid, []string{"clickhouse.dial_timeout: -1s must be greater than 0"}},
	{"max_open_conns.bad.yaml", ErrInvalid, []string{"clickhouse.max_open_conns: 0 must be at least 1"}},
	{"batch_size_zero.bad.yaml", ErrInvalid, []string{"clickhouse.batch_size: 0 is out of range 1..1000000"}},
	{"batch_size_large.bad.yaml", ErrInvalid, []string{"clickhouse.batch_size: 1000001 is out of range 1..1000000"}},
	{"queue_size.bad.yaml", ErrInvalid, []string{"clickhouse.queue_size: 4999 is smaller than clickhouse.batch_size (5000)"}},
	{"flush_interval.bad.yaml", ErrInvalid, []string{"clickhouse.flush_interval: 0s must be greater than 0"}},
	{"retention.bad.yaml", ErrInvalid, []string{"clickhouse.retention: -24h must not be negative"}},
	{"body_retention_negative.bad.yaml", ErrInvalid, []string{"clickhouse.body_retention: -1h must not be negative"}},
	{"body_retention.bad.yaml", ErrInvalid, []string{"clickhouse.body_retention: 168h is longer than clickhouse.retention (24h)", "or 0 for the same as retention"}},
	{"spool_max_bytes.bad.yaml", ErrInvalid, []string{"clickhouse.spool_max_bytes: 0B must be greater than 0"}},
	{"clickhouse_cluster.bad.yaml", ErrInvalid, []string{`clickhouse.cluster: "prod-eu" is not a plain identifier (letters, digits and _, not starting with a digit): it goes unquoted into ON CLUSTER`}},
	{"redis_addr.bad.yaml", ErrInvalid, []string{`redis.addr: "localhost" is not host:port`}},
	{"redis_addr_and_addrs.bad.yaml", ErrInvalid, []string{`redis.addrs: set together with redis.addr ("redis:6379")`, "not both"}},
	{"redis_addrs.bad.yaml", ErrInvalid, []string{`redis.addrs[1]: "redis-1" is not host:port`}},
	{"redis_addrs_not_list.bad.yaml", ErrParse, []string{"line 2: cannot unmarshal !!str", "into []string"}},
	{"redis_master_name.bad.yaml", ErrInvalid, []string{`redis.master_name: "mymaster" needs the Sentinels' addresses in redis.addrs`}},
	{"redis_cluster_db.bad.yaml", ErrInvalid, []string{"redis.db: 2: a Redis Cluster has only database 0"}},
	{"redis_sentinel_password.bad.yaml", ErrInvalid, []string{"redis.sentinel_password: is set but redis.master_name is not"}},
	{"redis_db.bad.yaml", ErrInvalid, []string{"redis.db: 16 is out of range 0..15"}},
	{"redis_db_negative.bad.yaml", ErrInvalid, []string{"redis.db: -1 is out of range 0..15"}},
	{"redis_timeout.bad.yaml", ErrInvalid, []string{"redis.timeout: 0s must be greater than 0"}},
	{"limits_period.bad.yaml", ErrParse, []string{`line 4:`, `period "1 minute": want a duration such as 1s, 1m or 24h`}},
	{"limits_tenant_name.bad.yaml", ErrInvalid, []string{`limits.tenants: tenant name "team a": want 1 to 128 bytes of letters, digits and - _ . : @ + =`}},
	{"limits_policy.bad.yaml", ErrInvalid, []string{
		`limits.default.requests.limit: 0: want at least 1`,
		`limits.tenants.acme.failure_mode: "maybe": want open or closed`,
		`limits.tenants.acme.routes.chat.tokens.count: "input": want total or output`,
		`limits.tenants.acme.routes.chat.routes: routes cannot be nested in a route`,
		`limits.default_reservation: 0: want at least 1`,
	}},
	{"max_series.bad.yaml", ErrInvalid, []string{"metrics.max_series: 0 must be at least 1"}},
	{"several.bad.yaml", ErrInvalid, []string{
		`invalid configuration: listen: "nowhere" is not host:port`,
		"; clickhouse.batch_size: 0 is out of range",
		"; redis.db: 99 is out of range",
	}},
}

func TestLoadBad(t *testing.T) {
	for _, tt := range badFiles {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			c, err := Load(path, testEnv)
			if err == nil {
				t.Fatalf("Load = %+v, want an error", c)
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{path}, tt.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q\ndoes not contain %q", msg, w)
				}
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(err, %v) = false", tt.is)
			}
			if strings.Contains(msg, secretMark) {
				t.Errorf("error repeats a secret: %q", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
		})
	}
}

// TestBadFilesListed keeps testdata and the table in step: a bad file
// without an expected message would test nothing.
func TestBadFilesListed(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, tt := range badFiles {
		listed[tt.file] = true
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is not in badFiles", f)
		}
	}
}

func TestLoadGood(t *testing.T) {
	tests := []struct {
		file string
		want func(c *Config)
	}{
		{"empty.good.yaml", func(c *Config) {}},
		{"null_sections.good.yaml", func(c *Config) {}},
		{"minimal.good.yaml", func(c *Config) { c.Listen = "127.0.0.1:8080" }},
		{"full.good.yaml", func(c *Config) {
			*c = Config{
				Listen:       "0.0.0.0:9480",
				IngestToken:  NewSecret("s3cret-ingest"),
				AdminToken:   NewSecret("s3cret-admin"),
				MaxBodyBytes: 32 << 20, MaxIngestRequests: 16,
				ShutdownTimeout: Duration(30 * time.Second),
				Log:             Log{Level: "debug", Format: "json"},
				ClickHouse: ClickHouse{
					Addr:          "clickhouse.internal:9440",
					Database:      "llmtap_prod",
					Username:      "llmtap",
					Password:      NewSecret("s3cret-ch"),
					DialTimeout:   Duration(2 * time.Second),
					MaxOpenConns:  8,
					BatchSize:     10000,
					FlushInterval: Duration(500 * time.Millisecond),
					QueueSize:     200000, QueueMaxBytes: 256 << 20,
					QueueWait:     Duration(250 * time.Millisecond),
					Retention:     Duration(90 * 24 * time.Hour),
					BodyRetention: 0,
					SpoolDir:      "/var/lib/llmtap/spool",
					SpoolMaxBytes: 10_000_000_000,
					Cluster:       "main",
				},
				// A number is read as the text that was written.
				Redis: Redis{
					Addrs:      []string{"sentinel-0.internal:26379", "sentinel-1.internal:26379"},
					MasterName: "llmtap", Password: NewSecret("12345"), SentinelPassword: NewSecret("s3cret-sentinel"),
					DB: 3, Timeout: Duration(20 * time.Millisecond),
				},
				Limits: Limits{
					DefaultReservation: 512,
					ReservationTimeout: Duration(5 * time.Minute),
					PolicyCache:        Duration(2 * time.Second),
					Default: &limits.Policy{
						Requests: &limits.RequestLimit{Limit: 600, Period: limits.Period(time.Minute), Burst: 100},
						Tokens:   &limits.TokenLimit{Limit: 200000, Period: limits.Period(time.Minute)},
					},
					Tenants: map[string]*limits.Policy{"acme": {
						Tokens:      &limits.TokenLimit{Limit: 1000, Period: limits.Period(time.Minute), Count: limits.CountOutput},
						FailureMode: limits.FailClosed,
						Routes: map[string]*limits.Policy{"tts": {
							Requests: &limits.RequestLimit{Limit: 10, Period: limits.Period(time.Second)},
						}},
					}},
				},
				Metrics: Metrics{MaxSeries: 250},
				Redaction: Redaction{Secrets: true, PII: []string{"email"},
					Routes:   map[string]RedactionScope{"support": {PII: []string{"phone"}}},
					Tenants:  map[string]RedactionScope{"bank": {PII: []string{"card", "iban"}}},
					Patterns: []RedactionPattern{{Name: "employee_id", Regex: "EMP-[0-9]{6}"}}},
				OTel: OTel{Endpoint: "https://otel.internal:4318", Protocol: "http/protobuf", Headers: map[string]Secret{"Authorization": NewSecret("Bearer otel-s3cret")},
					SamplingRatio: 0.25, Timeout: Duration(5 * time.Second), QueueSize: 1000},
			}
		}},
		{"redis_cluster.good.yaml", func(c *Config) {
			c.Redis.Addr = ""
			c.Redis.Addrs = []string{"redis-0.redis:6379", "redis-1.redis:6379", "redis-2.redis:6379"}
		}},
		{"redis_sentinel.good.yaml", func(c *Config) {
			c.Redis.Addr = ""
			c.Redis.Addrs = []string{"sentinel:26379"}
			c.Redis.MasterName = "mymaster"
			c.Redis.Password = NewSecret("s3cret-redis")
			c.Redis.SentinelPassword = NewSecret("s3cret-sentinel")
			c.Redis.DB = 2
		}},
		{"env.good.yaml", func(c *Config) {
			c.Listen = "0.0.0.0:7000"
			c.IngestToken = NewSecret("s3cret-env")
			c.ClickHouse.Addr = "clickhouse:9000"
			c.ClickHouse.Password = NewSecret("pa$word!")
			c.ClickHouse.SpoolDir = "/tmp/$spool"
			c.Redis.Password = NewSecret("cost$5")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := Load(filepath.Join("testdata", tt.file), testEnv)
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			// Secrets print redacted, so compare them on their own.
			for _, p := range [][2]Secret{
				{got.IngestToken, want.IngestToken}, {got.AdminToken, want.AdminToken},
				{got.ClickHouse.Password, want.ClickHouse.Password}, {got.Redis.Password, want.Redis.Password},
				{got.Redis.SentinelPassword, want.Redis.SentinelPassword},
			} {
				if p[0].Reveal() != p[1].Reveal() {
					t.Errorf("secret %q, want %q", p[0].Reveal(), p[1].Reveal())
				}
			}
		})
	}
}

// TestLoadOSEnv: a nil env reads the process environment.
func TestLoadOSEnv(t *testing.T) {
	t.Setenv("LLMTAP_TEST_OS_PORT", "7999")
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("listen: \":${LLMTAP_TEST_OS_PORT}\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":7999" {
		t.Errorf("listen = %q", c.Listen)
	}
}

// TestExample: the shipped example loads, states every default, and
// documents every option.
func TestExample(t *testing.T) {
	c, err := Load("example.yaml", mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("example.yaml differs from Default:\n%+v\n%+v", c, Default())
	}

	b, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	got := keyPaths(root.Content[0], "")
	want := fieldPaths(reflect.TypeOf(Config{}), "")
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("example.yaml keys\n%v\nwant every option\n%v", got, want)
	}
}

// keyPaths lists the dotted paths of the leaf keys of a mapping.
func keyPaths(n *yaml.Node, prefix string) []string {
	var paths []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind == yaml.MappingNode {
			paths = append(paths, keyPaths(v, prefix+k.Value+".")...)
		} else {
			paths = append(paths, prefix+k.Value)
		}
	}
	return paths
}

// fieldPaths lists the dotted yaml paths of the leaf fields of a struct.
func fieldPaths(t reflect.Type, prefix string) []string {
	var paths []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := prefix + f.Tag.Get("yaml")
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() &&
			f.Type != reflect.TypeOf(Secret{}) {
			paths = append(paths, fieldPaths(f.Type, name+".")...)
		} else {
			paths = append(paths, name)
		}
	}
	return paths
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(os.TempDir(), "llmtap-spool"); c.ClickHouse.SpoolDir != want {
		t.Errorf("spool_dir = %q, want %q", c.ClickHouse.SpoolDir, want)
	}
}

// TestValidateAfterChanges: the caller sets fields from flags and
// validates again.
func TestValidateAfterChanges(t *testing.T) {
	c := Default()
	c.ClickHouse.Password = NewSecret("s3cret pass") // passwords may hold spaces
	c.Listen = ":0"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.ClickHouse.QueueSize = 10
	err := c.Validate()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "clickhouse.queue_size: 10 is smaller") {
		t.Errorf("Validate = %v", err)
	}
}

func TestEffectiveBodyRetention(t *testing.T) {
	ch := Default().ClickHouse
	if got := ch.EffectiveBodyRetention(); got != Duration(168*time.Hour) {
		t.Errorf("default = %s", got)
	}
	ch.BodyRetention = 0
	if got := ch.EffectiveBodyRetention(); got != Duration(720*time.Hour) {
		t.Errorf("0 = %s, want retention", got)
	}
}

func TestSlogLevel(t *testing.T) {
	for level, want := range map[string]string{"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR", "bogus": "INFO"} {
		l := Log{Level: level}
		if got := l.SlogLevel().String(); got != want {
			t.Errorf("%s: %s, want %s", level, got, want)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	c := Default()
	err := c.ApplyEnv(mapEnv(map[string]string{
		"LLMTAP_LISTEN":              "127.0.0.1:9999",
		"LLMTAP_INGEST_TOKEN":        "s3cret-i",
		"LLMTAP_ADMIN_TOKEN":         "s3cret-a",
		"LLMTAP_CLICKHOUSE_ADDR":     "ch:9000",
		"LLMTAP_CLICKHOUSE_PASSWORD": "s3cret c",
		"LLMTAP_REDIS_ADDR":          "redis:6379",
		"LLMTAP_REDIS_PASSWORD":      "s3cret-r",
		"LLMTAP_LOG_LEVEL":           "DEBUG",
		"LLMTAP_UNKNOWN":             "ignored",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Listen = "127.0.0.1:9999"
	want.IngestToken = NewSecret("s3cret-i")
	want.AdminToken = NewSecret("s3cret-a")
	want.ClickHouse.Addr = "ch:9000"
	want.ClickHouse.Password = NewSecret("s3cret c")
	want.Redis.Addr = "redis:6379"
	want.Redis.Password = NewSecret("s3cret-r")
	want.Log.Level = "debug"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

// TestApplyEnvEmpty: an empty variable changes nothing, so a template's
// "LLMTAP_INGEST_TOKEN=" cannot turn authentication off.
func TestApplyEnvEmpty(t *testing.T) {
	c := Default()
	c.IngestToken = NewSecret("s3cret-file")
	env := map[string]string{}
	for _, o := range overrides {
		env[o.name] = ""
	}
	if err := c.ApplyEnv(mapEnv(env)); err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.IngestToken = NewSecret("s3cret-file")
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v", c)
	}
}

func TestApplyEnvInvalid(t *testing.T) {
	c := Default()
	err := c.ApplyEnv(mapEnv(map[string]string{
		"LLMTAP_LISTEN":          "7480",
		"LLMTAP_INGEST_TOKEN":    "s3cret token\n",
		"LLMTAP_ADMIN_TOKEN":     "s3cret\ttoken",
		"LLMTAP_CLICKHOUSE_ADDR": "clickhouse",
		"LLMTAP_REDIS_ADDR":      ":6379",
		"LLMTAP_LOG_LEVEL":       "Verbose",
	}))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("ApplyEnv = %v, want ErrInvalid", err)
	}
	msg := err.Error()
	for _, w := range []string{
		`LLMTAP_LISTEN: "7480" is not host:port`,
		"LLMTAP_INGEST_TOKEN: must not contain whitespace",
		"LLMTAP_ADMIN_TOKEN: must not contain whitespace",
		`LLMTAP_CLICKHOUSE_ADDR: "clickhouse" is not host:port`,
		`LLMTAP_REDIS_ADDR: ":6379" has no host`,
		`LLMTAP_LOG_LEVEL: "verbose" is not one of`,
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q\ndoes not contain %q", msg, w)
		}
	}
	if strings.Contains(msg, secretMark) {
		t.Errorf("error repeats a secret: %q", msg)
	}
}

func TestApplyEnvOS(t *testing.T) {
	t.Setenv("LLMTAP_REDIS_ADDR", "redis.os:6379")
	c := Default()
	if err := c.ApplyEnv(nil); err != nil {
		t.Fatal(err)
	}
	if c.Redis.Addr != "redis.os:6379" {
		t.Errorf("redis.addr = %q", c.Redis.Addr)
	}
}

// TestApplyEnvRedisAddr: LLMTAP_REDIS_ADDR replaces the file's addr and
// addrs, with one address or a comma-separated list.
func TestApplyEnvRedisAddr(t *testing.T) {
	tests := []struct {
		desc       string
		file       Redis // addresses and master name from the file
		env        string
		wantAddr   string
		wantAddrs  []string
		wantErrors []string
	}{
		{desc: "one over addr", file: Redis{Addr: "a:1"}, env: "redis:6379", wantAddr: "redis:6379"},
		{desc: "one over a cluster's nodes", file: Redis{Addrs: []string{"a:1", "b:2"}}, env: "redis:6379", wantAddr: "redis:6379"},
		{desc: "a list over addr: a Redis Cluster", file: Redis{Addr: "a:1"}, env: "r0:6379, r1:6379,,r2:6379",
			wantAddrs: []string{"r0:6379", "r1:6379", "r2:6379"}},
		{desc: "one Sentinel with a master name", file: Redis{Addrs: []string{"s0:26379", "s1:26379"}, MasterName: "m"}, env: "sentinel:26379",
			wantAddrs: []string{"sentinel:26379"}},
		{desc: "a bad entry", file: Redis{Addr: "a:1"}, env: "r0:6379,r1", wantAddrs: []string{"r0:6379", "r1"},
			wantErrors: []string{`LLMTAP_REDIS_ADDR: "r1" is not host:port`}},
		{desc: "no address", file: Redis{Addr: "a:1"}, env: " , ", wantErrors: []string{`LLMTAP_REDIS_ADDR: " , " holds no host:port`}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c := Default()
			c.Redis.Addr, c.Redis.Addrs, c.Redis.MasterName = tt.file.Addr, tt.file.Addrs, tt.file.MasterName
			err := c.ApplyEnv(mapEnv(map[string]string{"LLMTAP_REDIS_ADDR": tt.env}))
			if c.Redis.Addr != tt.wantAddr || !reflect.DeepEqual(c.Redis.Addrs, tt.wantAddrs) {
				t.Errorf("addr %q, addrs %q; want %q, %q", c.Redis.Addr, c.Redis.Addrs, tt.wantAddr, tt.wantAddrs)
			}
			if len(tt.wantErrors) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Validate(); err != nil {
					t.Errorf("Validate after ApplyEnv: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ApplyEnv = %v, want ErrInvalid", err)
			}
			for _, w := range tt.wantErrors {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestRedisAddrDefault: redis.addr gets its default only when addrs is
// empty too, whichever way the configuration was made.
func TestRedisAddrDefault(t *testing.T) {
	if got := Default().Redis; got.Addr != "127.0.0.1:6379" || got.Addrs != nil {
		t.Errorf("Default: addr %q, addrs %q", got.Addr, got.Addrs)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("redis:\n  addr: \"\"\n  addrs: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.Addr != "127.0.0.1:6379" || c.Redis.Addrs != nil {
		t.Errorf("empty addr and addrs: addr %q, addrs %#v", c.Redis.Addr, c.Redis.Addrs)
	}
}

func TestExpand(t *testing.T) {
	env := mapEnv(map[string]string{"A": "1", "E": ""})
	tests := []struct{ in, want string }{
		{"x: ${A}\n", "x: 1\n"},
		{"x: ${A}${A}$$${A}\n", "x: 11$1\n"},
		{"x: ${B:-two words}\n", "x: two words\n"},
		{"x: ${E:-d}|${E}|${E:-}\n", "x: d||\n"},
		{"x: $$ $A $ ${A:-9}\n", "x: $ $A $ 1\n"},
		{"x: $$$$\n", "x: $$\n"},
		{"x: a$", "x: a$"},
		{"  # ${B} $$\nx: $${A}", "  # ${B} $$\nx: ${A}"},
		{"x: 1 # ${A}\n", "x: 1 # 1\n"},
	}
	for _, tt := range tests {
		got, err := expand([]byte(tt.in), env)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestConfigurationDocListsEveryOption: docs/configuration.md has a row
// for every option of the file.
func TestConfigurationDocListsEveryOption(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range fieldPaths(reflect.TypeOf(Config{}), "") {
		if !strings.Contains(string(doc), "| `"+p+"` |") {
			t.Errorf("docs/configuration.md has no row for the collector option %s", p)
		}
	}
}

func TestCheckTrust(t *testing.T) {
	tests := []struct {
		desc           string
		ingest         string
		trustedNetwork bool
		wantErr        bool
	}{
		{desc: "no token, not trusted: refused", wantErr: true},
		{desc: "no token on a trusted network", trustedNetwork: true},
		{desc: "an ingest token", ingest: "s3cret"},
	}
	for _, tt := range tests {
		c := Default()
		c.IngestToken = NewSecret(tt.ingest)
		c.TrustedNetwork = tt.trustedNetwork
		err := c.CheckTrust()
		if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrNoTokens)) {
			t.Errorf("%s: %v", tt.desc, err)
		}
	}
}

func TestTokensOfOneScopeEach(t *testing.T) {
	for _, tt := range []struct{ ingest, read, admin, want string }{
		{"a", "a", "", "read_token: the same as ingest_token"},
		{"a", "", "a", "admin_token: the same as ingest_token"},
		{"a", "b", "b", "admin_token: the same as read_token"},
	} {
		c := Default()
		c.IngestToken, c.ReadToken, c.AdminToken = NewSecret(tt.ingest), NewSecret(tt.read), NewSecret(tt.admin)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), `"a"`) {
			t.Errorf("tokens %q %q %q: %v, want %q and no token in the message", tt.ingest, tt.read, tt.admin, err, tt.want)
		}
	}
	c := Default()
	c.IngestToken, c.ReadToken, c.AdminToken = NewSecret("a"), NewSecret("b"), NewSecret("c")
	if err := c.Validate(); err != nil {
		t.Errorf("three tokens: %v", err)
	}
}
