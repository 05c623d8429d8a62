package collector

import (
	"hash/maphash"
	"strconv"
	"sync"
)

// Recent remembers the records accepted lately, so that a record sent
// again (a plugin retrying a batch whose answer it never got) is
// acknowledged without being counted, settled or queued twice. A record is
// the same when its request id, route and start are: two requests that
// reuse a client's id start at different times and are both kept.
//
// Memory is bounded: entries are 64-bit hashes (seeded at random), in two
// generations of at most size entries each; when the current one fills,
// the older is dropped. A retry comes within seconds, far inside that
// window. Two records would be taken for one only if their hashes
// collided.
type Recent struct {
	mu   sync.Mutex
	seed maphash.Seed
	size int
	cur  map[uint64]struct{}
	old  map[uint64]struct{}
}

// NewRecent returns a Recent of at most 2 x size entries.
func NewRecent(size int) *Recent {
	return &Recent{seed: maphash.MakeSeed(), size: size, cur: map[uint64]struct{}{}, old: map[uint64]struct{}{}}
}

// key hashes what makes a record the same one.
func (r *Recent) key(requestID, route string, startUnixNs int64) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	_, _ = h.WriteString(requestID)
	_ = h.WriteByte(0)
	_, _ = h.WriteString(route)
	_ = h.WriteByte(0)
	_, _ = h.WriteString(strconv.FormatInt(startUnixNs, 10))
	return h.Sum64()
}

// Add remembers the record and reports whether it is new: false when it
// was added lately. Checking and adding are one step, so that two copies
// of a record arriving at once are not both taken as new.
func (r *Recent) Add(requestID, route string, startUnixNs int64) bool {
	k := r.key(requestID, route, startUnixNs)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cur[k]; ok {
		return false
	}
	if _, ok := r.old[k]; ok {
		return false
	}
	if len(r.cur) >= r.size {
		r.old = r.cur
		r.cur = make(map[uint64]struct{}, r.size)
	}
	r.cur[k] = struct{}{}
	return true
}

// Forget drops the record, as if it was never added: for a record that
// could not be taken after all.
func (r *Recent) Forget(requestID, route string, startUnixNs int64) {
	k := r.key(requestID, route, startUnixNs)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.cur, k)
	delete(r.old, k)
}
