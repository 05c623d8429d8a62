package clickhouse

import (
	"context"
	"strings"
	"testing"
)

// TestWriterRefusesBadCluster: the cluster name goes into no SQL of the
// writer, but a bad one means a bad configuration: Run refuses to start.
func TestWriterRefusesBadCluster(t *testing.T) {
	w := NewWriter(&fakeConn{}, WriterOptions{Cluster: "eu-west"})
	err := w.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `cluster name "eu-west"`) {
		t.Errorf("Run = %v, want the cluster name refused", err)
	}
}
