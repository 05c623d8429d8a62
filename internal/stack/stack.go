package stack

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Stack is parts started in order and stopped in reverse.
type Stack struct {
	parts   []Part
	started int
}

// Add appends parts, started after those before them.
func (s *Stack) Add(parts ...Part) { s.parts = append(s.parts, parts...) }

// Parts are the parts in start order.
func (s *Stack) Parts() []Part { return s.parts }

// Start starts each part not started yet, in turn. When one fails, those already started
// are stopped and the error names the part.
func (s *Stack) Start(ctx context.Context) error {
	for _, p := range s.parts[s.started:] {
		if err := p.Start(ctx); err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), StopWait)
			defer cancel()
			return errors.Join(fmt.Errorf("start %s: %w", p.Name(), err), s.Stop(stopCtx))
		}
		s.started++
	}
	return nil
}

// Stop stops the started parts in reverse order within ctx's deadline
// (StopWait per part when it has none): the entry point first, so no
// request is left half-recorded, storage last, after the collector has
// written what it holds.
func (s *Stack) Stop(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(len(s.parts))*StopWait)
		defer cancel()
	}
	var errs []error
	for ; s.started > 0; s.started-- {
		p := s.parts[s.started-1]
		if err := p.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", p.Name(), err))
		}
	}
	return errors.Join(errs...)
}
