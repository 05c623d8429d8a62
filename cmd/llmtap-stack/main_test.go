package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// Bad settings are refused before anything starts, naming the setting.
func TestRunRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct {
		desc string
		args []string
		env  map[string]string
		want string
	}{
		{"no command", nil, nil, "usage: llmtap-stack up|down|demo|env"},
		{"unknown command", []string{"upp"}, nil, `unknown command "upp"`},
		{"upstream without a scheme", []string{"up"}, map[string]string{"UPSTREAM": "api.openai.com"}, "UPSTREAM=api.openai.com: want http://host[:port][/path]"},
		{"upstream with a query", []string{"up"}, map[string]string{"UPSTREAM": "http://a/b?c=d"}, "UPSTREAM=http://a/b?c=d"},
		{"an upstream of a list without a scheme", []string{"up"}, map[string]string{"UPSTREAM": "http://a:1,b:2"}, `"b:2": want http://host[:port][/path]`},
		{"weights without upstreams", []string{"up"}, map[string]string{"WEIGHTS": "90,10"}, "WEIGHTS=90,10: needs UPSTREAM=URL1,URL2"},
		{"weights not one per upstream", []string{"up"}, map[string]string{"UPSTREAM": "http://a:1,http://b:2", "WEIGHTS": "90"}, "WEIGHTS=90: want one weight per upstream"},
		{"a weight not a number", []string{"up"}, map[string]string{"UPSTREAM": "http://a:1,http://b:2", "WEIGHTS": "90,x"}, `"x": want whole numbers`},
		{"weights of 0", []string{"up"}, map[string]string{"UPSTREAM": "http://a:1,http://b:2", "WEIGHTS": "0,0"}, "add up to 0"},
		{"route with a space", []string{"up"}, map[string]string{"ROUTE": "my route"}, "ROUTE=my route: want letters, digits, . _ -"},
		{"limits neither 0 nor 1", []string{"up"}, map[string]string{"LIMITS": "yes"}, "LIMITS=yes: want 1 (on) or 0 (off)"},
		{"port not a number", []string{"up"}, map[string]string{"TRAEFIK_PORT": "80a"}, "TRAEFIK_PORT=80a: want a TCP port number"},
		{"port out of range", []string{"demo"}, map[string]string{"REDIS_PORT": "70000"}, "REDIS_PORT=70000: want a TCP port number"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			env := func(k string) string {
				if k == "LLMTAP_RUN" {
					return t.TempDir()
				}
				return tc.env[k]
			}
			err := run(context.Background(), tc.args, env, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%v): %v, want an error with %q", tc.args, err, tc.want)
			}
		})
	}
}
