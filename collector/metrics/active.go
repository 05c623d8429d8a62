package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// activeStale is how long a plugin's report of its open streams counts.
// Plugins report at every batch, and every flush interval (1s by default)
// while streams are open; one that stopped reporting has no streams left,
// or is gone.
const activeStale = 15 * time.Second

// maxSenders bounds the plugin instances tracked, against a flood of ids.
const maxSenders = 10000

// activeStreams sums the latest open-stream counts of the plugins.
type activeStreams struct {
	desc *prometheus.Desc
	now  func() time.Time

	mu      sync.Mutex
	senders map[string]activeReport
}

type activeReport struct {
	n    int64
	seen time.Time
}

func newActiveStreams(now func() time.Time) *activeStreams {
	return &activeStreams{
		desc:    prometheus.NewDesc("llmtap_active_streams", "Streaming responses open now, summed over the plugins that reported in the last 15 s.", nil, nil),
		now:     now,
		senders: make(map[string]activeReport),
	}
}

func (a *activeStreams) report(sender string, n int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if _, ok := a.senders[sender]; !ok && len(a.senders) >= maxSenders {
		a.expire(now)
		if len(a.senders) >= maxSenders {
			return
		}
	}
	a.senders[sender] = activeReport{n: n, seen: now}
}

// expire forgets plugins that stopped reporting; a.mu is held.
func (a *activeStreams) expire(now time.Time) {
	for id, r := range a.senders {
		if now.Sub(r.seen) > activeStale {
			delete(a.senders, id)
		}
	}
}

func (a *activeStreams) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

func (a *activeStreams) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	a.expire(a.now())
	var sum int64
	for _, r := range a.senders {
		sum += r.n
	}
	a.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(a.desc, prometheus.GaugeValue, float64(sum))
}
