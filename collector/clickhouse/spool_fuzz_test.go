package clickhouse

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector"
)

// FuzzSpoolRead: a spool file that is cut, corrupted or written by
// something else is refused with an error, never a panic.
func FuzzSpoolRead(f *testing.F) {
	dir := f.TempDir()
	s, err := openSpool(dir, 1<<30)
	if err != nil {
		f.Fatal(err)
	}
	name, _, err := s.write([]*collector.Fact{testFact(1), testFact(2), {RequestID: "r", Start: time.Unix(1, 0)}})
	if err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte("not gob"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "batch"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		sp := &spool{dir: d}
		facts, err := sp.read("batch")
		if err == nil {
			for _, f := range facts {
				if f == nil {
					t.Fatal("a nil fact")
				}
			}
		}
	})
}
