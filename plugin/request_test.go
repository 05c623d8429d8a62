package llmtap

import (
	"bytes"
	"hash/maphash"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

func TestTenantOf(t *testing.T) {
	// want: printf %s "$key" | sha256sum | cut -c1-12
	const key = "sk-live-SECRET-0123456789"
	tests := []struct {
		desc       string
		header     string // configured tenant header
		static     string
		reqHeaders map[string]string
		twice      string // a header sent a second time
		want       string
		wantSource string
	}{
		{desc: "tenant header twice: ignored", header: "X-Tenant-ID", reqHeaders: map[string]string{"X-Tenant-ID": "acme", "Authorization": "Bearer " + key}, twice: "X-Tenant-ID", want: "key-2e088dda7c69", wantSource: TenantFromAPIKey},
		{desc: "tenant header wins", header: "X-Tenant-ID", reqHeaders: map[string]string{"X-Tenant-Id": "acme", "Authorization": "Bearer " + key}, want: "acme", wantSource: TenantFromHeader},
		{desc: "custom header", header: "X-Team", reqHeaders: map[string]string{"X-Team": "ml"}, want: "ml", wantSource: TenantFromHeader},
		{desc: "long header cut", header: "X-Tenant-ID", reqHeaders: map[string]string{"X-Tenant-ID": strings.Repeat("t", 500)}, want: strings.Repeat("t", MaxIDLen), wantSource: TenantFromHeader},
		{desc: "header normalized", header: "X-Tenant-ID", reqHeaders: map[string]string{"X-Tenant-ID": "a\tb c/\xffd"}, want: "a_b_c__d", wantSource: TenantFromHeader},
		{desc: "no tenant header configured: the client's ignored", reqHeaders: map[string]string{"X-Tenant-ID": "victim", "Authorization": "Bearer " + key}, want: "key-2e088dda7c69", wantSource: TenantFromAPIKey},
		{desc: "no tenant header configured, no key: static", static: "team-a", reqHeaders: map[string]string{"X-Tenant-ID": "victim"}, want: "team-a", wantSource: TenantFromStatic},
		{desc: "bearer key hashed", header: "X-Tenant-ID", reqHeaders: map[string]string{"Authorization": "Bearer " + key}, want: "key-2e088dda7c69", wantSource: TenantFromAPIKey},
		{desc: "bearer any case", header: "X-Tenant-ID", reqHeaders: map[string]string{"Authorization": "bearer " + key}, want: "key-2e088dda7c69", wantSource: TenantFromAPIKey},
		{desc: "anthropic key", reqHeaders: map[string]string{"X-Api-Key": key}, want: "key-2e088dda7c69", wantSource: TenantFromAPIKey},
		{desc: "azure key", reqHeaders: map[string]string{"Api-Key": key}, want: "key-2e088dda7c69", wantSource: TenantFromAPIKey},
		{desc: "bearer without key", static: "team-a", reqHeaders: map[string]string{"Authorization": "Bearer "}, want: "team-a", wantSource: TenantFromStatic},
		{desc: "basic auth is no api key", static: "team-a", reqHeaders: map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, want: "team-a", wantSource: TenantFromStatic},
		{desc: "static fallback", header: "X-Tenant-ID", static: "team-a", want: "team-a", wantSource: TenantFromStatic},
		{desc: "unknown", header: "X-Tenant-ID"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.reqHeaders {
				h.Set(k, v)
			}
			if tt.twice != "" {
				h.Add(tt.twice, "other")
			}
			s := &settings{tenantHeader: http.CanonicalHeaderKey(tt.header), tenant: tt.static}
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header = h
			keys := newTenantKeys()
			for i := 0; i < 2; i++ { // the second time from the cache
				c := &captureWriter{req: req, set: s, rec: &Record{}}
				fromRequest(c, keys)
				r := record(c)
				if r.Tenant != tt.want || r.TenantSource != tt.wantSource {
					t.Errorf("round %d: tenant %q from %q, want %q from %q", i, r.Tenant, r.TenantSource, tt.want, tt.wantSource)
				}
			}
			c := &captureWriter{req: req, set: s, rec: &Record{}}
			fromRequest(c, nil)
			got := record(c).Tenant
			if strings.Contains(got, "SECRET") {
				t.Errorf("tenant %q leaks the key", got)
			}
		})
	}
}

// The credential cache holds fixed-size entries, at most two generations,
// whatever the credentials' number, and names every tenant right across
// generations. (That long keys leave nothing behind is
// TestLongCredentialsAreNotKept's.)
func TestTenantKeysBounded(t *testing.T) {
	keys := newTenantKeys()
	long := strings.Repeat("k", 1<<10)
	for i := 0; i < 3*maxKeyCache; i++ {
		cred := "Bearer " + long + strconv.Itoa(i)
		if got, want := keys.tenantOf(cred), KeyTenant(cred); got != want {
			t.Fatalf("credential %d: tenant %q, want %q", i, got, want)
		}
	}
	if n := len(keys.cur) + len(keys.old); n > 2*maxKeyCache {
		t.Errorf("%d entries, want at most %d", n, 2*maxKeyCache)
	}
	// A credential still in use survives the turn of a generation.
	keys = newTenantKeys()
	hot := "Bearer hot"
	for i := 0; i < 3*maxKeyCache; i++ {
		keys.tenantOf("Bearer cold-" + strconv.Itoa(i))
		if i%(maxKeyCache/2) == 0 {
			keys.tenantOf(hot)
		}
	}
	h := maphash.String(keys.seed, hot)
	if _, ok := keys.cur[h]; !ok {
		if _, ok := keys.old[h]; !ok {
			t.Error("a credential in use was evicted")
		}
	}
}

func TestValidAndNormalizeID(t *testing.T) {
	tests := []struct {
		in, norm string
		valid    bool
	}{
		{"req-123_abc.def:ghi@jkl+mno=", "req-123_abc.def:ghi@jkl+mno=", true},
		{"", "", false},
		{"a\tb", "a_b", false},
		{"a b", "a_b", false},
		{"a/b", "a_b", false},
		{"caf\xc3\xa9", "caf__", false},
		{"a\x00b\r\n", "a_b__", false},
		{strings.Repeat("x", MaxIDLen), strings.Repeat("x", MaxIDLen), true},
		{strings.Repeat("x", MaxIDLen+1), strings.Repeat("x", MaxIDLen), false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.in); got != tt.valid {
			t.Errorf("ValidID(%q) = %v, want %v", tt.in, got, tt.valid)
		}
		got := NormalizeID(tt.in)
		if got != tt.norm {
			t.Errorf("NormalizeID(%q) = %q, want %q", tt.in, got, tt.norm)
		}
		if got != "" && !ValidID(got) {
			t.Errorf("NormalizeID(%q) = %q, which is not valid", tt.in, got)
		}
	}
}

func TestRequestBodyCapture(t *testing.T) {
	small := `{"model":"gpt-4o","stream":true}`
	big := strings.Repeat("0123456789", 1000)
	tests := []struct {
		desc      string
		body      string
		chunked   bool // unknown length
		ct        string
		limit     int
		wantBody  string
		wantTrunc bool
	}{
		{desc: "small json read whole", body: small, ct: "application/json", limit: 1024, wantBody: small},
		{desc: "large body head", body: big, ct: "text/plain", limit: 100, wantBody: big[:100], wantTrunc: true},
		{desc: "chunked body head", body: big, chunked: true, ct: "application/json", limit: 50, wantBody: big[:50], wantTrunc: true},
		{desc: "chunked body fits", body: small, chunked: true, ct: "application/json", limit: 1024, wantBody: small},
		{desc: "kind not captured", body: small, ct: "audio/wav", limit: 1024},
		{desc: "no body", ct: "application/json", limit: 1024},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			col := newCollectorStub(t)
			s := testSettings(t, col.srv.URL, func(c *Config) { c.MaxRequestBodyBytes = tt.limit })
			sd := startSender(t, s)
			var upstreamGot []byte
			srv := tapped(t, s, sd, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				upstreamGot, _ = io.ReadAll(r.Body)
				w.WriteHeader(http.StatusNoContent)
			}))
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(strings.NewReader(tt.body)) // hides the length
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions?key=secret", body)
			req.Header.Set("Content-Type", tt.ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if string(upstreamGot) != tt.body {
				t.Fatalf("upstream got %d bytes, want the whole %d unchanged", len(upstreamGot), len(tt.body))
			}
			r := col.records(t, 1)[0]
			if string(r.RequestBody) != tt.wantBody || r.RequestTruncated != tt.wantTrunc {
				t.Errorf("captured %q truncated %v, want %q %v", r.RequestBody, r.RequestTruncated, tt.wantBody, tt.wantTrunc)
			}
			if r.RequestBytes != int64(len(tt.body)) {
				t.Errorf("request bytes %d, want %d", r.RequestBytes, len(tt.body))
			}
			if r.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
				t.Errorf("method %q path %q", r.Method, r.Path)
			}
		})
	}
}

func TestBrokenSmallBodyStaysShort(t *testing.T) {
	s := testSettings(t, "", nil)
	req := httptest.NewRequest(http.MethodPost, "/", io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(io.ErrUnexpectedEOF)))
	req.ContentLength = 10
	c := &captureWriter{set: s, rec: &Record{}}
	captureRequest(c, req)
	head := c.reqBody
	got, err := io.ReadAll(req.Body)
	// The upstream side gets 2 of the 10 announced bytes and fails the request.
	if string(head) != "ab" || !bytes.Equal(got, []byte("ab")) || err != nil {
		t.Errorf("head %q upstream %q err %v", head, got, err)
	}
}

// TestIncludeUsage: with includeUsage, a streaming chat request that sets
// no stream_options asks for usage, its length following; every other
// request reaches the upstream as it was sent.
func TestIncludeUsage(t *testing.T) {
	const with = `"stream_options":{"include_usage":true},`
	for _, tt := range []struct {
		name, path, body, want string
	}{
		{"streaming chat", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[]}`, `{` + with + `"model":"m","stream":true,"messages":[]}`},
		{"behind a prefix, with spaces", "/openai/v1/chat/completions", ` { "stream" : true }`, ` {` + with + ` "stream" : true }`},
		{"not streaming", "/v1/chat/completions", `{"model":"m","stream":false}`, ""},
		{"stream options already", "/v1/chat/completions", `{"stream":true,"stream_options":{"include_usage":false}}`, ""},
		{"a nested stream", "/v1/chat/completions", `{"model":"m","metadata":{"stream":true}}`, ""},
		{"another case", "/v1/chat/completions", `{"Stream":true}`, ""},
		{"another endpoint", "/v1/responses", `{"stream":true}`, ""},
		{"not JSON", "/v1/chat/completions", `"stream":true`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.body
			}
			got := make(chan string, 1)
			s := testSettings(t, "http://127.0.0.1:1", func(c *Config) { c.IncludeUsage = true })
			sd := startSender(t, s)
			srv := tapped(t, s, sd, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					t.Error(err)
				}
				if r.ContentLength != int64(len(b)) {
					t.Errorf("content length %d for %d bytes", r.ContentLength, len(b))
				}
				got <- string(b)
			}))
			resp, err := http.Post(srv.URL+tt.path, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if b := <-got; b != want {
				t.Errorf("the upstream got %s, want %s", b, want)
			}
		})
	}
}

func TestIncludeUsageNeedsACollector(t *testing.T) {
	c := CreateConfig()
	c.CollectorURL = "" // recording off
	c.IncludeUsage = true
	if _, err := c.validate("r"); err == nil || !strings.Contains(err.Error(), "includeUsage") {
		t.Errorf("err %v, want one about includeUsage", err)
	}
}
