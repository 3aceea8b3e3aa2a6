package network

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes a Network. In every field the zero value means the default;
// negative values are invalid.
type Config struct {
	// Window is how many messages of one sender one channel of this node
	// queues for its processor. A sender with Window messages queued, or on
	// their way, waits in Send until the processor takes some: push back is
	// per sender and channel, and the connection keeps being read for the
	// other channels. It is announced to each peer on the wire. Default 256;
	// at most MaxWindow.
	//
	// A larger window lets concurrent Sends from one node to one channel go
	// on while credits travel back (a window of 64 halved the rate of 8
	// senders of 128-byte messages on loopback); a smaller one bounds memory
	// for large messages and the queueing delay behind a slow processor.
	// WindowLimit lets the window grow where that helps.
	Window int

	// WindowLimit is how far a channel's window grows for a sender whose
	// Sends wait for room while the processor keeps up: the window doubles
	// each time that sender says it waits (a Send found its room used up) if
	// the channel's processor ran out of messages, from every sender, while
	// the sender last waited. Senders of a processor that has work all the
	// time keep Window. The room granted beyond Window is shared by all the
	// channel's senders: at most WindowLimit - Window in all, so one sender's
	// window reaches WindowLimit at most, and many senders at once (a node
	// everyone sends to) do not lengthen the channel's queue by much. A
	// sender's share goes back when its connection or its Network ends.
	// Default 4096 (or Window, if larger); set it to Window to keep windows
	// fixed; at most MaxWindow. Peers that predate growing windows keep
	// Window both ways.
	//
	// With Window, it bounds what a channel queues: Window messages per peer
	// plus WindowLimit - Window, each at most the largest message.
	WindowLimit int

	// CloseTimeout bounds how long Close spends telling peers that this
	// Network has closed. Default 2 s.
	CloseTimeout time.Duration

	// Metrics, if set, receives the Network's Prometheus collectors (see
	// metrics.go). Collectors already registered there, by an earlier
	// Network for example, are reused. Nil means no metrics.
	Metrics prometheus.Registerer
}

// Defaults of Config, applied where a field is zero.
const (
	DefaultWindow       = 256
	DefaultWindowLimit  = 4096
	DefaultCloseTimeout = 2 * time.Second

	// MaxWindow is the largest Window.
	MaxWindow = 1 << 16
)

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config { return Config{}.withDefaults() }

// Validate reports whether c can be used, with an error wrapping
// ErrInvalidConfig that names the first bad field.
func (c Config) Validate() error {
	if c.Window < 0 || c.Window > MaxWindow {
		return fmt.Errorf("%w: Window %d is outside [0, %d]", ErrInvalidConfig, c.Window, MaxWindow)
	}
	if c.WindowLimit < 0 || c.WindowLimit > MaxWindow {
		return fmt.Errorf("%w: WindowLimit %d is outside [0, %d]", ErrInvalidConfig, c.WindowLimit, MaxWindow)
	}
	if c.WindowLimit != 0 && c.WindowLimit < c.withDefaults().Window {
		return fmt.Errorf("%w: WindowLimit %d is below Window %d", ErrInvalidConfig, c.WindowLimit, c.withDefaults().Window)
	}
	if c.CloseTimeout < 0 {
		return fmt.Errorf("%w: CloseTimeout is negative (%s)", ErrInvalidConfig, c.CloseTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.WindowLimit == 0 {
		c.WindowLimit = max(DefaultWindowLimit, c.Window)
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	return c
}
