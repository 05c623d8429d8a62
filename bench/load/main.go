// Command load sends requests at a fixed rate (open loop, so a slow server
// cannot slow the load down and hide its own latency) and prints latency
// percentiles: the added latency of a middleware is only meaningful below
// saturation, where wrk's closed loop measures queueing instead.
//
//	load -url http://127.0.0.1:8080/json -host tap.test -rate 1000 -duration 5s
//	load -url http://127.0.0.1:7480/v1/limits/check -body '{"tenant":"t"}' -header 'Authorization: Bearer x'
//
// With -host a.test,b.test the requests take the hosts in turn, one each,
// so that every host meets the same moments of the machine (what else runs,
// the collector's pauses), and the output has one line per host, its name
// first: the way to compare routes whose difference is smaller than what
// the machine varies from one run to the next.
// With -body the requests are POSTs of that body (as JSON). With -workers N
// the loop is closed instead: N workers each send their next request as
// soon as the last one is read, for the duration, which measures what the
// server carries at most (its capacity), not its latency.
// Output, one line: requests errors p50_ms p90_ms p99_ms max_ms unsent,
// where errors counts the failed requests and the unsent ones (ticks past
// -max-inflight), and unsent those alone. With -samples FILE every
// successful request is also written there, one line each: host, when it
// was sent (µs from the start) and its latency (µs), for statistics over
// several runs that percentiles cannot be combined into.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "", "target URL (loopback only)")
	host := flag.String("host", "", "Host header; several, comma-separated, take turns")
	rate := flag.Int("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 5*time.Second, "how long to send")
	maxInflight := flag.Int("max-inflight", 512, "requests in flight at most; past it a tick counts as an error")
	body := flag.String("body", "", "POST this body (JSON) instead of a GET")
	workers := flag.Int("workers", 0, "closed loop: this many workers sending back to back (-rate is then ignored)")
	samplesFile := flag.String("samples", "", "also write each successful request here: host, sent at (µs), latency (µs)")
	var headers headerFlags
	flag.Var(&headers, "header", `a request header, "Name: value" (repeatable)`)
	flag.Parse()
	if *url == "" || (*rate <= 0 && *workers <= 0) {
		fmt.Fprintln(os.Stderr, "load: -url and a positive -rate or -workers are required")
		os.Exit(2)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *maxInflight, DisableCompression: true},
	}

	hosts := strings.Split(*host, ",")
	var (
		mu      sync.Mutex
		samples = make([][]sample, len(hosts))
		errors  = make([]int, len(hosts))
		unsent  = make([]int, len(hosts))
		wg      sync.WaitGroup
		began   = time.Now()
	)
	// done records the outcome of a request to hosts[h] sent at at.
	done := func(h int, at, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errors[h]++
			return
		}
		samples[h] = append(samples[h], sample{at, d})
	}
	finish := func() {
		if *samplesFile != "" {
			if err := writeSamples(*samplesFile, hosts, samples); err != nil {
				fmt.Fprintf(os.Stderr, "load: %v\n", err)
				os.Exit(1)
			}
		}
		report(hosts, samples, errors, unsent)
	}
	inflight := make(chan struct{}, *maxInflight)
	send := func(h int) {
		select {
		case inflight <- struct{}{}:
		default:
			mu.Lock()
			errors[h]++
			unsent[h]++
			mu.Unlock()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-inflight; wg.Done() }()
			at := time.Since(began)
			d, err := one(client, *url, hosts[h], *body, headers)
			done(h, at, d, err)
		}()
	}
	if *workers > 0 {
		stop := time.Now().Add(*duration)
		for i := 0; i < *workers; i++ {
			wg.Add(1)
			go func(h int) {
				defer wg.Done()
				for ; time.Now().Before(stop); h = (h + 1) % len(hosts) {
					at := time.Since(began)
					d, err := one(client, *url, hosts[h], *body, headers)
					done(h, at, d, err)
				}
			}(i % len(hosts))
		}
		wg.Wait()
		finish()
		return
	}
	// A ticker drops ticks when the machine is busy, which would lower
	// the rate; instead, every tick sends what is due by the clock.
	period := time.Second / time.Duration(*rate)
	if period < time.Millisecond {
		period = time.Millisecond
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	began = time.Now()
	total := int(duration.Seconds() * float64(*rate))
	for sent := 0; sent < total; {
		<-tick.C
		due := int(time.Since(began).Seconds() * float64(*rate))
		if due > total {
			due = total
		}
		for ; sent < due; sent++ {
			send(sent % len(hosts))
		}
	}
	wg.Wait()
	finish()
}

// sample is one successful request: when it was sent, from the start of
// the run, and how long its response took.
type sample struct{ at, latency time.Duration }

// writeSamples writes every host's samples to path, one line each.
func writeSamples(path string, hosts []string, samples [][]sample) error {
	var b strings.Builder
	for h, ss := range samples {
		for _, s := range ss {
			fmt.Fprintf(&b, "%s %d %d\n", hosts[h], s.at.Microseconds(), s.latency.Microseconds())
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("-samples: %w", err)
	}
	return nil
}

// report prints the output lines, the host first when there are several;
// a host with no request succeeding is a failure.
func report(hosts []string, samples [][]sample, errors, unsent []int) {
	for h, ss := range samples {
		if len(ss) == 0 {
			fmt.Fprintf(os.Stderr, "load: no request to %q succeeded\n", hosts[h])
			os.Exit(1)
		}
		l := make([]time.Duration, len(ss))
		for i, s := range ss {
			l[i] = s.latency
		}
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		pct := func(p float64) float64 {
			return float64(l[int(p*float64(len(l)-1))]) / 1e6
		}
		if len(hosts) > 1 {
			fmt.Printf("%s ", hosts[h])
		}
		fmt.Printf("%d %d %.3f %.3f %.3f %.3f %d\n", len(l), errors[h], pct(0.50), pct(0.90), pct(0.99), pct(1), unsent[h])
	}
}

// headerFlags collects -header values.
type headerFlags [][2]string

func (h *headerFlags) String() string { return fmt.Sprint(*h) }

func (h *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q: want Name: value", v)
	}
	*h = append(*h, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
	return nil
}

// one sends a request and reads the whole response.
func one(client *http.Client, url, host, body string, headers headerFlags) (time.Duration, error) {
	method, rd := http.MethodGet, io.Reader(nil)
	if body != "" {
		method, rd = http.MethodPost, strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Host = host
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return time.Since(start), err
}
