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

// truthStore keeps the truths of the latest max requests, in the order they
// arrived, and knows the requests still being served. A request takes its
// place at arrival (begin), not when its truth is stored: requests end in
// any order, and the ones to forget are the oldest to arrive.
type truthStore struct {
	mu     sync.Mutex
	max    int
	seq    uint64 // arrivals so far; the latest arrival's place
	byID   map[string]kept
	order  []slot // ring of places, oldest at next once full
	next   int
	flying map[string]chan struct{} // closed when the request's truth is stored
}

type kept struct {
	t   Truth
	seq uint64
}

// slot is a place in the ring: a request that reuses an id gets a new
// place, and the old one must not evict it.
type slot struct {
	id  string
	seq uint64
}

// flight is a request being served: its place and the channel that end
// closes.
type flight struct {
	seq  uint64
	done chan struct{}
}

func newTruthStore(limit int) *truthStore {
	return &truthStore{max: limit, byID: map[string]kept{}, flying: map[string]chan struct{}{}}
}

// begin gives an arriving request its place, forgetting the truth of the
// oldest place when the ring is full, and notes the request in flight.
func (s *truthStore) begin(id string) flight {
	f := flight{done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	f.seq = s.seq
	if len(s.order) < s.max {
		s.order = append(s.order, slot{id, f.seq})
	} else {
		old := s.order[s.next]
		if k, ok := s.byID[old.id]; ok && k.seq == old.seq {
			delete(s.byID, old.id)
		}
		s.order[s.next] = slot{id, f.seq}
		s.next = (s.next + 1) % s.max
	}
	s.flying[id] = f.done // a later request with the same id is the one to wait for
	return f
}

// end stores t in its place and ends the flight. A truth whose place was
// taken by later arrivals while it was served is not kept, and neither is
// one older than a truth already stored under the same id.
func (s *truthStore) end(t Truth, f flight) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flying[t.RequestID] == f.done {
		delete(s.flying, t.RequestID)
	}
	close(f.done)
	if s.seq-f.seq >= uint64(s.max) {
		return // evicted while in flight
	}
	if k, ok := s.byID[t.RequestID]; ok && k.seq > f.seq {
		return
	}
	s.byID[t.RequestID] = kept{t, f.seq}
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
