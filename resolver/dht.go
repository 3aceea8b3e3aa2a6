package resolver

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
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
// A node behind NAT announces the addresses of its relays, followed by
// /p2p/<relay>/p2p-circuit; the answer holds them as they are. kad-dht dials
// the node as soon as it hears of it, and the lookup ends once the router's
// host is connected to it, through the relay included (with kad-dht alone it
// would go on until a query to the node itself timed out). Such a node
// should run its DHT as a client (dht.Mode(dht.ModeClient) after NewKadDHT's
// options): a server behind NAT enters the others' routing tables, and their
// queries to it wait for a direct connection (kad-dht opens no stream on a
// relayed one) until they time out.
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

// errRelayed ends a lookup whose target the host reached through a relay.
var errRelayed = errors.New("connected through a relay")

// findPeer runs the router's FindPeer. If the router has a Host (as
// *dht.IpfsDHT does), the lookup ends as soon as that host holds a relayed
// (limited) connection to p, and the answer is what its peerstore holds for
// p: kad-dht dials the target as soon as it hears of it, and with a relayed
// connection it would then wait for its query to the target itself, which
// libp2p holds until a direct connection appears (kad-dht opens no stream on
// a limited connection), up to the query's timeout or ctx's end.
func (d dhtResolver) findPeer(ctx context.Context, p peer.ID) (peer.AddrInfo, error) {
	hr, ok := d.r.(interface{ Host() host.Host })
	if !ok {
		return d.r.FindPeer(ctx, p)
	}
	h := hr.Host()
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return d.r.FindPeer(ctx, p)
	}
	defer sub.Close()
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				if ev := e.(event.EvtPeerConnectednessChanged); ev.Peer == p && ev.Connectedness == network.Limited {
					cancel(errRelayed)
					return
				}
			case <-lctx.Done():
				return
			}
		}
	}()
	info, err := d.r.FindPeer(lctx, p)
	cancel(nil)
	<-watched
	if err != nil && errors.Is(context.Cause(lctx), errRelayed) && ctx.Err() == nil {
		return h.Peerstore().PeerInfo(p), nil
	}
	return info, err
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
	info, err := d.findPeer(ctx, p)
	if errors.Is(err, routing.ErrNotFound) && ctx.Err() == nil && d.heardOf(p) {
		// kad-dht gives up on a peer whose dial failed during the lookup,
		// even if a later answer in the same lookup brought new addresses:
		// a peer that moved is "not found" once, then found. The failed
		// dial took it out of the routing table, so the retry does better.
		info, err = d.findPeer(ctx, p)
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
