package p2pconn

import (
	"math/rand/v2"
	"time"
)

// ConnectOption overrides, for one Connect call, how hard it tries to open a
// connection: an overlay's routing may fail fast while its maintenance
// retries. Options apply in order; a cached live connection is returned
// whatever they say.
type ConnectOption func(*ConnectSettings)

// ConnectSettings is what one Connect call runs with: the manager's Config,
// overridden by the call's options. Implementations of ConnectionManager get
// it from Config.ConnectSettings.
type ConnectSettings struct {
	// RetryAttempts is the number of attempts after the first failure; 0
	// fails at the first failure.
	RetryAttempts int
	// ConnectTimeout bounds one attempt, resolution included.
	ConnectTimeout time.Duration
	// IgnoreRecentFailure dials even if the peer is remembered as
	// unreachable (Config.UnreachableFor).
	IgnoreRecentFailure bool
}

// WithRetryAttempts makes the call retry a failure that may pass n times
// instead of Config.RetryAttempts. 0 fails fast: one attempt, no retry, as an
// overlay's routing wants; more suit maintenance. A negative n counts as 0.
func WithRetryAttempts(n int) ConnectOption {
	return func(s *ConnectSettings) { s.RetryAttempts = max(n, 0) }
}

// WithConnectTimeout bounds each attempt of the call by d instead of
// Config.ConnectTimeout. d <= 0 keeps the Config's value.
func WithConnectTimeout(d time.Duration) ConnectOption {
	return func(s *ConnectSettings) {
		if d > 0 {
			s.ConnectTimeout = d
		}
	}
}

// IgnoreRecentFailure makes the call dial even if a Connect to the peer
// failed within Config.UnreachableFor, which would otherwise fail it at once:
// for maintenance that must find out for itself, not for routing.
func IgnoreRecentFailure() ConnectOption {
	return func(s *ConnectSettings) { s.IgnoreRecentFailure = true }
}

// ConnectSettings returns the settings of a Connect call with opts on a
// manager configured with c: c's RetryAttempts and ConnectTimeout (its
// default if zero), overridden by opts in order.
func (c Config) ConnectSettings(opts ...ConnectOption) ConnectSettings {
	s := ConnectSettings{RetryAttempts: c.RetryAttempts, ConnectTimeout: c.ConnectTimeout}
	if s.ConnectTimeout == 0 {
		s.ConnectTimeout = DefaultConnectTimeout
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// RetryBackoff returns the wait before retry n (1-based) with c's
// RetryDelay and MaxRetryDelay (defaults if zero): a random duration in
// [d/2, d] with d = RetryDelay * 2^(n-1), capped at MaxRetryDelay.
func (c Config) RetryBackoff(n int) time.Duration {
	c = c.withDefaults()
	d := c.RetryDelay
	for i := 1; i < n && d < c.MaxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, c.MaxRetryDelay)
	return d/2 + rand.N(d/2+1)
}
