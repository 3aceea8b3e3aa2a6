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
// Resolution says nothing about who answers at the address: the connection
// manager dials the peer ID derived from the Identifier, and libp2p's secure
// handshake proves the remote holds that key.
package resolver

import (
	"context"
	"errors"

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

// ErrNotFound is returned, wrapped, when a resolver knows no address for an
// Identifier.
var ErrNotFound = errors.New("resolver: no address found")
