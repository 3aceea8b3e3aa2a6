// Package resolver turns skipwire Identifiers into the libp2p addresses to dial.
//
// An AddressResolver answers one question: where is the node named by this
// Identifier? skipwire ships four answers, from simplest to most scalable:
//
//   - Static: a table the application fills (or loads from a file);
//   - Peerstore: the addresses the libp2p host already knows;
//   - DHT: a Kademlia lookup (FindPeer) over a kad-dht routing table;
//   - Chain: several resolvers tried in order, first success wins.
//
// A Cache in front of any of them remembers answers for a while, shares one
// lookup among concurrent callers, and forgets an answer on request
// (Invalidator) when the addresses it gave turn out not to work. A Chain and a
// Cache also offer other addresses when those of their answer did not work
// (Fallback): the connection manager dials them within the same attempt.
//
// A node behind NAT is reached through a circuit relay: its addresses are
// the relay's, followed by /p2p/<relay peer ID>/p2p-circuit (as the host of
// a node built with p2pconn.NATHostOptions lists them). Every resolver hands
// them out like any other address, and libp2p dials through the relay.
//
// Resolution says nothing about who answers at the address: the connection
// manager dials the peer ID derived from the Identifier, and libp2p's secure
// handshake proves the remote holds that key.
//
// A node on a private network typically runs its own Kademlia DHT (NewKadDHT)
// and looks in its static table and peerstore before asking the DHT:
//
//	kad, err := resolver.NewKadDHT(ctx, h, bootstrap) // bootstrap: []peer.AddrInfo
//	if err != nil {
//		return err
//	}
//	defer kad.Close() // before h.Close()
//
//	table, err := resolver.LoadStaticFile("peers.txt")
//	if err != nil {
//		return err
//	}
//	r := resolver.NewCache(resolver.NewChain(
//		table,
//		resolver.NewPeerstore(h.Peerstore()),
//		resolver.NewDHT(kad),
//	), 10*time.Minute, 5*time.Second)
//
//	info, err := r.Resolve(ctx, id)
//	switch {
//	case errors.Is(err, resolver.ErrNotFound):
//		// nobody knows id: retrying now will not help
//	case err != nil:
//		// ctx ended or the network failed: worth another try
//	default:
//		err = h.Connect(ctx, info)
//		if err != nil {
//			r.Invalidate(id) // the cached addresses are stale
//		}
//	}
package resolver

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
)

// AddressResolver finds the addresses of the node named by an Identifier.
// Implementations are safe for concurrent use.
type AddressResolver interface {
	// Resolve returns the peer ID and at least one address for id, or an error
	// wrapping ErrNotFound. It blocks at most until ctx ends. The resolvers
	// of this package fail with an *Error, which names id and the resolver;
	// the connection manager prefixes any other error with "resolve <id>:".
	Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error)
}

// Invalidator is implemented by resolvers that remember answers (Cache, and a
// chain holding one). The connection manager calls Invalidate when a dial to
// the resolved addresses fails (not when the peer refused, nor when another
// peer answered there), so the next Resolve looks again.
type Invalidator interface {
	// Invalidate forgets what is remembered about id, including a lookup in
	// progress: callers already waiting for it still get its answer, but later
	// calls start afresh. It does not block and is safe for concurrent use.
	Invalidate(id identity.Identifier)
}

// Fallback is implemented by resolvers that may know other addresses when
// those of their answer did not work: a chain (its later members) and a
// Cache (it asks the resolver behind it again). When a dial to every address
// of an answer fails, the connection manager asks ResolveExcept for another
// answer, and dials it within the same connection attempt.
type Fallback interface {
	// ResolveExcept is Resolve for an answer with addresses not in tried:
	// the answer it returns holds only addresses that are not in tried. It
	// returns an error wrapping ErrNotFound when it knows no other address.
	// It blocks at most until ctx ends.
	ResolveExcept(ctx context.Context, id identity.Identifier, tried []ma.Multiaddr) (peer.AddrInfo, error)
}

// ErrNotFound is returned, wrapped, when a resolver knows no address for an
// Identifier.
var ErrNotFound = errors.New("no address found")

// ErrPeerMismatch is returned, wrapped, when an address or an answer names a
// peer other than the one derived from the Identifier being resolved. The
// connection manager's p2pconn.ErrPeerMismatch is this very error.
var ErrPeerMismatch = errors.New("peer ID does not match identifier")

// Error is what the resolvers of this package return when they cannot
// resolve an Identifier: which Identifier, which resolver and why. Its text
// reads "resolve <identifier>: <resolver>: <why>", on one line. Err matches
// the sentinels (ErrNotFound, ErrPeerMismatch) and ctx errors through
// errors.Is.
type Error struct {
	// ID is the Identifier being resolved.
	ID identity.Identifier
	// Resolver names the resolver: "static", "peerstore", "dht", "cache" or
	// "chain".
	Resolver string
	// Err says why.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	return "resolve " + e.ID.Short() + ": " + e.Resolver + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// newError returns an *Error of the resolver named by who.
func newError(id identity.Identifier, who string, err error) error {
	return &Error{ID: id, Resolver: who, Err: err}
}

// checkAnswer returns nil if info is a usable answer for id: the right peer ID
// and at least one address. step names the resolver for the error.
func checkAnswer(id identity.Identifier, info peer.AddrInfo, step string) error {
	if err := answerProblem(id, info); err != nil {
		return newError(id, step, err)
	}
	return nil
}

// answerProblem says what makes info unusable as an answer for id, if
// anything.
func answerProblem(id identity.Identifier, info peer.AddrInfo) error {
	if want := id.PeerID(); info.ID != want {
		return fmt.Errorf("answer for peer %s: %w", info.ID, ErrPeerMismatch)
	}
	if len(info.Addrs) == 0 {
		return fmt.Errorf("answer without addresses: %w", ErrNotFound)
	}
	return nil
}

// untried returns the addresses of addrs that are not in tried, in order.
func untried(addrs, tried []ma.Multiaddr) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range addrs {
		if !ma.Contains(tried, a) {
			out = append(out, a)
		}
	}
	return out
}

// errAllTried is the reason of a resolver whose answer held only addresses
// already tried.
var errAllTried = fmt.Errorf("every address already tried: %w", ErrNotFound)

// isCtxErr reports whether err comes from a context that ended.
func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
