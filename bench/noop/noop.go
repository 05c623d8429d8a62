// Package noop is the benchmark's floor: a Yaegi plugin that only calls
// next. The difference between it and a bare route is what any plugin
// pays for being interpreted; the difference between it and llmtap is ours.
package noop

import (
	"context"
	"net/http"
)

// Config is empty: there is nothing to configure.
type Config struct{}

// CreateConfig returns the empty configuration.
func CreateConfig() *Config { return &Config{} }

// New returns next wrapped in a handler that does nothing else.
func New(_ context.Context, next http.Handler, _ *Config, _ string) (http.Handler, error) {
	return &noop{next: next}, nil
}

type noop struct{ next http.Handler }

func (n *noop) ServeHTTP(rw http.ResponseWriter, req *http.Request) { n.next.ServeHTTP(rw, req) }
