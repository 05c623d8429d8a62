//go:build integration

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

// TestCollectorOverTLS: the collector serves HTTPS with the certificate
// its configuration names; the plugin inside the real Traefik reaches it
// through collectorCA (a private CA), its records are stored, and a client
// speaking plain HTTP, or not trusting the CA, gets nothing.
func TestCollectorOverTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, certFile, keyFile := testCertificate(t, dir)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	c := startCollectorWith(t, collectorSetup{client: client, configure: func(c *stack.CollectorConfig) {
		c.TLS = &stack.ServerTLS{CertFile: certFile, KeyFile: keyFile}
	}})
	if !strings.HasPrefix(c.base, "https://") {
		t.Fatalf("base %s", c.base)
	}

	plain := strings.Replace(c.base, "https://", "http://", 1)
	if resp, err := http.Get(plain + "/healthz"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the TLS listener: %d %s", resp.StatusCode, body)
		}
	}
	if _, err := http.Get(c.base + "/healthz"); err == nil {
		t.Error("a client without the CA reached the collector")
	}

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(up.Close)
	indented := "            " + strings.ReplaceAll(strings.TrimSpace(string(caPEM)), "\n", "\n            ")
	entry := startTraefik(t, c.stack, traefikOptions{
		Dynamic: fmt.Sprintf(`
http:
  routers:
    tls:
      rule: Host(`+"`tls.test`"+`)
      service: up
      middlewares: [tls]
  middlewares:
    tls:
      plugin:
        llmtap:
          collectorURL: %q
          collectorToken: it-token
          flushInterval: 50ms
          collectorCA: |
%s
  services:
    up:
      loadBalancer:
        servers:
          - url: %q
`, c.base, indented, up.URL),
		ReadyHosts: []string{"tls.test"},
	}, nil).Addr()

	req, _ := http.NewRequest(http.MethodGet, "http://"+entry+"/v1/models", nil)
	req.Host = "tls.test"
	req.Header.Set("X-Request-Id", "over-tls-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, c.base+"/v1/requests/over-tls-1", nil)
		req.Header.Set("Authorization", "Bearer it-read")
		resp, err := client.Do(req)
		if err == nil {
			var f map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&f)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if f["request_id"] != "over-tls-1" {
					t.Errorf("stored %v", f)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record sent over TLS never reached ClickHouse (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testCertificate writes a CA-signed certificate for 127.0.0.1 and its key
// into dir, and returns the CA's PEM and the two file names.
func testCertificate(t *testing.T, dir string) (caPEM []byte, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Fixed validity around a fixed instant would expire; the certificate
	// lives as long as the test, so its window is now, wide on both sides.
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "llmtap test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "collector.crt"), filepath.Join(dir, "collector.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile, keyFile
}

// TestCollectorToRedisOverTLS: with redis.tls, the collector's limit checks
// run against a real Redis that speaks TLS only, its certificate checked
// against ca_file.
func TestCollectorToRedisOverTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, certFile, keyFile := testCertificate(t, dir)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s := stack.New(t)
	rd := s.Redis(func(r *stack.Redis) { r.TLSCert, r.TLSKey = certFile, keyFile })
	c := startCollectorWith(t, collectorSetup{stack: s, configure: func(c *stack.CollectorConfig) {
		c.Redis = &stack.CollectorRedis{Addr: rd.Addr(), Timeout: "2s", TLS: &stack.ClientTLS{Enabled: true, CAFile: caFile}}
		c.Limits = &stack.CollectorLimits{Default: json.RawMessage(`{"requests":{"limit":1,"period":"1h"},"failure_mode":"closed"}`)}
	}})
	check := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, c.base+"/v1/limits/check", strings.NewReader(`{"tenant":"tls-tenant","route":"r"}`))
		req.Header.Set("Authorization", "Bearer it-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Llmtap-Decision")
	}
	// Failing closed, a Redis the collector could not reach would deny the
	// first check too: allow then deny is Redis counting, over TLS.
	for i, want := range []int{http.StatusOK, http.StatusTooManyRequests} {
		if code, decision := check(); code != want {
			t.Errorf("check %d: %d (%s), want %d", i+1, code, decision, want)
		}
	}
	if n := metricTotal(t, &rig{collector: c}, `llmtap_limit_checks_total\{decision="failed_closed"\}`); n != 0 {
		t.Errorf("%v checks failed closed: Redis was not reached", n)
	}
}

// TestCollectorToClickHouseOverTLS: with clickhouse.tls, the collector
// migrates, writes and reads a real ClickHouse through its secure native
// port, the certificate checked against ca_file.
func TestCollectorToClickHouseOverTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, certFile, keyFile := testCertificate(t, dir)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s := stack.New(t)
	ch := s.ClickHouse(func(c *stack.ClickHouse) { c.TLSCert, c.TLSKey, c.SecurePort = certFile, keyFile, s.Port() })
	c := startCollectorWith(t, collectorSetup{stack: s, ch: ch, configure: func(c *stack.CollectorConfig) {
		c.ClickHouse.Addr = ch.Secure()
		c.ClickHouse.TLS = &stack.ClientTLS{Enabled: true, CAFile: caFile}
	}})
	c.post(t, streamRecord("over-tls-ch"))
	waitFact(t, c.base, "over-tls-ch")
	resp, err := http.Get("http://" + ch.HTTP() + "/?query=" + url.QueryEscape("SELECT count() FROM llmtap_it.requests WHERE request_id = 'over-tls-ch'"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != "1" {
		t.Errorf("rows in the TLS server: %q", body)
	}
}
