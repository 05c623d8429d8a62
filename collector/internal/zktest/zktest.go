// Package zktest runs a real ZooKeeper and a ClickHouse server that uses
// it as a cluster of one shard with one replica, for the integration tests
// of the cluster schema (replicated tables, Distributed table, ON CLUSTER
// statements). Both run through the project's own scripts
// (scripts/zookeeper.sh, scripts/clickhouse.sh: Debian's ZooKeeper 3.8 and
// ClickHouse 18.16 on loopback), each in a temporary run folder on free
// ports. A test that cannot start them fails; it never skips.
package zktest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/llmtap/llmtap/collector/internal/service"
)

// ZooKeeper is one running ZooKeeper.
type ZooKeeper struct {
	Addr   string // host:port of its client port
	Port   int
	RunDir string
	script *service.Script
}

// Start starts a ZooKeeper; Close stops it and removes its files.
func Start() (*ZooKeeper, error) {
	port, err := service.FreePort()
	if err != nil {
		return nil, err
	}
	script, err := service.New("zookeeper.sh", fmt.Sprintf("ZOOKEEPER_PORT=%d", port))
	if err != nil {
		return nil, err
	}
	z := &ZooKeeper{Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, RunDir: script.RunDir, script: script}
	if err := script.Run("start"); err != nil {
		return nil, fmt.Errorf("zookeeper did not start (logs in %s): %w", z.RunDir, err)
	}
	return z, nil
}

// Stop stops ZooKeeper, keeping its files.
func (z *ZooKeeper) Stop() error { return z.script.Run("stop") }

// Close stops ZooKeeper and removes its files.
func (z *ZooKeeper) Close() error { return z.script.Close() }

// ClickHouse is one running ClickHouse server that is the only shard and
// replica of Cluster.
type ClickHouse struct {
	Addr    string // native protocol, host:port
	Cluster string
	// Macros the server defines, as replicated table paths use them.
	Shard, Replica string
	RunDir         string
	script         *service.Script
}

// StartClickHouse starts a ClickHouse server with zk as its ZooKeeper and
// a cluster named cluster made of itself alone. Stop it before zk.
func StartClickHouse(zk *ZooKeeper, cluster string) (*ClickHouse, error) {
	var ports [3]int // native, HTTP, interserver HTTP
	for i := range ports {
		p, err := service.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	script, err := service.New("clickhouse.sh",
		fmt.Sprintf("CLICKHOUSE_TCP_PORT=%d", ports[0]), fmt.Sprintf("CLICKHOUSE_HTTP_PORT=%d", ports[1]))
	if err != nil {
		return nil, err
	}
	c := &ClickHouse{
		Addr:    fmt.Sprintf("127.0.0.1:%d", ports[0]),
		Cluster: cluster,
		Shard:   "01",
		Replica: "replica_1",
		RunDir:  script.RunDir,
		script:  script,
	}
	// scripts/clickhouse.sh writes config.xml next to this folder, and
	// the server merges every file of config.d into it (18.16 too).
	dir := filepath.Join(script.RunDir, "clickhouse", "config.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.xml"), []byte(c.config(zk, ports[0], ports[2])), 0o644); err != nil {
		return nil, err
	}
	if err := script.Run("start"); err != nil {
		return nil, errors.Join(fmt.Errorf("clickhouse did not start (logs in %s): %w", c.RunDir, err), os.RemoveAll(c.RunDir))
	}
	return c, nil
}

// config is what a server needs to be part of a cluster: ZooKeeper, the
// cluster's shards (remote_servers), its own macros, the interserver port
// replicas fetch parts through, and the queue of ON CLUSTER statements.
// internal_replication: a shard's replicas copy inserted rows themselves
// (ReplicatedMergeTree), the Distributed table writes to one of them.
func (c *ClickHouse) config(zk *ZooKeeper, tcpPort, interserverPort int) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <zookeeper>
        <node><host>127.0.0.1</host><port>%d</port></node>
        <session_timeout_ms>30000</session_timeout_ms>
    </zookeeper>
    <remote_servers>
        <%s>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>127.0.0.1</host><port>%d</port></replica>
            </shard>
        </%s>
    </remote_servers>
    <macros>
        <shard>%s</shard>
        <replica>%s</replica>
    </macros>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>%d</interserver_http_port>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
</yandex>
`, zk.Port, c.Cluster, tcpPort, c.Cluster, c.Shard, c.Replica, interserverPort)
}

// Stop stops the server, keeping its files.
func (c *ClickHouse) Stop() error { return c.script.Run("stop") }

// Close stops the server and removes its files.
func (c *ClickHouse) Close() error { return c.script.Close() }
