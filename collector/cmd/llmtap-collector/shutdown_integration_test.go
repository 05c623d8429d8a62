//go:build integration

package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// The shutdown tests run the collector as a process, as production does:
// SIGTERM under load, then every record the collector acknowledged (202)
// must be in ClickHouse or in the spool, and a spool left behind is
// replayed at the next start.

const (
	shutdownTimeout = 10 * time.Second
	exitMargin      = 5 * time.Second
)

// collectorConfig is a configuration whose writer holds records for a
// while (a big batch, a 2 s flush interval), so a SIGTERM finds a queue to
// drain.
func collectorConfig(s *stack.T, ch *stack.ClickHouse) stack.CollectorConfig {
	c := s.CollectorConfig(ch)
	c.ShutdownTimeout = shutdownTimeout.String()
	c.Log = &stack.CollectorLog{Level: "info"}
	c.ClickHouse.Database = "llmtap_sd"
	c.ClickHouse.FlushInterval = "2s"
	c.ClickHouse.BatchSize = 5000
	c.ClickHouse.QueueSize = 200000
	return c
}

// process is one run of the collector binary, started by the test's stack.
type process struct {
	*stack.Collector
}

// startProcess starts the collector binary with config and waits until it
// is ready.
func startProcess(s *stack.T, config stack.CollectorConfig) *process {
	return &process{s.Collector(config)}
}

// base is the collector's base URL.
func (p *process) base() string { return p.URL() }

// terminate sends SIGTERM and waits for the exit, which must come within
// the shutdown timeout and a margin, with status 0.
func (p *process) terminate(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.Process().Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Process().Exited():
	case <-time.After(shutdownTimeout + exitMargin):
		t.Fatalf("collector still running %s after SIGTERM", shutdownTimeout+exitMargin)
	}
	took := time.Since(start)
	if code := p.Process().ExitCode(); code != 0 {
		t.Fatalf("collector exited with %d after SIGTERM", code)
	}
	return took
}

// drained returns what the writer's last log line says it drained.
func (p *process) drained(t *testing.T) int {
	t.Helper()
	out, err := os.ReadFile(p.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`msg="writer stopped" .*drained=(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no \"writer stopped\" line in the collector log")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// load posts record batches from several goroutines and keeps the ids of
// every record the collector acknowledged.
type load struct {
	base   string
	prefix string
	stop   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	acked   map[string]bool
	batches int // acknowledged
	refused int // answered, but not 202
	failed  int // no answer
}

func startLoad(base, prefix string, workers, perBatch int) *load {
	l := &load{base: base, prefix: prefix, stop: make(chan struct{}), acked: map[string]bool{}}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go l.work(w, perBatch)
	}
	return l
}

func (l *load) work(w, perBatch int) {
	defer l.wg.Done()
	client := &http.Client{Timeout: 30 * time.Second}
	for n := 0; ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		ids := make([]string, perBatch)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		enc := json.NewEncoder(zw)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%d-%d-%d", l.prefix, w, n, i)
			_ = enc.Encode(streamRecord(ids[i]))
		}
		_ = zw.Close()
		req, _ := http.NewRequest(http.MethodPost, l.base+llmtap.RecordsPath, &buf)
		req.Header.Set("Authorization", "Bearer it-token")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := client.Do(req)
		if err != nil {
			l.count(nil, &l.failed)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			l.count(nil, &l.refused)
			continue
		}
		l.count(ids, &l.batches)
	}
}

func (l *load) count(ids []string, counter *int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*counter++
	for _, id := range ids {
		l.acked[id] = true
	}
}

// waitAcked waits until n records were acknowledged and the load has run
// for at least d.
func (l *load) waitAcked(t *testing.T, n int, d time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		l.mu.Lock()
		got := len(l.acked)
		l.mu.Unlock()
		if got >= n && time.Since(start) >= d {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records acknowledged after 30 s, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish stops the load and returns the acknowledged ids.
func (l *load) finish(t *testing.T) map[string]bool {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("load: %d records in %d acknowledged batches; %d batches refused, %d unanswered", len(l.acked), l.batches, l.refused, l.failed)
	return l.acked
}

// storedIDs counts the rows of each request id with prefix in ClickHouse,
// after FINAL.
func storedIDs(t *testing.T, ch *stack.ClickHouse, prefix string) map[string]int {
	t.Helper()
	c := &collectorUnderTest{ch: ch}
	out := c.query(t, "SELECT request_id, count() FROM llmtap_sd.requests FINAL WHERE request_id LIKE '"+prefix+"-%' GROUP BY request_id")
	ids := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		id, n, _ := strings.Cut(line, "\t")
		ids[id], _ = strconv.Atoi(n)
	}
	return ids
}

// spooledIDs reads the request ids in the spool's batch files. The file
// format is the writer's (clickhouse/spool.go): a gob of {Version, Facts:
// [{Fact, Set}]}; gob matches fields by name, so only the ids are read.
func spooledIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.batch"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	ids := map[string]int{}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var batch struct {
			Version int
			Facts   []struct{ Fact struct{ RequestID string } }
		}
		if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&batch); err != nil {
			t.Fatalf("spool file %s: %v", name, err)
		}
		for _, f := range batch.Facts {
			ids[f.Fact.RequestID]++
		}
	}
	return ids
}

// missing lists the acknowledged ids found in none of the sets.
func missing(acked map[string]bool, in ...map[string]int) []string {
	var out []string
	for id := range acked {
		found := false
		for _, set := range in {
			found = found || set[id] > 0
		}
		if !found {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// TestSIGTERMUnderLoad: SIGTERM while records pour in; the process exits 0
// within the shutdown timeout, and every acknowledged record is in
// ClickHouse or the spool.
func TestSIGTERMUnderLoad(t *testing.T) {
	s := stack.New(t)
	ch := s.ClickHouse()
	cfg := collectorConfig(s, ch)
	p := startProcess(s, cfg)
	base, spool := p.base(), cfg.ClickHouse.SpoolDir

	l := startLoad(base, "sdup", 4, 25)
	l.waitAcked(t, 3000, 3*time.Second) // past a flush interval: written and queued records

	took := p.terminate(t)
	acked := l.finish(t)
	t.Logf("exited 0 %s after SIGTERM; the writer drained %d records", took.Round(time.Millisecond), p.drained(t))
	if p.drained(t) == 0 {
		t.Error("the writer's queue was empty at SIGTERM: the drain was not exercised")
	}

	stored, spooled := storedIDs(t, ch, "sdup"), spooledIDs(t, spool)
	t.Logf("%d acknowledged: %d ids in ClickHouse, %d in the spool", len(acked), len(stored), len(spooled))
	if lost := missing(acked, stored, spooled); len(lost) > 0 {
		t.Errorf("%d acknowledged records neither in ClickHouse nor in the spool, such as %q", len(lost), lost[0])
	}
}

// TestSIGTERMWithClickHouseDown: ClickHouse stops just before SIGTERM, so
// the drain goes to the spool; the next start replays it, and every
// acknowledged record is in ClickHouse exactly once.
func TestSIGTERMWithClickHouseDown(t *testing.T) {
	s := stack.New(t)
	ch := s.ClickHouse()
	cfg := collectorConfig(s, ch)
	p := startProcess(s, cfg)
	base, spool := p.base(), cfg.ClickHouse.SpoolDir

	l := startLoad(base, "sddown", 4, 25)
	l.waitAcked(t, 3000, 3*time.Second)
	if err := ch.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := p.terminate(t)
	acked := l.finish(t)
	drained := p.drained(t)
	t.Logf("exited 0 %s after SIGTERM; the writer drained %d records", took.Round(time.Millisecond), drained)
	if drained == 0 {
		t.Error("the writer's queue was empty at SIGTERM: the drain was not exercised")
	}
	spooled := spooledIDs(t, spool)
	if len(spooled) == 0 {
		t.Fatal("nothing spooled with ClickHouse down")
	}

	if err := ch.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// What was written before ClickHouse stopped, and what the spool held.
	stored := storedIDs(t, ch, "sddown")
	t.Logf("before the second start: %d acknowledged, %d ids in ClickHouse, %d in the spool", len(acked), len(stored), len(spooled))
	if lost := missing(acked, stored, spooled); len(lost) > 0 {
		t.Fatalf("%d acknowledged records neither in ClickHouse nor in the spool, such as %q", len(lost), lost[0])
	}

	p2 := startProcess(s, cfg)
	deadline := time.Now().Add(60 * time.Second)
	for {
		stored = storedIDs(t, ch, "sddown")
		left := spooledIDs(t, spool)
		if len(missing(acked, stored)) == 0 && len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after the second start: %d acknowledged records not in ClickHouse, %d ids still spooled",
				len(missing(acked, stored)), len(left))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for id, n := range stored {
		if n != 1 {
			t.Errorf("request %s stored %d times", id, n)
		}
	}
	c := &collectorUnderTest{ch: ch}
	t.Logf("after the replay: %d ids in ClickHouse; rows without FINAL: %s", len(stored),
		c.query(t, "SELECT count() FROM llmtap_sd.requests WHERE request_id LIKE 'sddown-%'"))
	p2.terminate(t)
}

// TestSIGTERMWithClickHouseHung: ClickHouse hangs (SIGSTOP) just before
// SIGTERM; inserts give way to the spool before the shutdown timeout, the
// process exits 0 in time, and every acknowledged record is in ClickHouse
// or the spool.
func TestSIGTERMWithClickHouseHung(t *testing.T) {
	s := stack.New(t)
	ch := s.ClickHouse()
	pid := ch.Process().Pid()
	cfg := collectorConfig(s, ch)
	p := startProcess(s, cfg)
	base, spool := p.base(), cfg.ClickHouse.SpoolDir

	l := startLoad(base, "sdhung", 4, 25)
	l.waitAcked(t, 3000, 3*time.Second)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume)                  // before ClickHouse is stopped (cleanups run last first)
	time.Sleep(500 * time.Millisecond) // let an insert start and hang
	took := p.terminate(t)
	acked := l.finish(t)
	resume()
	t.Logf("exited 0 %s after SIGTERM; the writer drained %d records", took.Round(time.Millisecond), p.drained(t))
	if took < shutdownTimeout/4 {
		t.Errorf("exited %s after SIGTERM: the drain did not wait for the hung ClickHouse at all", took)
	}

	spooled := spooledIDs(t, spool)
	if len(spooled) == 0 {
		t.Fatal("nothing spooled with ClickHouse hung")
	}
	stored := storedIDs(t, ch, "sdhung")
	t.Logf("%d acknowledged: %d ids in ClickHouse, %d in the spool", len(acked), len(stored), len(spooled))
	if lost := missing(acked, stored, spooled); len(lost) > 0 {
		t.Errorf("%d acknowledged records neither in ClickHouse nor in the spool, such as %q", len(lost), lost[0])
	}
}
