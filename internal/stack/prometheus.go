package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Prometheus is Debian's Prometheus on loopback, with its data under Dir.
type Prometheus struct {
	server
	Port int
	// Config is prometheus.yml; Files are written beside it by name (the
	// rule files it names are read relative to its folder).
	Config string
	Files  map[string][]byte
}

// Name is "prometheus".
func (p *Prometheus) Name() string { return "prometheus" }

// URL is http://127.0.0.1:port.
func (p *Prometheus) URL() string { return "http://" + addr(p.Port) }

// Start writes the configuration, checks it with promtool and starts the
// server.
func (p *Prometheus) Start(ctx context.Context) error {
	exe, err := program("prometheus")
	if err != nil {
		return err
	}
	promtool, err := program("promtool")
	if err != nil {
		return err
	}
	if err := p.mkdirs(p.Name(), "data"); err != nil {
		return err
	}
	config := filepath.Join(p.Dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(p.Config), 0o644); err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	for name, b := range p.Files {
		if err := os.WriteFile(filepath.Join(p.Dir, name), b, 0o644); err != nil {
			return fmt.Errorf("prometheus: %w", err)
		}
	}
	if out, err := exec.CommandContext(ctx, promtool, "check", "config", config).CombinedOutput(); err != nil {
		return fmt.Errorf("prometheus: %s is not a valid configuration: %w\n%s", config, err, out)
	}
	return p.run(ctx, Command{
		Name: p.Name(),
		Path: exe,
		Args: []string{"--config.file=" + config, "--storage.tsdb.path=" + filepath.Join(p.Dir, "data"),
			"--web.listen-address=" + addr(p.Port), "--web.enable-lifecycle"},
		Dir: p.Dir,
		Log: filepath.Join(p.Dir, "prometheus.log"),
	}, p.Ready)
}

// Ready asks /-/ready.
func (p *Prometheus) Ready(ctx context.Context) error {
	return httpOK(ctx, p.URL()+"/-/ready", http.StatusOK)
}

// Stop stops the server.
func (p *Prometheus) Stop(ctx context.Context) error { return p.stop(ctx) }

// Sample is one series of an instant query's answer.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Float is the sample's value.
func (s Sample) Float() (float64, error) {
	v, ok := s.Value[1].(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", s.Value[1])
	}
	return strconv.ParseFloat(v, 64)
}

// Query runs an instant query and returns its samples, or the error
// Prometheus gave (a bad expression, a failed evaluation).
func (p *Prometheus) Query(ctx context.Context, expr string) ([]Sample, error) {
	var res struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := p.get(ctx, "/api/v1/query?query="+url.QueryEscape(expr), &res); err != nil {
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
func (p *Prometheus) Rules(ctx context.Context) ([]Rule, error) {
	var res struct {
		Data struct {
			Groups []struct {
				Rules []Rule `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := p.get(ctx, "/api/v1/rules", &res); err != nil {
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
func (p *Prometheus) Targets(ctx context.Context) ([]Target, error) {
	var res struct {
		Data struct {
			ActiveTargets []Target `json:"activeTargets"`
		} `json:"data"`
	}
	if err := p.get(ctx, "/api/v1/targets", &res); err != nil {
		return nil, err
	}
	return res.Data.ActiveTargets, nil
}

func (p *Prometheus) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+path, nil)
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

// Metric reads an unlabelled metric from a Prometheus endpoint (a
// collector's or Traefik's /metrics): its value, or an error when the
// endpoint does not answer or does not have it.
func Metric(ctx context.Context, endpoint, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metric %s: %w", name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("metric %s at %s: %w", name, endpoint, err)
	}
	return 0, fmt.Errorf("metric %s: not at %s", name, endpoint)
}
