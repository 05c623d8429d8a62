package stack

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Redis is Debian's redis-server on loopback, with no persistence and every
// file under Dir.
type Redis struct {
	server
	Port int
	// With TLSCert and TLSKey (PEM files) the port speaks TLS only
	// (clients need no certificate).
	TLSCert, TLSKey string
	// Args come first on redis-server's command line: a configuration
	// file, --sentinel, --cluster-enabled yes.
	Args []string
}

// Name is "redis".
func (r *Redis) Name() string { return "redis" }

// Addr is its host:port.
func (r *Redis) Addr() string { return addr(r.Port) }

// Start starts the server.
func (r *Redis) Start(ctx context.Context) error {
	exe, err := program("redis-server")
	if err != nil {
		return err
	}
	if err := r.mkdirs(r.Name()); err != nil {
		return err
	}
	ports := []string{"--port", strconv.Itoa(r.Port)}
	if r.TLSCert != "" {
		ports = []string{"--port", "0", "--tls-port", strconv.Itoa(r.Port),
			"--tls-cert-file", r.TLSCert, "--tls-key-file", r.TLSKey, "--tls-auth-clients", "no"}
	}
	// --daemonize no keeps the process ours; --save '' and --appendonly
	// no: test data need not outlive the process.
	args := append(append(append([]string{}, r.Args...), ports...), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", r.Dir, "--logfile", filepath.Join(r.Dir, "redis.log"))
	return r.run(ctx, Command{
		Name: r.Name(),
		Path: exe,
		Args: args,
		Dir:  r.Dir,
		Log:  filepath.Join(r.Dir, "stdout.log"),
	}, r.Ready, filepath.Join(r.Dir, "redis.log"))
}

// Ready sends PING and wants PONG.
func (r *Redis) Ready(ctx context.Context) error {
	var wrap func(net.Conn) net.Conn
	if r.TLSCert != "" {
		wrap = func(c net.Conn) net.Conn {
			return tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a readiness ping on loopback
		}
	}
	line, err := ask(ctx, r.Addr(), wrap, "PING\r\n", func(r *bufio.Reader) (string, error) { return r.ReadString('\n') })
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redis answered %q to PING", strings.TrimSpace(line))
	}
	return nil
}

// Stop stops the server.
func (r *Redis) Stop(ctx context.Context) error { return r.stop(ctx) }
