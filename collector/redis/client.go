package redis

import (
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Options configure the Redis client.
type Options struct {
	Addr     string
	Password string
	DB       int
	// Timeout bounds dialing and each command: a limit check waits at most
	// about this long for a Redis that is down or stuck, then its limit's
	// failure mode decides.
	Timeout time.Duration
}

// NewClient makes a client that fails fast: one dial attempt and one retry
// per command, within Timeout, so that a Redis outage turns into failure
// modes quickly instead of piling up waiting checks. go-redis reconnects by
// itself when Redis is back.
func NewClient(o Options) *goredis.Client {
	return goredis.NewClient(&goredis.Options{
		Addr:                  o.Addr,
		Password:              o.Password,
		DB:                    o.DB,
		DialTimeout:           o.Timeout,
		ReadTimeout:           o.Timeout,
		WriteTimeout:          o.Timeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
		DialerRetries:         1,
	})
}
