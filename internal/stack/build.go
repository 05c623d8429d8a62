package stack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Module is the root module's path, by which Root knows the checkout.
const Module = "github.com/llmtap/llmtap"

// ErrNoCheckout says Root found no llmtap checkout above the folder.
var ErrNoCheckout = errors.New("not inside an llmtap checkout")

// Root returns the checkout's root: the nearest folder at or above the
// working folder whose go.mod declares Module.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if module(filepath.Join(dir, "go.mod")) == Module {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoCheckout
		}
		dir = parent
	}
}

func module(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.TrimSpace(m)
		}
	}
	return ""
}

// Bins are the programs the stack runs that the checkout builds.
type Bins struct {
	Collector string
	Mock      string
	Traefik   string
}

// Build builds the collector and the mock into root/bin (one build at a
// time, each binary renamed into place, so a concurrent run never sees a
// half-written one) and finds Traefik: $TRAEFIK_BIN, else
// scripts/traefik-build.sh (cached by version; the first build takes
// minutes).
func Build(ctx context.Context, root string) (Bins, error) {
	dir := filepath.Join(root, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Bins{}, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Bins{}, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return Bins{}, err
	}
	b := Bins{Collector: filepath.Join(dir, "llmtap-collector"), Mock: filepath.Join(dir, "llmtap-mock")}
	if err := goBuild(ctx, filepath.Join(root, "collector"), b.Collector, "./cmd/llmtap-collector"); err != nil {
		return Bins{}, err
	}
	if err := goBuild(ctx, root, b.Mock, "./mock/cmd/llmtap-mock"); err != nil {
		return Bins{}, err
	}
	if b.Traefik, err = TraefikBin(ctx, root); err != nil {
		return Bins{}, err
	}
	return b, nil
}

// BuildTool builds one more program into root/bin and returns its path:
// pkg (./bench/load) of the module in root/dir ("." or "collector"), named
// for its path (bench-load).
func BuildTool(ctx context.Context, root, dir, pkg string) (string, error) {
	out := filepath.Join(root, "bin", strings.ReplaceAll(strings.TrimPrefix(pkg, "./"), "/", "-"))
	return out, goBuild(ctx, filepath.Join(root, dir), out, pkg)
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	tmp := out + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return os.Rename(tmp, out)
}

// TraefikBin returns $TRAEFIK_BIN, or the pinned Traefik built and cached
// by scripts/traefik-build.sh.
func TraefikBin(ctx context.Context, root string) (string, error) {
	if bin := os.Getenv("TRAEFIK_BIN"); bin != "" {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "traefik-build.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/traefik-build.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
