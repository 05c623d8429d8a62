package mock

import (
	"context"
	"sync"
	"time"
)

// Truth is what the server really did for one request. Times are wall
// clock Unix nanoseconds, taken right after the write concerned was
// flushed; durations are measured on the monotonic clock from the request's
// arrival at the handler. A zero time or duration means the event did not
// happen.
type Truth struct {
	RequestID string `json:"request_id"`
	Endpoint  string `json:"endpoint"` // the path: /v1/chat/completions, /v1/responses, /v1/messages, /v1/audio/speech
	// ReceivedUnixNs is the request's arrival at the handler.
	ReceivedUnixNs int64 `json:"received_unix_ns"`
	// FirstByteUnixNs is the flush of the first body byte.
	FirstByteUnixNs int64 `json:"first_byte_unix_ns"`
	// FirstTokenUnixNs is the flush of the first write that carries
	// generated content (a content chunk, output_text.delta or
	// content_block_delta; never a role-only chunk or a lifecycle event).
	// Streams only: a non-streamed body, an error or an audio stream has
	// none.
	FirstTokenUnixNs int64 `json:"first_token_unix_ns"`
	// DoneUnixNs is when the server was done: the last write, the drop,
	// or noticing that the client left.
	DoneUnixNs int64 `json:"done_unix_ns"`
	// TTFTUs is FirstTokenUnixNs less the arrival, in microseconds.
	TTFTUs int64 `json:"ttft_us"`
	// TTFAUs is the time to the first audio byte (speech only), in
	// microseconds.
	TTFAUs int64 `json:"ttfa_us"`
	// InputTokens is the prompt's word count (see the package doc), as
	// the usage reports it.
	InputTokens int `json:"input_tokens"`
	// OutputTokens counts the tokens whose text was sent (audio chunks for
	// speech): the tokens knob for a complete response, fewer for a dropped
	// or cancelled one, 0 for an error.
	OutputTokens int `json:"output_tokens"`
	// Bytes and SHA256 (hex) are those of the response body as written,
	// without the chunked encoding's framing.
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	// Status is the status sent; 0 when the client left before any.
	Status int `json:"status"`
	// Cancelled: the client went away before the end.
	Cancelled bool `json:"cancelled"`
	// Dropped: the drop knob broke the connection off.
	Dropped bool `json:"dropped"`
}

// truthStore keeps the latest truths, at most max, and knows the requests
// still being served.
type truthStore struct {
	mu     sync.Mutex
	max    int
	seq    uint64
	byID   map[string]kept
	order  []slot // ring of the stored truths, oldest at next once full
	next   int
	flying map[string]chan struct{} // closed when the request's truth is stored
}

type kept struct {
	t   Truth
	seq uint64
}

// slot is a place in the ring: a truth stored again under the same id gets
// a new slot, and the old one must not evict it.
type slot struct {
	id  string
	seq uint64
}

func newTruthStore(limit int) *truthStore {
	return &truthStore{max: limit, byID: map[string]kept{}, flying: map[string]chan struct{}{}}
}

// begin notes a request in flight; end closes the returned channel.
func (s *truthStore) begin(id string) chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	s.flying[id] = ch // a later request with the same id is the one to wait for
	s.mu.Unlock()
	return ch
}

// end stores t, forgetting the oldest truth when full, and ends the flight.
func (s *truthStore) end(t Truth, flight chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flying[t.RequestID] == flight {
		delete(s.flying, t.RequestID)
	}
	close(flight)
	s.seq++
	if len(s.order) < s.max {
		s.order = append(s.order, slot{t.RequestID, s.seq})
	} else {
		old := s.order[s.next]
		if k, ok := s.byID[old.id]; ok && k.seq == old.seq {
			delete(s.byID, old.id)
		}
		s.order[s.next] = slot{t.RequestID, s.seq}
		s.next = (s.next + 1) % s.max
	}
	s.byID[t.RequestID] = kept{t, s.seq}
}

// get returns the truth of id, waiting up to wait (or until ctx ends) for a
// request with that id still in flight.
func (s *truthStore) get(ctx context.Context, id string, wait time.Duration) (Truth, bool) {
	s.mu.Lock()
	flight := s.flying[id]
	s.mu.Unlock()
	if flight != nil {
		t := time.NewTimer(wait)
		select {
		case <-flight:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.byID[id]
	return k.t, ok
}
