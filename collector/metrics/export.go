package metrics

import "github.com/prometheus/client_golang/prometheus"

// Export is what the OpenTelemetry span export reports: counters since
// start and the queue now.
type Export struct {
	Exported, Dropped, Failed uint64
	Queued                    int
}

var (
	exportSpans = prometheus.NewDesc("llmtap_otel_spans_total",
		"Request spans by what became of them: exported (the receiver took them), dropped (the export queue was full), failed (their batch was refused or timed out after the exporter's retries).",
		[]string{"outcome"}, nil)
	exportQueue = prometheus.NewDesc("llmtap_otel_queue_depth", "Request spans waiting for export.", nil, nil)
)

// RegisterExport exports the span export's state, read once per scrape.
func RegisterExport(reg prometheus.Registerer, stats func() Export) {
	reg.MustRegister(&exportCollector{stats: stats})
}

type exportCollector struct{ stats func() Export }

func (c *exportCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- exportSpans
	ch <- exportQueue
}

func (c *exportCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for _, o := range []struct {
		outcome string
		n       uint64
	}{{"exported", s.Exported}, {"dropped", s.Dropped}, {"failed", s.Failed}} {
		ch <- prometheus.MustNewConstMetric(exportSpans, prometheus.CounterValue, float64(o.n), o.outcome)
	}
	ch <- prometheus.MustNewConstMetric(exportQueue, prometheus.GaugeValue, float64(s.Queued))
}
