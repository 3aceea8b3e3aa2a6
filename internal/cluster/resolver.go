package cluster

import (
	"context"
	"fmt"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/resolver"
)

// DefaultResolver returns the resolver a cluster node uses unless
// Options.NewResolver says otherwise: the host's peerstore, then the DHT.
// (p2pconn.Manager uses a connection the peer opened while the lookup ran,
// so ConnResolver is no longer needed for Connect; it remains for callers
// that resolve directly.)
func DefaultResolver(h host.Host, kad *dht.IpfsDHT) resolver.AddressResolver {
	return resolver.NewChain(resolver.NewPeerstore(h.Peerstore()), resolver.NewDHT(kad))
}

// ConnResolver returns a resolver that answers with the remote addresses of
// h's open connections to the peer, and ErrNotFound if there is none.
//
// It covers a race in which a peer dials us while we resolve it directly: before
// identify completes, an inbound connection leaves no address in the
// peerstore, and kad-dht's FindPeer, seeing the peer connected, answers
// with no address; both count as "not found", which p2pconn.Manager.Connect
// treats as final, although the connection it needs is open. The addresses
// it returns are those of the connections (for an inbound one, the remote's
// ephemeral port): the manager does not dial them, since the host is
// connected, and identify replaces them with the peer's listen addresses.
func ConnResolver(h host.Host) resolver.AddressResolver {
	return connResolver{h: h}
}

type connResolver struct {
	h host.Host
}

func (r connResolver) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	if err := ctx.Err(); err != nil {
		return peer.AddrInfo{}, fmt.Errorf("resolve %s: open connections: %w", id.Short(), err)
	}
	p := id.PeerID()
	var addrs []ma.Multiaddr
	for _, c := range r.h.Network().ConnsToPeer(p) {
		addrs = append(addrs, c.RemoteMultiaddr())
	}
	if len(addrs) == 0 {
		return peer.AddrInfo{}, fmt.Errorf("resolve %s: open connections: none: %w", id.Short(), resolver.ErrNotFound)
	}
	return peer.AddrInfo{ID: p, Addrs: addrs}, nil
}
