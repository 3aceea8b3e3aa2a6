package p2pconn

import (
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
)

// Relay limits (ErrRelayLimit).
//
// A circuit relay v2 relay ends a relayed connection once it has carried
// its data limit in either direction, or at its duration limit, and
// announces both when the connection opens. The relay counts every byte of
// the relayed connection: encryption and the muxer's framing, and other
// protocols, beyond skipwire's frames. So skipwire keeps its own writes on
// a relayed stream within a budget, the data limit less an eighth and less
// relayMargin, and stops an eighth of the duration limit early (at least
// one second): a Send beyond them fails with ErrRelayLimit, having sent
// nothing, instead of returning nil for a message the relay then cuts off.

// relayMargin is kept free of the data limit for the other protocols on
// the relayed connection (identify, ping) and the connection's own setup.
const relayMargin = 8 << 10

// relayLimits reads the limits the relay announced for w's libp2p
// connection, if it is relayed.
func (w *wire) relayLimits() {
	st := w.s.Conn().Stat()
	if !st.Limited {
		return
	}
	var limits []string
	if d, ok := st.Extra[client.StatLimitData].(uint64); ok && d > 0 {
		if room := d - d/8; room > relayMargin {
			w.budget = room - relayMargin
		} else {
			w.budget = 1
		}
		limits = append(limits, fmt.Sprintf("%d bytes per direction", d))
	}
	if d, ok := st.Extra[client.StatLimitDuration].(time.Duration); ok && d > 0 {
		opened := st.Opened
		if opened.IsZero() {
			opened = w.born
		}
		w.deadline = opened.Add(d - max(d/8, time.Second))
		limits = append(limits, d.String())
	}
	if len(limits) > 0 {
		w.limits = strings.Join(limits, ", ")
		log.Infow("skipwire stream over a relay", "addr", w.addr, "limits", w.limits)
	}
}

// overLimit returns an error wrapping ErrRelayLimit if writing n more bytes
// on w would take it past its relay budget or deadline, else nil. The
// caller holds wlock.
func (c *conn) overLimit(w *wire, n int) error {
	switch {
	case w.budget > 0 && w.written+uint64(n) > w.budget:
		return fmt.Errorf("send to %s: %d of %d bytes written, %d more (relay limits %s): %w",
			c.id.Short(), w.written, w.budget, n, w.limits, ErrRelayLimit)
	case !w.deadline.IsZero() && time.Now().After(w.deadline):
		return fmt.Errorf("send to %s: the relayed connection ends soon (relay limits %s): %w",
			c.id.Short(), w.limits, ErrRelayLimit)
	}
	return nil
}
