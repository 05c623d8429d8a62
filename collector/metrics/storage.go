package metrics

import "github.com/prometheus/client_golang/prometheus"

// Storage is what the storage writer reports: counters since start and
// gauges now.
type Storage struct {
	Queued         int64
	QueuedBytes    int64
	SpooledBatches int64
	SpooledBytes   int64
	Written        uint64
	WriteErrors    uint64
	Rejected       uint64
	Spilled        uint64
	SpoolDropped   uint64
	SpoolErrors    uint64
	Replayed       uint64
	SetAside       uint64
}

// RegisterStorage exports the writer's state, read once per scrape.
func RegisterStorage(reg prometheus.Registerer, stats func() Storage) {
	reg.MustRegister(&storageCollector{stats: stats})
}

var storageDescs = struct {
	queued, queuedBytes, spooledBatches, spooledBytes, written, writeErrors, rejected, spilled, spoolDropped, spoolErrors, replayed, setAside *prometheus.Desc
}{
	queued:         prometheus.NewDesc("llmtap_storage_queue_depth", "Records accepted and not yet written to ClickHouse or the spool.", nil, nil),
	queuedBytes:    prometheus.NewDesc("llmtap_storage_queue_bytes", "What the records in the write queue hold (bodies and chunks), against clickhouse.queue_max_bytes.", nil, nil),
	spooledBatches: prometheus.NewDesc("llmtap_storage_spooled_batches", "Batches waiting in the disk spool for ClickHouse.", nil, nil),
	spooledBytes:   prometheus.NewDesc("llmtap_storage_spool_bytes", "Bytes of the batches waiting in the disk spool.", nil, nil),
	written:        prometheus.NewDesc("llmtap_storage_written_total", "Records written to ClickHouse from the queue.", nil, nil),
	writeErrors:    prometheus.NewDesc("llmtap_storage_write_errors_total", "Failed ClickHouse inserts (each try counts).", nil, nil),
	rejected:       prometheus.NewDesc("llmtap_storage_rejected_total", "Records refused because neither the write queue nor the spool could take their batch (answered 503; the plugin sends it again).", nil, nil),
	spilled:        prometheus.NewDesc("llmtap_storage_spilled_total", "Records written straight to the spool because the write queue was full in records or bytes (replayed later).", nil, nil),
	spoolDropped:   prometheus.NewDesc("llmtap_storage_dropped_total", "Accepted records lost because the spool was full or unwritable.", nil, nil),
	spoolErrors:    prometheus.NewDesc("llmtap_storage_spool_errors_total", "Spool files that could not be written, read or removed.", nil, nil),
	replayed:       prometheus.NewDesc("llmtap_storage_replayed_total", "Records written to ClickHouse from the spool.", nil, nil),
	setAside:       prometheus.NewDesc("llmtap_storage_set_aside_total", "Records of spool files ClickHouse refused again and again, set aside as .refused files in the spool folder.", nil, nil),
}

type storageCollector struct{ stats func() Storage }

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	d := storageDescs
	for _, desc := range []*prometheus.Desc{d.queued, d.queuedBytes, d.spooledBatches, d.spooledBytes, d.written, d.writeErrors, d.rejected, d.spilled, d.spoolDropped, d.spoolErrors, d.replayed, d.setAside} {
		ch <- desc
	}
}

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	s, d := c.stats(), storageDescs
	gauge := func(desc *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v))
	}
	counter := func(desc *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v))
	}
	gauge(d.queued, s.Queued)
	gauge(d.queuedBytes, s.QueuedBytes)
	gauge(d.spooledBatches, s.SpooledBatches)
	gauge(d.spooledBytes, s.SpooledBytes)
	counter(d.written, s.Written)
	counter(d.writeErrors, s.WriteErrors)
	counter(d.rejected, s.Rejected)
	counter(d.spilled, s.Spilled)
	counter(d.spoolDropped, s.SpoolDropped)
	counter(d.spoolErrors, s.SpoolErrors)
	counter(d.replayed, s.Replayed)
	counter(d.setAside, s.SetAside)
}
