package p2pconn

import (
	"time"

	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/resolver"
)

// The pieces of dial: ask the resolver, dial one answer, and, when every
// address of an answer failed, forget it and ask for another.

// resolve returns the resolver's answer for id, which must name p and hold
// at least one address. Its errors read "resolve <id>: ...": the resolvers
// of package resolver say so themselves, others are labelled here.
func (m *Manager) resolve(ctx context.Context, id identity.Identifier, p peer.ID) (peer.AddrInfo, error) {
	info, err := m.r.Resolve(ctx, id)
	if err != nil {
		var re *resolver.Error
		if !errors.As(err, &re) {
			err = fmt.Errorf("resolve %s: %w", id.Short(), err)
		}
		return peer.AddrInfo{}, err
	}
	return info, checkAnswer(id, p, info)
}

// checkAnswer returns nil if info names p and holds an address.
func checkAnswer(id identity.Identifier, p peer.ID, info peer.AddrInfo) error {
	if info.ID != p {
		return fmt.Errorf("resolve %s: answer for peer %s: %w", id.Short(), info.ID, ErrPeerMismatch)
	}
	if len(info.Addrs) == 0 {
		return fmt.Errorf("resolve %s: answer without addresses: %w", id.Short(), resolver.ErrNotFound)
	}
	return nil
}

// forget tells a caching resolver that its answer for id did not work.
func (m *Manager) forget(id identity.Identifier) {
	if inv, ok := m.r.(resolver.Invalidator); ok {
		inv.Invalidate(id)
	}
}

// nextAnswer asks a resolver that can offer other addresses (a chain, a
// Cache) for an answer with addresses not in tried. It reports false when
// there is none, or the resolver cannot offer any.
func (m *Manager) nextAnswer(ctx context.Context, id identity.Identifier, p peer.ID, tried []ma.Multiaddr) (peer.AddrInfo, bool) {
	fb, ok := m.r.(resolver.Fallback)
	if !ok {
		return peer.AddrInfo{}, false
	}
	info, err := fb.ResolveExcept(ctx, id, tried)
	if err == nil {
		err = checkAnswer(id, p, info)
	}
	if err == nil {
		var fresh []ma.Multiaddr
		for _, a := range info.Addrs {
			if !ma.Contains(tried, a) {
				fresh = append(fresh, a)
			}
		}
		if info.Addrs = fresh; len(fresh) == 0 {
			err = fmt.Errorf("resolve %s: every address already tried: %w", id.Short(), resolver.ErrNotFound)
		}
	}
	if err != nil {
		log.Debugw("no other address to dial", "peer", id, "err", err)
		return peer.AddrInfo{}, false
	}
	return info, true
}

// connect makes one libp2p dial to info, at once (libp2p's dial backoff for
// the peer is cleared first: a restarted peer must be reachable at once).
func (m *Manager) connect(ctx context.Context, info peer.AddrInfo, timeout time.Duration) error {
	m.h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.TempAddrTTL)
	if b, ok := m.h.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
		b.Backoff().Clear(info.ID)
	}
	if err := m.h.Connect(network.WithDialPeerTimeout(ctx, timeout), info); err != nil {
		var mismatch sec.ErrPeerIDMismatch
		return &dialError{err: err, mismatch: errors.As(err, &mismatch)}
	}
	return nil
}

// addressesFailed reports whether a dial that failed with err tells that the
// addresses it dialed do not work: not when another peer answered there (a
// mismatch, never retried), nor when this host's gater refused, nor when the
// attempt was abandoned (ctx cancelled, as opposed to timed out).
func addressesFailed(ctx context.Context, err error) bool {
	return !errors.Is(err, ErrPeerMismatch) &&
		!errors.Is(err, swarm.ErrGaterDisallowedConnection) &&
		!errors.Is(ctx.Err(), context.Canceled)
}

// dialError is a failed libp2p dial, worded on one line: "dial" then each
// address and why it failed. libp2p's own text spans lines and repeats
// "failed to dial".
type dialError struct {
	err      error
	mismatch bool // the remote proved to hold another key: matches ErrPeerMismatch
}

func (e *dialError) Error() string {
	var de *swarm.DialError
	if !errors.As(e.err, &de) {
		return "dial: " + e.err.Error()
	}
	if len(de.DialErrors) == 0 {
		return "dial: " + errText(de.Cause)
	}
	var b strings.Builder
	b.WriteString("dial ")
	for i, te := range de.DialErrors {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(te.Address.String())
		b.WriteString(": ")
		b.WriteString(errText(te.Cause))
	}
	if de.Skipped > 0 {
		fmt.Fprintf(&b, "; %d more", de.Skipped)
	}
	return b.String()
}

func (e *dialError) Unwrap() []error {
	if e.mismatch {
		return []error{e.err, ErrPeerMismatch}
	}
	return []error{e.err}
}

// errText returns err's text, without the "dial tcp4 <address>" a socket
// error repeats after the multiaddr that says it already.
func errText(err error) string {
	if err == nil {
		return "failed"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// thenErr returns err after prev, if any: the dials of one attempt, in order.
func thenErr(prev, err error) error {
	if prev == nil {
		return err
	}
	return fmt.Errorf("%w; then %w", prev, err)
}
