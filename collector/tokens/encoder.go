package tokens

import (
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer"
)

// Bounds of an encoder's cache of piece counts: pieces longer than
// maxCachedPiece are counted each time, and the cache is emptied when it
// holds maxCachedPieces (a few MB at most).
const (
	maxCachedPiece  = 48
	maxCachedPieces = 1 << 15
)

// encoder counts tokens with an encoding: the pieces cut by hand (see
// split.go), each piece's count from the library, and the counts of
// short pieces (words, mostly) remembered. It is safe for concurrent use.
type encoder struct {
	codec tokenizer.Codec
	next  splitter // nil: the library cuts the pieces too

	mu    sync.Mutex
	cache map[string]int
}

func newEncoder(codec tokenizer.Codec, next splitter) *encoder {
	return &encoder{codec: codec, next: next, cache: map[string]int{}}
}

// count returns the tokens of text.
func (e *encoder) count(text string) (int, error) {
	if e.next == nil || !utf8.ValidString(text) {
		// The library reads invalid UTF-8 as replacement characters.
		return e.codec.Count(text)
	}
	total := 0
	for i := 0; i < len(text); {
		j := e.next(text, i)
		n, err := e.piece(text[i:j])
		if err != nil {
			return 0, err
		}
		total += n
		i = j
	}
	return total, nil
}

// piece counts one piece: its own split is itself, so the library's count
// of it alone is its count in the text.
func (e *encoder) piece(p string) (int, error) {
	cacheable := len(p) <= maxCachedPiece
	if cacheable {
		e.mu.Lock()
		n, ok := e.cache[p]
		e.mu.Unlock()
		if ok {
			return n, nil
		}
	}
	n, err := e.codec.Count(p)
	if err != nil || !cacheable {
		return n, err
	}
	e.mu.Lock()
	if len(e.cache) >= maxCachedPieces {
		clear(e.cache)
	}
	e.cache[strings.Clone(p)] = n // a piece of a text would pin the text
	e.mu.Unlock()
	return n, nil
}
