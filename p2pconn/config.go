package p2pconn

import (
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes a Manager. In every field the zero value means the default,
// except RetryAttempts, where 0 means no retry. Negative values are invalid,
// except for UnreachableFor and ResumeWindow, where a negative value turns
// the feature off.
type Config struct {
	// ConnectTimeout bounds one connection attempt: resolution, dial, secure
	// handshake, stream open and skipwire handshake. Default 10 s.
	ConnectTimeout time.Duration

	// KeepaliveInterval is the health-check period: a connection that received
	// nothing for this long is pinged (libp2p's ping protocol). Default 15 s.
	KeepaliveInterval time.Duration

	// KeepaliveTimeout is how long a health-check ping may take before the
	// connection is declared lost. Default: KeepaliveInterval, at most 10 s.
	// A ping also waits for the scheduler of both processes: with CPU-bound
	// goroutines Go preempts every 10 ms, so on a starved machine a ping
	// takes up to about 2 x (runnable goroutines per core x 10 ms) plus the
	// network round trip. Keep KeepaliveTimeout well above that floor: the
	// default survives GOMAXPROCS=1 with four spinning goroutines (tested);
	// values under 1 s can declare healthy connections lost on busy hosts.
	KeepaliveTimeout time.Duration

	// MaxConnections caps the managed connections, inbound and outbound.
	// Default 1000.
	MaxConnections int

	// RetryAttempts is the number of dial attempts after the first failure.
	// Default 3 when DefaultConfig is used; 0 means no retry.
	RetryAttempts int

	// RetryDelay is the base of the jittered exponential backoff between
	// attempts: the n-th retry waits a random duration in [d/2, d) where
	// d = RetryDelay * 2^(n-1), capped at MaxRetryDelay. Default 1 s.
	RetryDelay time.Duration

	// MaxRetryDelay caps the backoff between two attempts. Default 30 s.
	MaxRetryDelay time.Duration

	// MaxMessageSize is the largest message this node accepts, in bytes. It is
	// sent to the remote in the handshake; Send enforces the smaller of both
	// sides' values. Default 4 MiB.
	MaxMessageSize int

	// CloseTimeout bounds Close: how long it waits for a Send in progress
	// before cutting it (a committed message is still written whole
	// afterwards), and how long it waits for the remote's half-close after
	// its own. Default 5 s.
	CloseTimeout time.Duration

	// ReceiveBuffer is how many received messages a connection queues for
	// Next before it stops reading from the stream, which pushes back on the
	// sender through libp2p's flow control. The queue also takes messages
	// beyond ReceiveBuffer while they hold less than one stream window (16
	// MiB), so that a remote's close is seen even while nobody calls Next:
	// a connection holds at most the larger of ReceiveBuffer messages of
	// MaxMessageSize and 16 MiB plus one message (64 MiB with the defaults),
	// a frame still arriving included (it holds at most twice what arrived
	// of it, not the length it announced). That memory is reserved with the
	// host's resource manager, whose limits therefore bound all connections
	// together: see ServiceName. Default 16.
	ReceiveBuffer int

	// IdleTimeout, if set, closes connections that carried no message for
	// that long: no Send of either side committed one and none arrived. A
	// connection with messages waiting for Next, or a Send in progress, is
	// not idle; protected and persistent peers are never closed for it. The
	// close takes nothing from either side (PROTOCOL.md, "Closing"): this
	// side sends no more and delivers to Next what the remote had sent until
	// the remote answers with its own half-close; the remote's Sends fail
	// from the moment it sees the close, so it reconnects. A version-1 peer
	// cannot take part in that exchange: its connections are never closed
	// idle. Default 0: never.
	IdleTimeout time.Duration

	// UnreachableFor is how long a peer is remembered as unreachable after a
	// Connect to it failed for a reason that may pass (the failures Connect
	// retries, once every retry failed). Within that window a Connect that
	// would not retry (RetryAttempts 0, or WithRetryAttempts(0)) fails at
	// once with an *UnreachableError, so routing around a dead node costs
	// nothing; a Connect with retries counts the failure as its first
	// attempt, waits for the window to end, then dials. A connection the
	// peer opens clears the memory from the moment its handshake reaches
	// this node (a Connect meanwhile waits for that opening), and so do a
	// libp2p connection with the peer and a successful Connect. Connects
	// with IgnoreRecentFailure dial anyway. Default 1 s, short enough that a
	// restarted peer is reachable again within a second; negative: off.
	UnreachableFor time.Duration

	// EvictAtLimit makes room at MaxConnections instead of refusing: a new
	// connection, outbound or inbound, closes the least recently used one
	// that is neither protected nor persistent nor with a version-1 peer,
	// with the same exchange as idle closing, so nothing is lost. When no
	// connection can go, it refuses as without it. Default false: refuse.
	EvictAtLimit bool

	// ResumeWindow: how long a connection whose stream is lost keeps its
	// session for the peers to reconnect (see Connection: the same
	// Connection goes on, nothing committed is lost or duplicated). Both
	// sides of a connection acknowledge the messages they receive
	// (cumulatively, about one small control frame per batch or per 2 ms)
	// when both run this version and ResumeWindow is not negative, so that a
	// connection that ends says exactly which messages the remote never
	// acknowledged (a *NotDeliveredError in Err, in later Sends and in the
	// disconnected event), and Send pushes back once ResendBuffer bytes wait
	// for an acknowledgement. 0: the default, DefaultResumeWindow (10 s);
	// negative: neither resumption nor acknowledgements, a lost stream ends
	// the connection at once (a very short window keeps the
	// acknowledgements and ends the session soon after a loss).
	ResumeWindow time.Duration

	// ResendBuffer bounds, in bytes, the messages a connection keeps until
	// the remote acknowledges them (each counts its length plus 32 bytes);
	// a Send waits (up to its ctx) for room. A single message larger than
	// it is sent alone. Default 4 MiB.
	ResendBuffer int

	// HandshakeRate limits the skipwire streams (handshakes) one peer may
	// open to this node, per second and per peer: each inbound stream takes
	// a token from the peer's bucket, which holds HandshakeBurst tokens and
	// refills at HandshakeRate per second. A stream that finds the bucket
	// empty is reset before its HELLO is read: the opener's attempt fails as
	// attempts that may pass do, and it retries after its backoff. Each
	// refusal is counted (skipwire_limited_total{limit="handshake_rate"})
	// and the first one per peer is logged. An honest peer opens one stream
	// per connection it makes (two when both sides Connect at once, one
	// per resumption), so a rate of 1 with a burst of 8 refuses none in
	// practice. Default 0: no limit.
	HandshakeRate float64

	// HandshakeBurst is the size of each peer's bucket for HandshakeRate:
	// how many streams a peer may open at once. Default 8 when HandshakeRate
	// is set; it must be 0 when HandshakeRate is not.
	HandshakeBurst int

	// MessageRate limits the messages a connection reads from the remote,
	// per second: when the remote sends faster than MessageRate once it has
	// used up MessageBurst, the connection stops reading until it may read
	// the next message. Nothing is dropped: the messages wait in the
	// stream, whose flow control holds the remote's Sends back (they wait,
	// up to their ctx, or until ResendBuffer fills). Each pause is counted
	// (skipwire_limited_total{limit="message_rate"}) and the first one per
	// connection is logged. Control frames (acknowledgements, CLOSE) are
	// not counted. Default 0: no limit.
	MessageRate float64

	// MessageBurst is how many messages a connection reads at once, beyond
	// MessageRate, after a quiet while. Default: one second's worth of
	// MessageRate (at least 1) when MessageRate is set; it must be 0 when
	// MessageRate is not.
	MessageBurst int

	// NetworkName separates overlays that share hosts or a DHT: managers
	// with different names speak different protocol IDs (ProtocolFor) and
	// never connect to each other; a Connect to a node of another network
	// fails at once with ErrRefused, without retry. Give the DHT the same
	// name (resolver.DHTNetwork) to keep the networks' DHTs apart too. Up
	// to 64 ASCII letters, digits, '.', '_' or '-'. Default "": ProtocolID,
	// which version-1 nodes speak.
	NetworkName string

	// Metrics, if set, is the registry NewManager registers the manager's
	// Prometheus collectors in. Nil means no metrics, at no cost. All are in
	// the "skipwire" namespace:
	//
	//	skipwire_connections{direction}          gauge: live connections, "inbound" or "outbound"
	//	skipwire_connects_total{result}          dials that Connect started (concurrent Connects
	//	                                         to one peer share one), by result: ok, not_found,
	//	                                         refused, too_many, peer_mismatch, denied (by this
	//	                                         host's connection gater), canceled, error
	//	skipwire_dial_attempts_total             dial attempts, first ones and retries
	//	skipwire_dial_retries_total              dial attempts after a failed one
	//	skipwire_reconnects_total                connections re-established to persistent peers
	//	skipwire_disconnects_total{reason}       dead connections: closed_local, closed_remote,
	//	                                         left (the remote node's manager closed), lost
	//	skipwire_idle_closes_total               connections closed by IdleTimeout
	//	skipwire_evictions_total                 connections closed to make room (EvictAtLimit)
	//	skipwire_fast_failures_total             Connects failed at once: the peer failed
	//	                                         recently (UnreachableFor)
	//	skipwire_probes_total{result}            Probe calls, by result: ok, error
	//	skipwire_messages_total{direction}       messages sent ("out") and received ("in")
	//	skipwire_bytes_total{direction}          message payload bytes sent and received
	//	skipwire_frame_errors_total{kind}        bad input from remotes: frame (a bad or stalled
	//	                                         frame, or an ACK beyond what was sent) or
	//	                                         handshake (a bad HELLO)
	//	skipwire_limited_total{limit}            times a limit held a remote back: handshake_rate
	//	                                         (an inbound stream refused for HandshakeRate),
	//	                                         message_rate (a connection paused reading for
	//	                                         MessageRate), memory (a connection paused reading:
	//	                                         the resource manager refused memory for a message)
	//	skipwire_send_duration_seconds           Send latency, histogram
	//	skipwire_next_wait_seconds               time Next waited for a message, histogram
	//
	// Wrap the registerer with prometheus.WrapRegistererWith to tell several
	// managers of one process apart; managers registered on one registry
	// without that (one after another, or at once) share the collectors, and
	// their figures add up. The gaters (DenyList, AllowList) count their
	// refusals in collectors of their own, which the application registers:
	// skipwire_gater_refusals_total{gater, direction}.
	Metrics prometheus.Registerer
}

// Defaults of Config, applied where a field is zero.
const (
	DefaultConnectTimeout    = 10 * time.Second
	DefaultKeepaliveInterval = 15 * time.Second
	DefaultMaxConnections    = 1000
	DefaultRetryAttempts     = 3
	DefaultRetryDelay        = time.Second
	DefaultMaxRetryDelay     = 30 * time.Second
	DefaultMaxMessageSize    = 4 << 20
	DefaultCloseTimeout      = 5 * time.Second
	DefaultReceiveBuffer     = 16
	DefaultUnreachableFor    = time.Second
	DefaultResendBuffer      = 4 << 20
	DefaultResumeWindow      = 10 * time.Second
	DefaultHandshakeBurst    = 8

	// MaxMessageSizeLimit is the largest MaxMessageSize the wire format allows.
	MaxMessageSizeLimit = 1 << 30
	// MaxResendBuffer is the largest ResendBuffer (it travels in the
	// handshake, which has room for this much).
	MaxResendBuffer = 1 << 32

	maxKeepaliveTimeout = 10 * time.Second
)

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{RetryAttempts: DefaultRetryAttempts}.withDefaults()
}

// Validate reports whether c can be used, with an error wrapping
// ErrInvalidConfig that names the first bad field.
func (c Config) Validate() error {
	durations := []struct {
		name string
		v    time.Duration
	}{
		{"ConnectTimeout", c.ConnectTimeout},
		{"KeepaliveInterval", c.KeepaliveInterval},
		{"KeepaliveTimeout", c.KeepaliveTimeout},
		{"RetryDelay", c.RetryDelay},
		{"MaxRetryDelay", c.MaxRetryDelay},
		{"CloseTimeout", c.CloseTimeout},
		{"IdleTimeout", c.IdleTimeout},
	}
	for _, d := range durations {
		if d.v < 0 {
			return fmt.Errorf("%w: %s is negative (%s)", ErrInvalidConfig, d.name, d.v)
		}
	}
	ints := []struct {
		name string
		v    int
	}{
		{"MaxConnections", c.MaxConnections},
		{"RetryAttempts", c.RetryAttempts},
		{"MaxMessageSize", c.MaxMessageSize},
		{"ReceiveBuffer", c.ReceiveBuffer},
		{"ResendBuffer", c.ResendBuffer},
	}
	for _, n := range ints {
		if n.v < 0 {
			return fmt.Errorf("%w: %s is negative (%d)", ErrInvalidConfig, n.name, n.v)
		}
	}
	if err := validRates(c); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := validNetworkName(c.NetworkName); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.ResendBuffer > MaxResendBuffer {
		return fmt.Errorf("%w: ResendBuffer %d exceeds %d", ErrInvalidConfig, c.ResendBuffer, MaxResendBuffer)
	}
	if c.MaxMessageSize > MaxMessageSizeLimit {
		return fmt.Errorf("%w: MaxMessageSize %d exceeds the wire limit %d", ErrInvalidConfig, c.MaxMessageSize, MaxMessageSizeLimit)
	}
	d := c.withDefaults()
	if d.MaxRetryDelay < d.RetryDelay {
		return fmt.Errorf("%w: MaxRetryDelay %s is below RetryDelay %s", ErrInvalidConfig, d.MaxRetryDelay, d.RetryDelay)
	}
	return nil
}

// WithDefaults returns c with every zero field but RetryAttempts set to its
// default: the configuration a Manager actually runs with.
func (c Config) WithDefaults() Config { return c.withDefaults() }

// withDefaults returns c with every zero field but RetryAttempts set to its default.
func (c Config) withDefaults() Config {
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.ConnectTimeout, DefaultConnectTimeout)
	setDur(&c.KeepaliveInterval, DefaultKeepaliveInterval)
	setDur(&c.KeepaliveTimeout, min(c.KeepaliveInterval, maxKeepaliveTimeout))
	setDur(&c.RetryDelay, DefaultRetryDelay)
	setDur(&c.MaxRetryDelay, max(DefaultMaxRetryDelay, c.RetryDelay))
	setDur(&c.CloseTimeout, DefaultCloseTimeout)
	setDur(&c.UnreachableFor, DefaultUnreachableFor)
	setDur(&c.ResumeWindow, DefaultResumeWindow)
	setInt(&c.MaxConnections, DefaultMaxConnections)
	setInt(&c.MaxMessageSize, DefaultMaxMessageSize)
	setInt(&c.ReceiveBuffer, DefaultReceiveBuffer)
	setInt(&c.ResendBuffer, DefaultResendBuffer)
	if c.HandshakeRate > 0 {
		setInt(&c.HandshakeBurst, DefaultHandshakeBurst)
	}
	if c.MessageRate > 0 {
		setInt(&c.MessageBurst, max(1, int(min(c.MessageRate, math.MaxInt32))))
	}
	return c
}

// validRates checks the rate limits: finite, not negative, and a burst
// only with its rate.
func validRates(c Config) error {
	for _, r := range []struct {
		name, burstName string
		rate            float64
		burst           int
	}{
		{"HandshakeRate", "HandshakeBurst", c.HandshakeRate, c.HandshakeBurst},
		{"MessageRate", "MessageBurst", c.MessageRate, c.MessageBurst},
	} {
		switch {
		case math.IsNaN(r.rate) || math.IsInf(r.rate, 0) || r.rate < 0:
			return fmt.Errorf("%s is %v: want a finite rate >= 0 (0: no limit)", r.name, r.rate)
		case r.burst < 0:
			return fmt.Errorf("%s is negative (%d)", r.burstName, r.burst)
		case r.burst > 0 && r.rate == 0:
			return fmt.Errorf("%s is %d without %s", r.burstName, r.burst, r.name)
		}
	}
	return nil
}
