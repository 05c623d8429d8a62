// Command llmtap-mock serves the mock LLM upstream of package
// github.com/llmtap/llmtap/mock: OpenAI chat completions and Responses,
// Anthropic Messages, OpenAI-style text to speech, per-request knobs, and
// each request's truth at GET /mock/truth/{request_id}.
//
//	llmtap-mock [-addr 127.0.0.1:18900] [-ttft 100ms] [-gap 20ms] [-tokens 16]
//
// The flags are the defaults of requests that set no knob; 0 means none.
// It logs one line when it listens. On SIGINT or SIGTERM it stops
// accepting, lets the requests in flight finish for up to 5 s, then closes
// the rest (a hang=forever request would wait forever).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/llmtap/llmtap/mock"
)

// shutdownGrace bounds how long the requests in flight get to finish.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "llmtap-mock:", err)
		os.Exit(1)
	}
}

// run is main without the process: it serves until ctx ends. ready, when
// not nil, gets the address it listens on.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("llmtap-mock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:18900", "listen address")
	ttft := fs.Duration("ttft", mock.DefaultTTFT, "time to first token (first audio byte) of a request without the ttft knob")
	gap := fs.Duration("gap", mock.DefaultGap, "pause between tokens (audio chunks) of a request without the gap knob")
	tokens := fs.Int("tokens", mock.DefaultTokens, "tokens (audio chunks) of a response without the tokens knob")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case *ttft < 0:
		return fmt.Errorf("-ttft %s: must not be negative", *ttft)
	case *gap < 0:
		return fmt.Errorf("-gap %s: must not be negative", *gap)
	case *tokens < 0:
		return fmt.Errorf("-tokens %d: must not be negative", *tokens)
	}
	// In mock.Options zero takes the default and a negative value means
	// none; here 0 means none.
	o := mock.Options{TTFT: *ttft, Gap: *gap, Tokens: *tokens}
	if o.TTFT == 0 {
		o.TTFT = -1
	}
	if o.Gap == 0 {
		o.Gap = -1
	}
	if o.Tokens == 0 {
		o.Tokens = -1
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: mock.New(o), ReadHeaderTimeout: 10 * time.Second}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("llmtap-mock listening", "addr", ln.Addr().String(), "ttft", *ttft, "gap", *gap, "tokens", *tokens)
	if ready != nil {
		ready <- ln.Addr().String()
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Streams or hangs still open after the grace period.
		_ = srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
