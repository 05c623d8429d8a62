package stack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ClickHouse is Debian's clickhouse-server (18.16) on loopback, every file
// under Dir.
type ClickHouse struct {
	server
	TCPPort  int // native protocol
	HTTPPort int
	// With TLSCert and TLSKey (PEM files), the native protocol is also
	// served over TLS on SecurePort.
	SecurePort      int
	TLSCert, TLSKey string
	// Cluster, when set, makes the server the one shard and replica of a
	// cluster kept in ZooKeeper.
	Cluster *Cluster
}

// Cluster is what a server needs to be part of a cluster of one.
type Cluster struct {
	Name            string
	ZooKeeperPort   int
	InterserverPort int // the port replicas fetch parts through
	// Macros the server defines, as replicated table paths use them
	// (default "01", "replica_1").
	Shard, Replica string
}

// Name is "clickhouse".
func (c *ClickHouse) Name() string { return "clickhouse" }

// Addr is the native protocol's host:port.
func (c *ClickHouse) Addr() string { return addr(c.TCPPort) }

// HTTP is the HTTP interface's host:port.
func (c *ClickHouse) HTTP() string { return addr(c.HTTPPort) }

// Secure is the TLS native protocol's host:port.
func (c *ClickHouse) Secure() string { return addr(c.SecurePort) }

// Start writes the configuration and starts the server.
func (c *ClickHouse) Start(ctx context.Context) error {
	exe, err := program("clickhouse-server")
	if err != nil {
		return err
	}
	if err := c.mkdirs(c.Name(), "data", "tmp", "user_files", "format_schemas", "config.d"); err != nil {
		return err
	}
	if err := c.writeConfig(); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	// Fresh error logs, so a failure shows this attempt's lines only.
	_ = os.WriteFile(filepath.Join(c.Dir, "error.log"), nil, 0o644)
	return c.run(ctx, Command{
		Name: c.Name(),
		Path: exe,
		Args: []string{"--config-file=" + filepath.Join(c.Dir, "config.xml")},
		Dir:  c.Dir,
		Log:  filepath.Join(c.Dir, "stdout.log"),
	}, c.Ready, filepath.Join(c.Dir, "error.log"), filepath.Join(c.Dir, "server.log"))
}

// Ready pings the HTTP interface and, for a cluster, reads from
// ZooKeeper: 18.16 opens its ZooKeeper session on first use, and two
// queries that both open it at once crash the server (a null pointer in
// zkutil::ZooKeeper::createImpl, seen right after start-up).
func (c *ClickHouse) Ready(ctx context.Context) error {
	if err := httpOK(ctx, "http://"+c.HTTP()+"/ping", http.StatusOK); err != nil {
		return err
	}
	if c.Cluster == nil {
		return nil
	}
	_, err := c.Query(ctx, "SELECT count() FROM system.zookeeper WHERE path = '/'")
	return err
}

// Stop stops the server, keeping its data for another Start.
func (c *ClickHouse) Stop(ctx context.Context) error { return c.stop(ctx) }

// Query runs SQL on the HTTP interface and returns its output, trimmed.
func (c *ClickHouse) Query(ctx context.Context, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.HTTP()+"/?query="+url.QueryEscape(sql), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("clickhouse query: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("clickhouse query: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("clickhouse query %q: %s: %s", sql, resp.Status, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func (c *ClickHouse) writeConfig() error {
	d := xmlEscape(c.Dir)
	tls := ""
	if c.TLSCert != "" {
		if c.TLSKey == "" || c.SecurePort == 0 {
			return fmt.Errorf("TLSCert needs TLSKey and SecurePort")
		}
		tls = fmt.Sprintf(`<tcp_port_secure>%d</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>%s</certificateFile>
            <privateKeyFile>%s</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
        </server>
    </openSSL>`, c.SecurePort, xmlEscape(c.TLSCert), xmlEscape(c.TLSKey))
	}
	// 18.16 wants <yandex> as the root element; users_config is read
	// relative to this file's folder, and config.d is merged into it.
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>%[1]s/server.log</log>
        <errorlog>%[1]s/error.log</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%[2]d</tcp_port>
    <http_port>%[3]d</http_port>
    %[4]s
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <!-- The stock config reserves 5 GiB of mark cache and 8 GiB of
         uncompressed cache: too much for a 2-core test machine. -->
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
`, d, c.TCPPort, c.HTTPPort, tls)
	if err := os.WriteFile(filepath.Join(c.Dir, "config.xml"), []byte(config), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "users.xml"), []byte(clickhouseUsers), 0o644); err != nil {
		return err
	}
	cluster := filepath.Join(c.Dir, "config.d", "cluster.xml")
	if c.Cluster == nil {
		return removeIfExists(cluster)
	}
	return os.WriteFile(cluster, []byte(c.Cluster.config(c.TCPPort)), 0o644)
}

// config: ZooKeeper, the cluster's one shard (remote_servers), the macros,
// the interserver port and the queue of ON CLUSTER statements.
// internal_replication: a shard's replicas copy inserted rows themselves
// (ReplicatedMergeTree), the Distributed table writes to one of them.
func (k *Cluster) config(tcpPort int) string {
	if k.Shard == "" {
		k.Shard = "01"
	}
	if k.Replica == "" {
		k.Replica = "replica_1"
	}
	return fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <zookeeper>
        <node><host>127.0.0.1</host><port>%d</port></node>
        <session_timeout_ms>30000</session_timeout_ms>
    </zookeeper>
    <remote_servers>
        <%[2]s>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>127.0.0.1</host><port>%[3]d</port></replica>
            </shard>
        </%[2]s>
    </remote_servers>
    <macros>
        <shard>%[4]s</shard>
        <replica>%[5]s</replica>
    </macros>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>%[6]d</interserver_http_port>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
</yandex>
`, k.ZooKeeperPort, k.Name, tcpPort, k.Shard, k.Replica, k.InterserverPort)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// LowCardinality(String) is still experimental in 18.16: the default
// profile turns it on so every session can use it.
const clickhouseUsers = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`
