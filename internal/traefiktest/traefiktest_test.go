package traefiktest

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInstallPluginShipsSourcesOnly(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := installPlugin(root, dst); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{".traefik.yml", "go.mod", "plugin/llmtap.go", "plugin/record.go"} {
		if _, err := os.Stat(filepath.Join(dst, f)); err != nil {
			t.Errorf("%s not installed: %v", f, err)
		}
	}
	tests, _ := filepath.Glob(filepath.Join(dst, "plugin", "*_test.go"))
	if len(tests) != 0 {
		t.Errorf("test files installed: %v", tests)
	}
	if err := installPlugin(t.TempDir(), dst); err == nil {
		t.Error("a root without plugin sources was accepted")
	}
}

func TestFreeAddrIsFree(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("address %q, want loopback", addr)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("something listens on %s", addr)
	}
}

// TestStartFailsFastWhenTraefikExits: a binary that exits at once is
// reported with its log, without waiting out the readiness deadline.
func TestStartFailsFastWhenTraefikExits(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "fake-traefik")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'fake traefik: bad flag' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tr, err := Start(Options{Bin: bin, Dir: t.TempDir(), Entry: addr, Root: root, ReadyHosts: []string{"a.test"}})
	if err == nil {
		tr.Stop()
		t.Fatal("Start succeeded with a binary that exits")
	}
	if !strings.Contains(err.Error(), "fake traefik: bad flag") {
		t.Errorf("error %q does not carry Traefik's log", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Start took %v to notice the exit", d)
	}
	if _, err := Start(Options{Dir: t.TempDir()}); err == nil {
		t.Error("Start accepted options without Bin, Entry and Root")
	}
}
