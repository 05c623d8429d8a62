// Command upstream is the benchmarks' upstream and collector sink: a small
// JSON endpoint, an SSE endpoint that streams a short completion, and POST
// /v1/records that accepts the plugin's batches and counts the records. It
// is as cheap as an upstream can be, so that the benchmarks measure the
// proxy; the mock LLM upstream with the providers' formats and knobs is
// mock/ (used by the demo and the end-to-end tests).
package main

import (
	"time"

	"bufio"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
)

const jsonBody = `{"id":"chatcmpl-bench","object":"chat.completion","model":"mock-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`

func main() {
	addr := flag.String("addr", "127.0.0.1:18900", "listen address")
	events := flag.Int("events", 10, "SSE events per streamed response")
	gap := flag.Duration("gap", 0, "pause between SSE events")
	first := flag.Duration("first", 0, "pause before the first SSE event (the true time to first token)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	var records, dropped atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(jsonBody)))
		_, _ = io.WriteString(w, jsonBody)
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		w.WriteHeader(http.StatusOK)
		f.Flush() // headers now, the first token after -first
		time.Sleep(*first)
		for i := 0; i < *events; i++ {
			if i > 0 && *gap > 0 {
				time.Sleep(*gap)
			}
			_, _ = fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"model\":\"mock-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok%d \"}}]}\n\n", i)
			f.Flush()
		}
		// The usage chunk OpenAI sends with stream_options.include_usage.
		_, _ = fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"model\":\"mock-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", *events, 9+*events)
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	})
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"message":"the mock is overloaded","type":"server_error"}}`)
	})
	mux.HandleFunc("POST /v1/records", func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			records.Add(1)
		}
		if n, err := strconv.ParseInt(r.Header.Get("Llmtap-Dropped"), 10, 64); err == nil {
			dropped.Add(n)
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /v1/records/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d %d\n", records.Load(), dropped.Load())
	})

	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Error("upstream", "err", err)
		os.Exit(1)
	}
}
