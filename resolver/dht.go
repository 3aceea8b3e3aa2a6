package resolver

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/skipwire/skipwire/identity"
)

// dhtResolver answers with a peer-routing lookup.
type dhtResolver struct {
	r routing.PeerRouting
}

var _ AddressResolver = dhtResolver{}

// NewDHT returns a resolver that looks the Identifier's peer ID up with
// r.FindPeer, typically a Kademlia lookup on a *dht.IpfsDHT (see NewKadDHT).
// Note that kad-dht's FindPeer ends by dialing the peer it finds, so a
// successful Resolve usually leaves the host connected to it.
//
// If r has a Host method (as *dht.IpfsDHT does) and a lookup ends in
// routing.ErrNotFound although the host's peerstore holds addresses for the
// peer, Resolve looks once more. kad-dht marks a peer unreachable as soon as
// one dial fails during a lookup, and does not dial the addresses other nodes
// report later in that lookup, so a node that restarted on a new address is
// not found by the first lookup; the failed dial takes it out of the routing
// table, and the second lookup finds it at its new address.
//
// Errors: the router's routing.ErrNotFound, and an answer without addresses,
// are errors wrapping ErrNotFound (and, for the former, routing.ErrNotFound).
// Everything else, an empty routing table (kbucket.ErrLookupFailure) included,
// is wrapped without ErrNotFound, since it may go away on retry. If ctx ends
// during the lookup the error wraps ctx.Err() and never ErrNotFound, even
// though kad-dht then reports routing.ErrNotFound: an interrupted lookup
// proves nothing. An answer for another peer wraps ErrPeerMismatch.
func NewDHT(r routing.PeerRouting) AddressResolver {
	return dhtResolver{r: r}
}

// heardOf reports whether the router's host has addresses for p, which a
// failed kad-dht lookup leaves when it heard of p but did not dial them.
func (d dhtResolver) heardOf(p peer.ID) bool {
	hr, ok := d.r.(interface{ Host() host.Host })
	return ok && len(hr.Host().Peerstore().Addrs(p)) > 0
}

// Resolve implements AddressResolver.
func (d dhtResolver) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	if err := ctx.Err(); err != nil {
		return peer.AddrInfo{}, newError(id, "dht", err)
	}
	p := id.PeerID()
	info, err := d.r.FindPeer(ctx, p)
	if errors.Is(err, routing.ErrNotFound) && ctx.Err() == nil && d.heardOf(p) {
		// kad-dht gives up on a peer whose dial failed during the lookup,
		// even if a later answer in the same lookup brought new addresses:
		// a peer that moved is "not found" once, then found. The failed
		// dial took it out of the routing table, so the retry does better.
		info, err = d.r.FindPeer(ctx, p)
	}
	switch ctxErr := ctx.Err(); {
	case err == nil:
	case ctxErr != nil && errors.Is(err, ctxErr):
		return peer.AddrInfo{}, newError(id, "dht", fmt.Errorf("find peer: %w", err))
	case ctxErr != nil:
		return peer.AddrInfo{}, newError(id, "dht", fmt.Errorf("find peer: %w (lookup said: %v)", ctxErr, err))
	case errors.Is(err, routing.ErrNotFound):
		return peer.AddrInfo{}, newError(id, "dht", fmt.Errorf("%w: %w", ErrNotFound, err))
	default:
		return peer.AddrInfo{}, newError(id, "dht", fmt.Errorf("find peer: %w", err))
	}
	if err := checkAnswer(id, info, "dht"); err != nil {
		return peer.AddrInfo{}, err
	}
	return info, nil
}
