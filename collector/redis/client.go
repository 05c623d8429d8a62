package redis

import (
	"crypto/tls"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Options configure the Redis client. Which client NewClient builds
// depends on the addresses:
//
//   - MasterName set: a Sentinel failover client. Addrs are the Sentinels;
//     they say which server is the master, and the client follows it
//     through failovers.
//   - Several Addrs: a Redis Cluster client. Addrs are seed nodes; the
//     client learns the others and which node holds which slot.
//   - Otherwise one server: Addr, or the single entry of Addrs.
type Options struct {
	Addr       string
	Addrs      []string
	MasterName string
	Password   string
	// SentinelPassword authenticates to the Sentinels, when they need it;
	// Password is the master's.
	SentinelPassword string
	DB               int // ignored by a Redis Cluster, which has only 0
	// Timeout bounds dialing and each command: a limit check waits at most
	// about this long for a Redis that is down or stuck, then its limit's
	// failure mode decides.
	Timeout time.Duration
	// TLS, when not nil, is used for every connection.
	TLS *tls.Config
}

// universal maps Options onto go-redis's UniversalOptions, whose
// NewUniversalClient chooses the client type as Options describes.
func (o Options) universal() *goredis.UniversalOptions {
	addrs := o.Addrs
	if len(addrs) == 0 && o.Addr != "" {
		addrs = []string{o.Addr}
	}
	return &goredis.UniversalOptions{
		Addrs:            addrs,
		MasterName:       o.MasterName,
		Password:         o.Password,
		SentinelPassword: o.SentinelPassword,
		DB:               o.DB,
		DialTimeout:      o.Timeout,
		ReadTimeout:      o.Timeout,
		WriteTimeout:     o.Timeout,
		// A context deadline shorter than Timeout wins.
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
		DialerRetries:         1,
		TLSConfig:             o.TLS,
	}
}

// NewClient makes a client that fails fast: one dial attempt and one retry
// per command, within Timeout, so that a Redis outage turns into failure
// modes quickly instead of piling up waiting checks. go-redis reconnects by
// itself when Redis is back. It is a plain, Redis Cluster or Sentinel
// client as Options says; the caller closes it.
//
// The limits work on a Redis Cluster as they are: a Lua script may touch
// only keys of one slot, and each script call gets the two keys of one
// bucket, which share a hash tag (see keys in limiter.go), so they are
// always on one slot; Settle's pipeline of such calls is split by node by
// the cluster client. The policies are one hash under one key, read and
// written with single-key commands. No command needs keys of two slots.
func NewClient(o Options) goredis.UniversalClient {
	return goredis.NewUniversalClient(o.universal())
}
