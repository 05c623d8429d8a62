package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// group runs the collector's parts and stops them in one stated order. It
// is oklog/run's idea (each part a run and a stop), except that parts stop
// one at a time: a part is stopped only once the part after it has
// returned, because each one feeds the next (the HTTP server feeds the
// writer, which writes through the ClickHouse connection).
//
// Parts start in the order they were added and stop in the reverse order.
type group struct {
	parts []part
	log   *slog.Logger
}

type part struct {
	name string
	// run does the part's work and returns once stop asked it to; nil
	// for a part that only needs closing (a client).
	run func() error
	// stop asks run to return and waits for it within ctx, the shutdown
	// deadline. It is called exactly once, also when run already returned.
	stop func(ctx context.Context) error
}

// add appends a part: it starts after the parts added before it and stops
// before them.
func (g *group) add(name string, run func() error, stop func(ctx context.Context) error) {
	g.parts = append(g.parts, part{name: name, run: run, stop: stop})
}

// addLoop appends a part that runs until its context ends: stopping it
// cancels that context and waits for run to return (having finished what
// it holds, as a drain does) within the shutdown deadline.
func (g *group) addLoop(name string, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	g.add(name,
		func() error {
			defer close(done)
			return run(ctx)
		},
		func(stopCtx context.Context) error {
			cancel()
			select {
			case <-done:
				return nil
			case <-stopCtx.Done():
				return stopCtx.Err()
			}
		})
}

// run starts every part's run in its own goroutine, in order, and waits
// until ctx ends (a signal) or a run returns (a part failed: the others are
// stopped too). Then it stops the parts in reverse order, each stop and the
// return of its run awaited before the next part is stopped, all within
// timeout. It returns nil after a signal and a clean stop; else the failed
// part's error and every stop that did not finish in time.
func (g *group) run(ctx context.Context, timeout time.Duration) error {
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(g.parts))
	ended := make([]chan struct{}, len(g.parts)) // closed when part i's run returned
	errs := make([]error, len(g.parts))          // its error, set before ended[i] closes
	for i, p := range g.parts {
		if p.run == nil {
			continue
		}
		ended[i] = make(chan struct{})
		go func() {
			err := p.run()
			errs[i] = err
			close(ended[i])
			results <- result{i: i, err: err}
		}()
	}

	failed := -1
	var cause error
	select {
	case <-ctx.Done():
		g.log.Info("shutting down", "cause", context.Cause(ctx), "timeout", timeout)
	case r := <-results:
		failed = r.i
		cause = r.err
		if cause == nil {
			cause = errors.New("stopped by itself")
		}
		cause = fmt.Errorf("%s: %w", g.parts[r.i].name, cause)
		g.log.Info("shutting down: a part stopped", "part", g.parts[r.i].name, "timeout", timeout)
	}

	deadline, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	var cut []error
	for i := len(g.parts) - 1; i >= 0; i-- {
		p := g.parts[i]
		t := time.Now()
		err := p.stop(deadline)
		if err == nil && ended[i] != nil {
			select {
			case <-ended[i]:
				if i != failed {
					err = errs[i]
				}
			case <-deadline.Done():
				err = fmt.Errorf("still running: %w", deadline.Err())
			}
		}
		if err != nil {
			cut = append(cut, fmt.Errorf("%s: %w", p.name, err))
			continue
		}
		g.log.Info("stopped", "part", p.name, "took", time.Since(t).Round(time.Millisecond))
	}
	if len(cut) > 0 {
		err := fmt.Errorf("shutdown not clean (shutdown_timeout %s): %w", timeout, oneLine(cut))
		if cause != nil {
			return oneLine{cause, err}
		}
		return err
	}
	g.log.Info("shutdown complete", "took", time.Since(start).Round(time.Millisecond))
	return cause
}

// oneLine joins errors as errors.Join does, on one line: main prints the
// error as the process's last log line.
type oneLine []error

func (e oneLine) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e oneLine) Unwrap() []error { return e }
