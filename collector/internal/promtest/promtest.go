// Package promtest runs a real Prometheus server for integration tests,
// through the project's own scripts/prometheus.sh (Debian's Prometheus on
// loopback, in a temporary run folder, on a free port), and asks it
// instant queries. A test that cannot start it fails; it never skips.
package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/llmtap/llmtap/collector/internal/service"
)

// Server is one running Prometheus.
type Server struct {
	URL    string // http://127.0.0.1:port
	script *service.Script
}

// Start writes config (and the files, by name, that it refers to, such as
// rule files) into the run folder and starts Prometheus with it.
func Start(config string, files map[string][]byte) (*Server, error) {
	port, err := service.FreePort()
	if err != nil {
		return nil, err
	}
	script, err := service.New("prometheus.sh", fmt.Sprintf("PROMETHEUS_PORT=%d", port))
	if err != nil {
		return nil, err
	}
	path := filepath.Join(script.RunDir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(script.RunDir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	if err := script.Run("start", path); err != nil {
		return nil, fmt.Errorf("prometheus did not start (logs in %s): %w", script.RunDir, err)
	}
	return &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), script: script}, nil
}

// Close stops the server and removes its files.
func (s *Server) Close() error { return s.script.Close() }

// Sample is one series of an instant query's answer.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Query runs an instant query and returns its samples, or the error
// Prometheus gave (a bad expression, a failed evaluation).
func (s *Server) Query(ctx context.Context, expr string) ([]Sample, error) {
	var res struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/api/v1/query?query="+url.QueryEscape(expr), &res); err != nil {
		return nil, err
	}
	if res.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", expr, res.ErrorType, res.Error)
	}
	if res.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: a %s, want a vector", expr, res.Data.ResultType)
	}
	var samples []Sample
	if err := json.Unmarshal(res.Data.Result, &samples); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	return samples, nil
}

// Rule is one loaded rule and its health.
type Rule struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	State     string `json:"state"`
}

// Rules returns the loaded rules of every group.
func (s *Server) Rules(ctx context.Context) ([]Rule, error) {
	var res struct {
		Data struct {
			Groups []struct {
				Rules []Rule `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/api/v1/rules", &res); err != nil {
		return nil, err
	}
	var out []Rule
	for _, g := range res.Data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// Target is one scrape target and its health.
type Target struct {
	Labels    map[string]string `json:"labels"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

// Targets returns the active scrape targets.
func (s *Server) Targets(ctx context.Context) ([]Target, error) {
	var res struct {
		Data struct {
			ActiveTargets []Target `json:"activeTargets"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/api/v1/targets", &res); err != nil {
		return nil, err
	}
	return res.Data.ActiveTargets, nil
}

func (s *Server) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	// Errors come as JSON with a 4xx status: decode them too.
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("prometheus %s: %s: %w", path, resp.Status, err)
	}
	return nil
}
