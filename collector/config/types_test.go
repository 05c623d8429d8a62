package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"100B", 100},
		{"512KiB", 512 << 10},
		{"16MiB", 16 << 20},
		{"16mib", 16 << 20},
		{"16 MiB", 16 << 20},
		{" 2GiB ", 2 << 30},
		{"1TiB", 1 << 40},
		{"1kB", 1000},
		{"1KB", 1000},
		{"1MB", 1_000_000},
		{"1GB", 1_000_000_000},
		{"1gb", 1_000_000_000},
		{"3TB", 3_000_000_000_000},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5GiB", "1G", "1k", "16 mebibytes", "1e6", "9223372036854775808", "8388608TiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseSize(%q): error %q does not show the value", in, err)
		}
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1023, "1023B"},
		{1024, "1KiB"},
		{16 << 20, "16MiB"},
		{1 << 30, "1GiB"},
		{3 << 40, "3TiB"},
		{1000, "1kB"},
		{1_000_000, "1MB"},
		{1_000_000_000, "1GB"},
		{2_000_000_000_000, "2TB"},
		{1536, "1536B"},
		{2_048_000, "2000KiB"},
		{-5, "-5B"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		// String parses back to the same size.
		if tt.in >= 0 {
			if back, err := ParseSize(tt.in.String()); err != nil || back != tt.in {
				t.Errorf("ParseSize(%q) = %d, %v", tt.in.String(), back, err)
			}
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{500 * time.Millisecond, "500ms"},
		{15 * time.Second, "15s"},
		{time.Minute, "1m"},
		{90 * time.Second, "1m30s"},
		{720 * time.Hour, "720h"},
		{time.Hour + time.Second, "1h0m1s"},
		{time.Hour + time.Minute, "1h1m"},
		{-24 * time.Hour, "-24h"},
	}
	for _, tt := range tests {
		if got := Duration(tt.in).String(); got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestFlagValues: Duration and Size bind to flags through Set.
func TestFlagValues(t *testing.T) {
	var d Duration
	if err := d.Set("250ms"); err != nil || d != Duration(250*time.Millisecond) {
		t.Errorf("Duration.Set = %v, %v", d, err)
	}
	if err := d.Set("soon"); err == nil || !strings.Contains(err.Error(), `"soon"`) {
		t.Errorf("Duration.Set(soon) = %v", err)
	}
	var s Size
	if err := s.Set("2MiB"); err != nil || s != 2<<20 {
		t.Errorf("Size.Set = %v, %v", s, err)
	}
	if err := s.Set("big"); err == nil {
		t.Error("Size.Set(big) = nil")
	}
	if s != 2<<20 {
		t.Errorf("a failed Set changed the size to %v", s)
	}
}

// TestMarshal: Duration and Size encode to the text they are written as.
func TestMarshal(t *testing.T) {
	v := struct {
		D Duration `json:"d" yaml:"d"`
		S Size     `json:"s" yaml:"s"`
	}{Duration(90 * time.Second), 16 << 20}
	j, err := json.Marshal(v)
	if err != nil || string(j) != `{"d":"1m30s","s":"16MiB"}` {
		t.Errorf("json = %s, %v", j, err)
	}
	y, err := yaml.Marshal(v)
	if err != nil || string(y) != "d: 1m30s\ns: 16MiB\n" {
		t.Errorf("yaml = %q, %v", y, err)
	}
}

func TestSecretFormat(t *testing.T) {
	set, empty := NewSecret("s3cret-value"), Secret{}
	if set.Reveal() != "s3cret-value" || empty.Reveal() != "" {
		t.Fatal("Reveal does not return the value")
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-10v"}
	for _, verb := range verbs {
		for _, arg := range []any{set, &set} {
			got := fmt.Sprintf(verb, arg)
			if strings.Contains(got, secretMark) || !strings.Contains(got, redacted) {
				t.Errorf("Sprintf(%s, %T) = %q", verb, arg, got)
			}
		}
		want := ""
		if verb == "%q" {
			want = `""`
		}
		if got := fmt.Sprintf(verb, empty); got != want {
			t.Errorf("Sprintf(%s, empty) = %q, want %q", verb, got, want)
		}
	}
	if set.String() != redacted || set.GoString() != redacted || empty.String() != "" || empty.GoString() != "" {
		t.Error("String or GoString shows more than [redacted]")
	}
	if got := fmt.Sprint(set); got != redacted {
		t.Errorf("Sprint = %q", got)
	}
	if got := fmt.Sprintf("%q", set); got != `"[redacted]"` {
		t.Errorf("%%q = %s", got)
	}
}

func TestSecretEncode(t *testing.T) {
	for _, tt := range []struct {
		s                      Secret
		text, json, yaml, slog string
	}{
		{NewSecret("s3cret-value"), redacted, `"[redacted]"`, "'[redacted]'\n", redacted},
		{Secret{}, "", `""`, "\"\"\n", ""},
	} {
		if b, err := tt.s.MarshalText(); err != nil || string(b) != tt.text {
			t.Errorf("MarshalText = %q, %v", b, err)
		}
		if b, err := json.Marshal(tt.s); err != nil || string(b) != tt.json {
			t.Errorf("json.Marshal = %s, %v", b, err)
		}
		if b, err := yaml.Marshal(tt.s); err != nil || string(b) != tt.yaml {
			t.Errorf("yaml.Marshal = %q, %v", b, err)
		}
		if v := tt.s.LogValue(); v.String() != tt.slog {
			t.Errorf("LogValue = %q", v)
		}
	}
}

// secretConfig has every secret set, each containing secretMark.
func secretConfig() *Config {
	c := Default()
	c.IngestToken = NewSecret("s3cret-ingest")
	c.AdminToken = NewSecret("s3cret-admin")
	c.ClickHouse.Password = NewSecret("s3cret-ch")
	c.Redis.Password = NewSecret("s3cret-redis")
	return c
}

// TestConfigRedacted: no way of printing, encoding or logging a whole
// configuration shows a secret.
func TestConfigRedacted(t *testing.T) {
	c := secretConfig()
	outputs := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		outputs["Sprintf "+verb+" *Config"] = fmt.Sprintf(verb, c)
		outputs["Sprintf "+verb+" Config"] = fmt.Sprintf(verb, *c)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(j)
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs["yaml"] = string(y)
	for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
		"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"slog json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var b bytes.Buffer
		log := slog.New(newHandler(&b))
		log.Info("effective config", "config", c) // LogValuer
		log.Info("value", "config", *c)           // not a LogValuer: fmt or json
		log.Info("secret", "token", c.IngestToken, "group", slog.GroupValue(slog.Any("p", c.Redis.Password)))
		outputs[name] = b.String()
	}
	for name, out := range outputs {
		if strings.Contains(out, secretMark) {
			t.Errorf("%s shows a secret:\n%s", name, out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s has no %s:\n%s", name, redacted, out)
		}
	}
}

// TestLogValue: the effective-config line holds every field, by its YAML
// path.
func TestLogValue(t *testing.T) {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("effective config", "config", secretConfig())
	line := b.String()
	for _, want := range []string{
		"config.listen=127.0.0.1:7480", "config.ingest_token=[redacted]", `config.read_token=""`, "config.admin_token=[redacted]", "config.trusted_network=false",
		"config.max_body_bytes=16MiB", "config.shutdown_timeout=15s",
		"config.log.level=info", "config.log.format=text",
		"config.clickhouse.addr=127.0.0.1:9000", "config.clickhouse.database=llmtap",
		"config.clickhouse.username=default", "config.clickhouse.password=[redacted]",
		"config.clickhouse.dial_timeout=5s", "config.clickhouse.max_open_conns=4",
		"config.clickhouse.batch_size=2000", "config.clickhouse.flush_interval=1s",
		"config.clickhouse.queue_size=5000", "config.clickhouse.retention=720h",
		"config.clickhouse.body_retention=168h", "config.clickhouse.spool_dir=",
		"config.clickhouse.spool_max_bytes=1GiB", `config.clickhouse.cluster=""`,
		"config.redis.addr=127.0.0.1:6379", "config.redis.password=[redacted]", "config.redis.db=0",
		"config.metrics.max_series=1000",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("log line has no %q:\n%s", want, line)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("effective config is not one line:\n%s", line)
	}
	// An unset secret is visibly unset.
	b.Reset()
	slog.New(slog.NewTextHandler(&b, nil)).Info("effective config", "config", Default())
	if !strings.Contains(b.String(), `config.ingest_token=""`) {
		t.Errorf("unset token not shown as empty:\n%s", b.String())
	}
}
