package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	tests := []struct {
		desc   string
		args   []string
		tokens int // content tokens in a response without knobs
	}{
		{desc: "flags", args: []string{"-ttft", "1ms", "-gap", "0", "-tokens", "3"}, tokens: 3},
		{desc: "0 tokens means none", args: []string{"-ttft", "0", "-tokens", "0"}, tokens: 0},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stderr bytes.Buffer
			ready := make(chan string, 1)
			done := make(chan error, 1)
			go func() { done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, tt.args...), &stderr, ready) }()
			var addr string
			select {
			case addr = <-ready:
			case err := <-done:
				t.Fatalf("run: %v", err)
			}

			resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			if n := strings.Count(string(body), `"content":"tok`); n != tt.tokens {
				t.Errorf("%d content tokens, want %d", n, tt.tokens)
			}

			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run after shutdown: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no shutdown")
			}
			if log := stderr.String(); strings.Count(log, "\n") != 1 || !strings.Contains(log, `msg="llmtap-mock listening" addr=`+addr) {
				t.Errorf("log %q, want one line naming the address", log)
			}
		})
	}
}

func TestRunBadFlags(t *testing.T) {
	tests := []struct {
		desc string
		args []string
		want string
	}{
		{desc: "negative ttft", args: []string{"-ttft", "-1s"}, want: "-ttft -1s: must not be negative"},
		{desc: "negative gap", args: []string{"-gap", "-1ms"}, want: "-gap -1ms: must not be negative"},
		{desc: "negative tokens", args: []string{"-tokens", "-2"}, want: "-tokens -2: must not be negative"},
		{desc: "not a duration", args: []string{"-ttft", "soon"}, want: "invalid value"},
		{desc: "stray argument", args: []string{"serve"}, want: "unexpected arguments"},
		{desc: "bad address", args: []string{"-addr", "nowhere:-1"}, want: "-addr nowhere:-1: listen tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want an error with %q", tt.args, err, tt.want)
			}
		})
	}
}
