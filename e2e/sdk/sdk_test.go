//go:build e2e

package sdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmtap/llmtap/internal/recordsink"
	"github.com/llmtap/llmtap/internal/stack"
	"github.com/llmtap/llmtap/mock"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// env is one Traefik whose only router sends everything through the
// plugin to the mock, and the sink that keeps the plugin's records.
var env struct {
	entry string // Traefik's entrypoint, http://host:port
	mock  *mock.Server
	sink  *recordsink.Sink
}

func TestMain(m *testing.M) {
	tb := &stack.MainTB{}
	code := run(m, stack.New(tb))
	tb.Close()
	os.Exit(code)
}

func run(m *testing.M, s *stack.T) int {
	env.mock = mock.New(mock.Options{TTFT: 20 * time.Millisecond, Gap: 10 * time.Millisecond, Tokens: 40})
	up := httptest.NewServer(env.mock)
	defer up.Close()
	env.sink = recordsink.New()
	sinkSrv := httptest.NewServer(env.sink)
	defer sinkSrv.Close()
	tr := s.Traefik(fmt.Sprintf(`
http:
  routers:
    sdk:
      rule: PathPrefix(`+"`/`"+`)
      service: up
      middlewares: [tap]
    usage:
      rule: PathPrefix(`+"`/usage/`"+`)
      service: up
      middlewares: [strip, tapusage]
  middlewares:
    tap:
      plugin:
        llmtap:
          collectorURL: %[1]q
          route: sdk
          flushInterval: 50ms
    strip:
      stripPrefix:
        prefixes: ["/usage"]
    tapusage:
      plugin:
        llmtap:
          collectorURL: %[1]q
          route: usage
          flushInterval: 50ms
          includeUsage: true
  services:
    up:
      loadBalancer:
        servers:
          - url: %[2]q
`, sinkSrv.URL, up.URL), func(tr *stack.Traefik) { tr.ReadyPath = "/healthz" })
	env.entry = tr.URL()
	return m.Run()
}

// sameAsSent checks the plugin passed on, and recorded, the body the mock
// sent: its length and hash against the mock's truth.
func sameAsSent(t *testing.T, resp *http.Response) llmtap.Record {
	t.Helper()
	if resp == nil {
		t.Fatal("no response")
	}
	id := resp.Header.Get(llmtap.HeaderRequestID)
	truth, ok := env.mock.Truth(id)
	if !ok {
		t.Fatalf("the mock has no truth for request %q", id)
	}
	rec := env.sink.Record(t, id)
	sum := sha256.Sum256(rec.ResponseHead)
	// An SDK closes the connection once it has read the stream's end; when
	// that beats the proxy to the end of the upstream's body, the plugin
	// sees the client gone and says so, and the collector, which finds the
	// end marker, stores the request as completed (derive, provider.StreamEnded).
	ended := bytes.HasSuffix(rec.ResponseHead, []byte("data: [DONE]\n\n")) || bytes.Contains(rec.ResponseHead, []byte("event: message_stop"))
	outcomeOK := rec.Outcome == llmtap.OutcomeCompleted || (rec.Outcome == llmtap.OutcomeClientCancelled && ended)
	if rec.Status != http.StatusOK || !rec.Streaming || !outcomeOK || rec.ResponseTruncated {
		t.Errorf("record: status %d streaming %v outcome %q (stream ended: %v) truncated %v", rec.Status, rec.Streaming, rec.Outcome, ended, rec.ResponseTruncated)
	}
	if rec.ResponseBytes != truth.Bytes || hex.EncodeToString(sum[:]) != truth.SHA256 {
		t.Errorf("record: %d bytes (sha256 %x), the mock sent %d (%s)", rec.ResponseBytes, sum, truth.Bytes, truth.SHA256)
	}
	// Each token is its own write upstream; the proxy reads what has
	// arrived, so on a busy machine two tokens 10 ms apart now and then
	// come in one read. A stream held back would come in a few writes.
	if len(rec.WriteEnds) < truth.OutputTokens/2 {
		t.Errorf("record: %d writes, the mock streamed %d tokens: the stream was not passed on write by write", len(rec.WriteEnds), truth.OutputTokens)
	}
	return rec
}

func TestOpenAIStreamsThroughThePlugin(t *testing.T) {
	client := openai.NewClient(option.WithBaseURL(env.entry+"/v1/"), option.WithAPIKey("sk-sdk-test"), option.WithMaxRetries(0))
	var resp *http.Response
	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         "gpt-4o-mini",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello in forty words.")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}, option.WithResponseInto(&resp))
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content == "" || acc.Usage.CompletionTokens != 40 {
		t.Fatalf("after %d chunks: %+v", chunks, acc.ChatCompletion)
	}
	sameAsSent(t, resp)
}

func TestAnthropicStreamsThroughThePlugin(t *testing.T) {
	client := anthropic.NewClient(anthropicoption.WithBaseURL(env.entry), anthropicoption.WithAPIKey("sk-ant-sdk-test"), anthropicoption.WithMaxRetries(0))
	var resp *http.Response
	stream := client.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 64,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello in forty words."))},
	}, anthropicoption.WithResponseInto(&resp))
	var msg anthropic.Message
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) == 0 || msg.Content[0].Text == "" || msg.Usage.OutputTokens != 40 {
		t.Fatalf("message: %+v", msg)
	}
	sameAsSent(t, resp)
}

// TestOpenAIUsageAskedForByThePlugin: a client that does not ask for usage
// gets it, and so does the record, on a router with includeUsage.
func TestOpenAIUsageAskedForByThePlugin(t *testing.T) {
	for _, tt := range []struct {
		base  string
		usage bool
	}{{"/v1/", false}, {"/usage/v1/", true}} {
		client := openai.NewClient(option.WithBaseURL(env.entry+tt.base), option.WithAPIKey("sk-sdk-test"), option.WithMaxRetries(0))
		var resp *http.Response
		stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
		}, option.WithResponseInto(&resp))
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if got := acc.Usage.CompletionTokens > 0; got != tt.usage || acc.Choices[0].Message.Content == "" {
			t.Fatalf("%s: usage %+v, content %q; want usage %v", tt.base, acc.Usage, acc.Choices[0].Message.Content, tt.usage)
		}
		rec := sameAsSent(t, resp)
		if got := bytes.Contains(rec.RequestBody, []byte(`"include_usage":true`)); got != tt.usage {
			t.Errorf("%s: the recorded request body %s", tt.base, rec.RequestBody)
		}
	}
}
