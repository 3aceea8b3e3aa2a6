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
// (Invalidator) when the addresses it gave turn out not to work.
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

	"github.com/skipwire/skipwire/identity"
)

// AddressResolver finds the addresses of the node named by an Identifier.
// Implementations are safe for concurrent use.
type AddressResolver interface {
	// Resolve returns the peer ID and at least one address for id, or an error
	// wrapping ErrNotFound. It blocks at most until ctx ends.
	Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error)
}

// Invalidator is implemented by resolvers that remember answers (Cache, and a
// chain holding one). The connection manager calls Invalidate when a dial to
// resolved addresses fails, so the next Resolve looks again.
type Invalidator interface {
	// Invalidate forgets what is remembered about id, including a lookup in
	// progress: callers already waiting for it still get its answer, but later
	// calls start afresh. It does not block and is safe for concurrent use.
	Invalidate(id identity.Identifier)
}

// ErrNotFound is returned, wrapped, when a resolver knows no address for an
// Identifier.
var ErrNotFound = errors.New("resolver: no address found")

// ErrPeerMismatch is returned, wrapped, when an address or an answer names a
// peer other than the one derived from the Identifier being resolved.
var ErrPeerMismatch = errors.New("resolver: peer ID does not match identifier")

// checkAnswer returns nil if info is a usable answer for id: the right peer ID
// and at least one address. step names the resolver for the error.
func checkAnswer(id identity.Identifier, info peer.AddrInfo, step string) error {
	if want := id.PeerID(); info.ID != want {
		return fmt.Errorf("resolve %s: %s: answer for peer %s: %w", id.Short(), step, info.ID, ErrPeerMismatch)
	}
	if len(info.Addrs) == 0 {
		return fmt.Errorf("resolve %s: %s: answer without addresses: %w", id.Short(), step, ErrNotFound)
	}
	return nil
}

// isCtxErr reports whether err comes from a context that ended.
func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
