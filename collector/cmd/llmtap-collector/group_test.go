package main

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder notes what the parts of a test group did, in order.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) note(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// actor is a part whose run returns when stopped, after lag, or with fail.
func (r *recorder) actor(g *group, name string, lag time.Duration, fail <-chan error) {
	stopped := make(chan struct{})
	g.add(name,
		func() error {
			r.note("start " + name)
			select {
			case <-stopped:
				time.Sleep(lag)
				r.note("end " + name)
				return nil
			case err := <-fail:
				r.note("fail " + name)
				return err
			}
		},
		func(ctx context.Context) error {
			r.note("stop " + name)
			close(stopped)
			return nil
		})
}

func (r *recorder) closer(g *group, name string) {
	g.add(name, nil, func(context.Context) error {
		r.note("close " + name)
		return nil
	})
}

func TestGroupStopsInReverseOrderOneAtATime(t *testing.T) {
	r := &recorder{}
	g := &group{log: slog.New(slog.DiscardHandler)}
	r.closer(g, "clickhouse")
	r.closer(g, "redis")
	r.actor(g, "writer", 20*time.Millisecond, nil)
	r.actor(g, "http", 20*time.Millisecond, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := g.run(ctx, 5*time.Second); err != nil {
		t.Fatalf("run after a signal and a clean stop: %v", err)
	}
	got := r.get()
	// Both runs started before the signal, in either order.
	want := []string{"stop http", "end http", "stop writer", "end writer", "close redis", "close clickhouse"}
	if len(got) != 2+len(want) || !slices.Equal(got[2:], want) {
		t.Errorf("events %q,\nwant two starts then %q", got, want)
	}
}

func TestGroupPartFailureStopsTheOthers(t *testing.T) {
	r := &recorder{}
	g := &group{log: slog.New(slog.DiscardHandler)}
	fail := make(chan error, 1)
	r.closer(g, "clickhouse")
	r.actor(g, "writer", 0, fail)
	r.actor(g, "http", 0, nil)
	boom := errors.New("spool unusable")
	time.AfterFunc(20*time.Millisecond, func() { fail <- boom })
	err := g.run(context.Background(), 5*time.Second)
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "writer: ") {
		t.Fatalf("run: %v, want the writer's failure", err)
	}
	got := r.get()
	want := []string{"fail writer", "stop http", "end http", "stop writer", "close clickhouse"}
	if len(got) != 2+len(want) || !slices.Equal(got[2:], want) {
		t.Errorf("events %q,\nwant two starts then %q", got, want)
	}
}

func TestGroupReportsWhatTheDeadlineCut(t *testing.T) {
	r := &recorder{}
	g := &group{log: slog.New(slog.DiscardHandler)}
	r.closer(g, "clickhouse")
	r.actor(g, "writer", time.Second, nil) // ends after the deadline
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := g.run(ctx, 100*time.Millisecond)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("run took %s with a 100ms timeout", took)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "shutdown not clean (shutdown_timeout 100ms): writer: still running") {
		t.Fatalf("run: %v", err)
	}
	if got := r.get(); got[len(got)-1] != "close clickhouse" {
		t.Errorf("the parts after the cut one were not stopped: %q", got)
	}
}

// TestGroupLoopDrainsBeforeTheNextStops: a loop part's context ends when
// it is stopped, and the parts before it stop only once it has returned
// (what it drained included).
func TestGroupLoopDrainsBeforeTheNextStops(t *testing.T) {
	r := &recorder{}
	g := &group{log: slog.New(slog.DiscardHandler)}
	r.closer(g, "redis")
	g.addLoop("settlements", func(ctx context.Context) error {
		<-ctx.Done()
		r.note("drained settlements")
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if err := g.run(ctx, 5*time.Second); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := r.get(), []string{"drained settlements", "close redis"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}
