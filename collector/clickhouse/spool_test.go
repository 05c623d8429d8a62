package clickhouse

import (
	"bytes"
	"encoding/gob"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector"
)

func facts(from, n int) []*collector.Fact {
	out := make([]*collector.Fact, n)
	for i := range out {
		out[i] = testFact(from + i)
	}
	return out
}

func mustOpenSpool(t *testing.T, dir string, limit int64) *spool {
	t.Helper()
	s, err := openSpool(dir, limit)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// first is the oldest batch's name, "" when empty.
func first(s *spool) string {
	if names := s.names(); len(names) > 0 {
		return names[0]
	}
	return ""
}

func TestSpoolRoundTrip(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	in := facts(0, 50)
	// Pointers to zero and nil pointers, which plain gob would confuse.
	in[0].TTFTMs, in[0].Usage.Input, in[0].Usage.Output = i64(0), i64(0), nil
	name, size, err := s.write(in)
	if err != nil {
		t.Fatal(err)
	}
	if size <= 0 || s.count.Load() != 1 || s.bytes.Load() != size {
		t.Fatalf("gauges %d files %d bytes after writing %d bytes", s.count.Load(), s.bytes.Load(), size)
	}
	out, err := s.read(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("read %d facts, wrote %d", len(out), len(in))
	}
	for i := range in {
		want := *in[i]
		want.Start = want.Start.Round(0) // gob drops the monotonic clock
		if !reflect.DeepEqual(out[i], &want) {
			t.Fatalf("fact %d:\n got %+v\nwant %+v", i, out[i], &want)
		}
	}
	if out[0].TTFTMs == nil || *out[0].TTFTMs != 0 || out[0].Usage.Output != nil {
		t.Errorf("pointer presence lost: ttft %v output %v", out[0].TTFTMs, out[0].Usage.Output)
	}
	if err := s.remove(name); err != nil {
		t.Fatal(err)
	}
	if !s.empty() || s.count.Load() != 0 || s.bytes.Load() != 0 {
		t.Errorf("spool not empty after remove: %d files %d bytes", s.count.Load(), s.bytes.Load())
	}
	if left, _ := os.ReadDir(s.dir); len(left) != 0 {
		t.Errorf("files left: %v", left)
	}
}

func TestSpoolOrderAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	var names []string
	for b := range 5 {
		name, _, err := s.write(facts(b*10, 10))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	// A half-written file of a crashed run and a stray file.
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000001-00000001.batch.tmp"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	s2 := mustOpenSpool(t, dir, 1<<30)
	if s2.count.Load() != 5 || s2.bytes.Load() != s.bytes.Load() {
		t.Fatalf("reopened spool: %d files %d bytes, want 5 files %d bytes", s2.count.Load(), s2.bytes.Load(), s.bytes.Load())
	}
	if _, err := os.Stat(filepath.Join(dir, "00000000000000000001-00000001.batch.tmp")); !os.IsNotExist(err) {
		t.Errorf("half-written file not removed: %v", err)
	}
	for b, want := range names {
		name := first(s2)
		if name != want {
			t.Fatalf("replay %d: oldest %q, want %q", b, name, want)
		}
		got, err := s2.read(name)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].RequestID != testFact(b*10).RequestID {
			t.Fatalf("replay %d starts with %s", b, got[0].RequestID)
		}
		if err := s2.remove(name); err != nil {
			t.Fatal(err)
		}
	}
	if !s2.empty() {
		t.Error("spool not empty after replaying all")
	}
}

func TestSpoolLimit(t *testing.T) {
	dir := t.TempDir()
	probe := mustOpenSpool(t, t.TempDir(), 1<<30)
	_, one, err := probe.write(facts(0, 20))
	if err != nil {
		t.Fatal(err)
	}
	// Room for two such batches, not three.
	s := mustOpenSpool(t, dir, 2*one+one/2)
	for b := range 2 {
		if _, _, err := s.write(facts(0, 20)); err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
	}
	_, _, err = s.write(facts(0, 20))
	if !errors.Is(err, errSpoolFull) {
		t.Fatalf("third batch: %v, want errSpoolFull", err)
	}
	if s.count.Load() != 2 || s.bytes.Load() != 2*one {
		t.Errorf("after refusal: %d files %d bytes, want 2 files %d bytes", s.count.Load(), s.bytes.Load(), 2*one)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("%d files on disk, want 2", len(entries))
	}
	// Replaying one makes room again.
	if err := s.remove(first(s)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.write(facts(0, 20)); err != nil {
		t.Errorf("after a replay: %v", err)
	}
}

func TestSpoolQuarantine(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	name, _, err := s.write(facts(0, 3))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("not gob"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.read(name); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("read of a corrupt file: %v", err)
	}
	if err := s.setAside(name, spoolBadExt); err != nil {
		t.Fatal(err)
	}
	if !s.empty() || s.bytes.Load() != 0 {
		t.Error("quarantined file still counted")
	}
	if _, err := os.Stat(filepath.Join(dir, name+spoolBadExt)); err != nil {
		t.Errorf("quarantined file not kept: %v", err)
	}
	if s2 := mustOpenSpool(t, dir, 1<<30); !s2.empty() {
		t.Error("reopened spool picks up a quarantined file")
	}
}

func TestSpoolNamesSortByTime(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	a, _, _ := s.write(facts(0, 1))
	time.Sleep(time.Millisecond)
	b, _, _ := s.write(facts(1, 1))
	if a >= b {
		t.Errorf("names %q, %q do not sort in write order", a, b)
	}
}

// TestSpoolReadsFilesWithoutSpans: a batch spooled by a collector that
// wrote every chunk as text (no ChunkStarts/ChunkEnds) reads the same.
func TestSpoolReadsFilesWithoutSpans(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	type before struct { // spoolFact as it was
		Fact collector.Fact
		Set  uint8
	}
	in := facts(0, 8)
	b := struct {
		Version int
		Facts   []before
	}{Version: spoolVersion}
	for _, f := range in {
		b.Facts = append(b.Facts, before{Fact: *f})
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&b); err != nil {
		t.Fatal(err)
	}
	name := "00000000000000000001-000001" + spoolExt
	if err := os.WriteFile(filepath.Join(s.dir, name), buf.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
	out, err := s.read(name)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if !reflect.DeepEqual(out[i].Chunks, in[i].Chunks) || out[i].ResponseBody != in[i].ResponseBody {
			t.Errorf("fact %d: chunks %q, want %q", i, out[i].Chunks, in[i].Chunks)
		}
	}
}
