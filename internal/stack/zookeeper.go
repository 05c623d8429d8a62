package stack

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ZooKeeper is Debian's ZooKeeper (3.8) standalone on loopback, every file
// under Dir. ClickHouse needs it for replicated tables and ON CLUSTER
// statements.
type ZooKeeper struct {
	server
	Port int
}

// Debian's jar names its dependencies in its manifest; slf4j-simple (from
// libslf4j-java, which it depends on) gives it a log file.
const zookeeperJars = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"

// Name is "zookeeper".
func (z *ZooKeeper) Name() string { return "zookeeper" }

// Addr is its client port's host:port.
func (z *ZooKeeper) Addr() string { return addr(z.Port) }

// Start writes zoo.cfg and starts the server.
func (z *ZooKeeper) Start(ctx context.Context) error {
	java, err := program("java")
	if err != nil {
		return err
	}
	if _, err := os.Stat("/usr/share/java/zookeeper.jar"); err != nil {
		return fmt.Errorf("zookeeper: %w", ErrNotFound)
	}
	if err := z.mkdirs(z.Name(), "data"); err != nil {
		return err
	}
	// admin.enableServer: the admin HTTP server would take port 8080.
	cfg := fmt.Sprintf(`tickTime=2000
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=100
admin.enableServer=false
4lw.commands.whitelist=srvr
`, filepath.Join(z.Dir, "data"), z.Port)
	if err := os.WriteFile(filepath.Join(z.Dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("zookeeper: %w", err)
	}
	logFile := filepath.Join(z.Dir, "zookeeper.log")
	// ZooKeeperServerMain is the standalone server; a small heap: it holds
	// a few hundred znodes.
	return z.run(ctx, Command{
		Name: z.Name(),
		Path: java,
		Args: []string{"-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-cp", zookeeperJars,
			"-Dorg.slf4j.simpleLogger.logFile=" + logFile, "-Dzookeeper.log.dir=" + z.Dir,
			"org.apache.zookeeper.server.ZooKeeperServerMain", filepath.Join(z.Dir, "zoo.cfg")},
		Dir: z.Dir,
		Log: filepath.Join(z.Dir, "stdout.log"),
	}, z.Ready, logFile)
}

// Ready sends srvr, which names the server's mode only once it takes
// sessions (ruok answers imok before: a client connecting then is dropped
// during its handshake).
func (z *ZooKeeper) Ready(ctx context.Context) error {
	out, err := ask(ctx, z.Addr(), nil, "srvr", func(r *bufio.Reader) (string, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	})
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Mode: standalone") {
		return fmt.Errorf("zookeeper not serving yet: %q", strings.TrimSpace(out))
	}
	return nil
}

// Stop stops the server.
func (z *ZooKeeper) Stop(ctx context.Context) error { return z.stop(ctx) }
