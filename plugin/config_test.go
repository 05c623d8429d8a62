package llmtap

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		desc    string
		change  func(c *Config)
		wantErr string // substring; empty: valid
	}{
		{desc: "defaults", change: func(c *Config) {}},
		{desc: "recording off", change: func(c *Config) { c.CollectorURL = "" }},
		{desc: "https with path", change: func(c *Config) { c.CollectorURL = "https://c.example/base/" }},
		{desc: "relative url", change: func(c *Config) { c.CollectorURL = "collector:7480" }, wantErr: `collectorURL "collector:7480"`},
		{desc: "collectorCA without a certificate", change: func(c *Config) { c.CollectorCA = "not a PEM" }, wantErr: "collectorCA: no PEM certificate"},
		{desc: "a static tenant outside the id set", change: func(c *Config) { c.Tenant = "team a" }, wantErr: `tenant "team a": want 1 to 128 bytes`},
		{desc: "ftp url", change: func(c *Config) { c.CollectorURL = "ftp://c" }, wantErr: `collectorURL "ftp://c"`},
		{desc: "unparsable url", change: func(c *Config) { c.CollectorURL = "http://[::1" }, wantErr: `collectorURL "http://[::1"`},
		{desc: "negative request limit", change: func(c *Config) { c.MaxRequestBodyBytes = -1 }, wantErr: "maxRequestBodyBytes -1: must not be negative"},
		{desc: "negative response limit", change: func(c *Config) { c.MaxResponseBodyBytes = -5 }, wantErr: "maxResponseBodyBytes -5: must not be negative"},
		{desc: "negative writes", change: func(c *Config) { c.MaxWrites = -2 }, wantErr: "maxWrites -2"},
		{desc: "zero limits are fine", change: func(c *Config) { c.MaxRequestBodyBytes, c.MaxResponseBodyBytes, c.MaxWrites = 0, 0, 0 }},
		{desc: "zero queue", change: func(c *Config) { c.QueueSize = 0 }, wantErr: "queueSize 0: want at least 1"},
		{desc: "zero batch", change: func(c *Config) { c.BatchSize = 0 }, wantErr: "batchSize 0: want at least 1"},
		{desc: "unknown kind", change: func(c *Config) { c.CaptureBodies = []string{"json", "video"} }, wantErr: `captureBodies "video": unknown content kind`},
		{desc: "kinds any case", change: func(c *Config) { c.CaptureBodies = []string{" JSON", "Audio"} }},
		{desc: "bad interval", change: func(c *Config) { c.FlushInterval = "soon" }, wantErr: `flushInterval "soon"`},
		{desc: "negative timeout", change: func(c *Config) { c.SendTimeout = "-1s" }, wantErr: `sendTimeout "-1s"`},
		{desc: "empty timeout", change: func(c *Config) { c.SendTimeout = "" }, wantErr: `sendTimeout ""`},
		{desc: "limits on", change: func(c *Config) { c.Limits.Enabled = true }},
		{desc: "limits fail closed", change: func(c *Config) { c.Limits = LimitsConfig{Enabled: true, Timeout: "250ms", FailureMode: "Closed"} }},
		{desc: "limits without collector", change: func(c *Config) { c.CollectorURL, c.Limits.Enabled = "", true }, wantErr: "limits.enabled: limits are checked by the collector, so they need a collectorURL"},
		{desc: "limits off without collector", change: func(c *Config) { c.CollectorURL = "" }},
		{desc: "bad limits timeout", change: func(c *Config) { c.Limits.Enabled, c.Limits.Timeout = true, "fast" }, wantErr: `limits.timeout "fast": want a positive duration`},
		{desc: "zero limits timeout", change: func(c *Config) { c.Limits.Timeout = "0s" }, wantErr: `limits.timeout "0s"`},
		{desc: "bad limits timeout while off", change: func(c *Config) { c.Limits.Timeout = "1 sec" }, wantErr: `limits.timeout "1 sec"`},
		{desc: "bad failure mode", change: func(c *Config) { c.Limits.Enabled, c.Limits.FailureMode = true, "fail-open" }, wantErr: `limits.failureMode "fail-open": want open`},
		{desc: "empty failure mode", change: func(c *Config) { c.Limits.FailureMode = "" }, wantErr: `limits.failureMode ""`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c := CreateConfig()
			tt.change(c)
			s, err := c.validate("mw")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if s == nil {
					t.Fatal("no settings")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidatePrepares(t *testing.T) {
	c := CreateConfig()
	c.CollectorURL = "http://collector:7480/"
	c.MaxResponseBodyBytes = 11
	c.CaptureBodies = []string{"sse", "audio"}
	s, err := c.validate("my-route@file")
	if err != nil {
		t.Fatal(err)
	}
	if s.recordsURL != "http://collector:7480/v1/records" {
		t.Errorf("recordsURL %q", s.recordsURL)
	}
	if s.route != "my-route@file" {
		t.Errorf("route %q, want the middleware name", s.route)
	}
	if s.respHead != 5 || s.respTail != 6 {
		t.Errorf("head %d tail %d, want 5 and 6", s.respHead, s.respTail)
	}
	if s.captureKinds != kindSSE|kindAudio {
		t.Errorf("kinds %b", s.captureKinds)
	}
	if s.flushInterval != time.Second || s.sendTimeout != 5*time.Second {
		t.Errorf("durations %v %v", s.flushInterval, s.sendTimeout)
	}
	if s.checkURL != "" || s.checkTimeout != 100*time.Millisecond || s.failClosed {
		t.Errorf("limits off by default: check %q timeout %v closed %v", s.checkURL, s.checkTimeout, s.failClosed)
	}

	c.Limits = LimitsConfig{Enabled: true, Timeout: "250ms", FailureMode: " closed"}
	if s, err = c.validate("my-route@file"); err != nil {
		t.Fatal(err)
	}
	if s.checkURL != "http://collector:7480/v1/limits/check" || s.checkTimeout != 250*time.Millisecond || !s.failClosed {
		t.Errorf("limits: check %q timeout %v closed %v", s.checkURL, s.checkTimeout, s.failClosed)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	c := CreateConfig()
	c.MaxRequestBodyBytes = -1
	h, err := New(context.Background(), http.NotFoundHandler(), c, "mw")
	if err == nil || h != nil {
		t.Fatalf("New accepted a bad config: %v", err)
	}
}

func TestContentKind(t *testing.T) {
	tests := []struct {
		ct   string
		want int
	}{
		{"text/event-stream", kindSSE},
		{"text/event-stream; charset=utf-8", kindSSE},
		{"application/x-ndjson", kindNDJSON},
		{"application/json", kindJSON},
		{"Application/JSON; charset=UTF-8", kindJSON},
		{"application/problem+json", kindJSON},
		{"text/plain", kindText},
		{"audio/mpeg", kindAudio},
		{"audio/wav", kindAudio},
		{"application/octet-stream", kindOther},
		{"", kindOther},
	}
	for _, tt := range tests {
		if got := contentKind(tt.ct); got != tt.want {
			t.Errorf("contentKind(%q) = %d, want %d", tt.ct, got, tt.want)
		}
	}
}
