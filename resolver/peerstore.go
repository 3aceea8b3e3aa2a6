package resolver

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/skipwire/skipwire/identity"
)

// peerstoreResolver answers from a libp2p peerstore.
type peerstoreResolver struct {
	ps peerstore.Peerstore
}

var _ AddressResolver = peerstoreResolver{}

// NewPeerstore returns a resolver that answers with the addresses ps holds for
// the Identifier's peer ID: those libp2p learned from identify, from earlier
// connections or from DHT lookups, for as long as their TTLs last. It never
// touches the network. A peer with no address in ps is an error wrapping
// ErrNotFound.
func NewPeerstore(ps peerstore.Peerstore) AddressResolver {
	return peerstoreResolver{ps: ps}
}

// Resolve implements AddressResolver.
func (r peerstoreResolver) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	if err := ctx.Err(); err != nil {
		return peer.AddrInfo{}, newError(id, "peerstore", err)
	}
	p := id.PeerID()
	addrs := r.ps.Addrs(p)
	if len(addrs) == 0 {
		return peer.AddrInfo{}, newError(id, "peerstore", ErrNotFound)
	}
	return peer.AddrInfo{ID: p, Addrs: addrs}, nil
}
