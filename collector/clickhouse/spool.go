package clickhouse

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtap/llmtap/collector"
)

// errSpoolFull is returned when a batch would take the spool past its limit.
var errSpoolFull = errors.New("spool full")

const (
	spoolExt    = ".batch"
	spoolTmpExt = ".tmp"
	spoolBadExt = ".corrupt"
	// spoolRefusedExt marks a batch ClickHouse refused again and again
	// (a data exception): set aside for a person, as .corrupt files are.
	spoolRefusedExt = ".refused"
	spoolVersion    = 1
)

// spool keeps batches ClickHouse did not take, one file per batch, until
// they are replayed. A file appears under its final name only once it is
// complete and fsync'd (write to .tmp, fsync, rename, fsync the folder), so
// a crash leaves whole batches or nothing. Names sort oldest first across
// restarts. The writer's goroutine writes, replays and removes batches,
// and Enqueue writes those the queue has no room for: mu guards the list
// of files and the sequence. The gauges are atomic for Stats.
type spool struct {
	dir string
	max int64

	mu    sync.Mutex
	files []spoolFile // oldest first
	seq   uint64

	count atomic.Int64
	bytes atomic.Int64
}

type spoolFile struct {
	name string
	size int64
}

// spoolBatch is a spool file's content, gob-encoded. Gob flattens
// pointers and leaves zero values out, so a *int64 pointing at 0 would
// come back nil ("no usage reported" instead of "0 tokens"): Set records
// which pointers were non-nil.
type spoolBatch struct {
	Version int
	Facts   []spoolFact
}

type spoolFact struct {
	Fact collector.Fact
	Set  uint8 // bit i: pointer i of factPointers was non-nil
	// ChunkStarts and ChunkEnds hold Fact.Chunks as spans of its body,
	// as the table does (chunkSpans), when they are runs of it: the
	// texts are then not written twice. Files without them still read.
	ChunkStarts, ChunkEnds []uint32
}

// factPointers are the fact's optional numbers, in the order of Set's bits.
func factPointers(f *collector.Fact) []**int64 {
	return []**int64{&f.TTFTMs, &f.TTFAMs, &f.Usage.Input, &f.Usage.Output, &f.Usage.CacheRead, &f.Usage.CacheWrite, &f.Usage.Reasoning, &f.Usage.CacheWrite1h}
}

// openSpool creates dir if needed, removes half-written files of an
// earlier run and takes stock of the batches waiting there.
func openSpool(dir string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	s := &spool{dir: dir, max: maxBytes}
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir():
		case strings.HasSuffix(name, spoolTmpExt):
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("spool: remove half-written %s: %w", name, err)
			}
		case strings.HasSuffix(name, spoolExt):
			info, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("spool: %w", err)
			}
			s.files = append(s.files, spoolFile{name: name, size: info.Size()})
		}
	}
	sort.Slice(s.files, func(i, j int) bool { return s.files[i].name < s.files[j].name })
	var total int64
	for _, f := range s.files {
		total += f.size
	}
	s.count.Store(int64(len(s.files)))
	s.bytes.Store(total)
	return s, nil
}

func (s *spool) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files) == 0
}

// write stores a batch and returns its file name and size. It refuses
// with errSpoolFull, writing nothing, when the batch would take the spool
// past its limit.
func (s *spool) write(facts []*collector.Fact) (string, int64, error) {
	b := spoolBatch{Version: spoolVersion, Facts: make([]spoolFact, len(facts))}
	for i, f := range facts {
		b.Facts[i].Fact = *f
		if starts, ends, ok := chunkSpans(f.ResponseBody, f.Chunks); ok {
			b.Facts[i].Fact.Chunks = nil
			b.Facts[i].ChunkStarts, b.Facts[i].ChunkEnds = starts, ends
		}
		for bit, p := range factPointers(f) {
			if *p != nil {
				b.Facts[i].Set |= 1 << bit
			}
		}
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&b); err != nil {
		return "", 0, fmt.Errorf("spool: encode: %w", err)
	}
	size := int64(buf.Len())
	// Held through the write: two writers must not both fit the last room.
	s.mu.Lock()
	defer s.mu.Unlock()
	if used := s.bytes.Load(); used+size > s.max {
		return "", size, fmt.Errorf("%w: %d bytes used + %d > limit %d", errSpoolFull, used, size, s.max)
	}
	s.seq++
	// Time first so that names sort oldest first across restarts; the
	// sequence breaks ties within one run.
	name := fmt.Sprintf("%020d-%08d%s", time.Now().UnixNano(), s.seq, spoolExt)
	if err := writeFileSync(s.dir, name, buf.Bytes()); err != nil {
		return "", size, err
	}
	s.files = append(s.files, spoolFile{name: name, size: size})
	s.count.Add(1)
	s.bytes.Add(size)
	return name, size, nil
}

// writeFileSync writes data to dir/name durably: temp file, fsync, rename,
// fsync of the folder.
func writeFileSync(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+spoolTmpExt)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("spool: write %s: %w", name, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: sync %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: sync %s: %w", dir, err)
	}
	return nil
}

// names lists the batches, oldest first.
func (s *spool) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.files))
	for i, f := range s.files {
		out[i] = f.name
	}
	return out
}

// read decodes a spooled batch.
func (s *spool) read(name string) ([]*collector.Fact, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var b spoolBatch
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&b); err != nil {
		return nil, fmt.Errorf("spool: decode %s: %w", name, err)
	}
	if b.Version != spoolVersion {
		return nil, fmt.Errorf("spool: %s has format version %d, this collector reads %d", name, b.Version, spoolVersion)
	}
	facts := make([]*collector.Fact, len(b.Facts))
	for i := range b.Facts {
		f := &b.Facts[i].Fact
		if len(b.Facts[i].ChunkEnds) > 0 {
			f.Chunks = spanChunks(f.ResponseBody, b.Facts[i].ChunkStarts, b.Facts[i].ChunkEnds)
		}
		for bit, p := range factPointers(f) {
			if b.Facts[i].Set&(1<<bit) != 0 && *p == nil {
				*p = new(int64) // it pointed at 0
			}
		}
		facts[i] = f
	}
	return facts, nil
}

// remove deletes a batch after its rows were stored.
func (s *spool) remove(name string) error {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: remove %s: %w", name, err)
	}
	s.forget(name)
	return nil
}

// setAside renames a batch to name+ext (spoolBadExt: it cannot be read;
// spoolRefusedExt: ClickHouse keeps refusing it), out of the replay's way
// but kept for a person to look at. Its bytes stop counting.
func (s *spool) setAside(name, ext string) error {
	err := os.Rename(filepath.Join(s.dir, name), filepath.Join(s.dir, name+ext))
	s.forget(name)
	if err != nil {
		return fmt.Errorf("spool: set aside %s: %w", name, err)
	}
	return nil
}

func (s *spool) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.files {
		if f.name == name {
			s.files = append(s.files[:i], s.files[i+1:]...)
			s.count.Add(-1)
			s.bytes.Add(-f.size)
			return
		}
	}
}
