package resolver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/internal/netname"
)

var log = logging.Logger("skipwire/resolver")

// DHTProtocolPrefix is the protocol prefix of skipwire's Kademlia DHT: its
// nodes speak /skipwire/kad/1.0.0, so they form a network of their own and
// never join (or answer) the public IPFS DHT. It is the prefix of the
// default network; DHTProtocolPrefixFor gives the others'.
const DHTProtocolPrefix protocol.ID = "/skipwire"

// DHTProtocolPrefixFor returns the protocol prefix of the Kademlia DHT of the
// skipwire network named name (p2pconn.Config.NetworkName): DHTProtocolPrefix
// for "", else /skipwire/<name>, whose nodes speak /skipwire/<name>/kad/1.0.0.
// It does not check name; DHTNetwork does.
func DHTProtocolPrefixFor(name string) protocol.ID {
	if name == "" {
		return DHTProtocolPrefix
	}
	return DHTProtocolPrefix + "/" + protocol.ID(name)
}

// DHTNetwork returns the option of NewKadDHT that puts the DHT in the
// skipwire network named name, the p2pconn.Config.NetworkName of the node's
// manager: the DHT runs under DHTProtocolPrefixFor(name), so it neither
// joins nor answers the DHTs of other networks, even over libp2p connections
// their hosts share. A bootstrap peer of another network never enters the
// routing table: if it reaches only such peers, NewKadDHT fails when its ctx
// ends. If name is not a valid network name (see p2pconn.Config.NetworkName),
// NewKadDHT fails with an error that says why.
//
// The DHT only finds addresses: what keeps the networks apart is the
// skipwire stream's protocol ID. A DHT server answers a FindPeer with the
// target's addresses whenever its peerstore holds them, so a peer of another
// network that its host met may still be found; a Connect to it fails with
// p2pconn.ErrRefused.
func DHTNetwork(name string) dht.Option {
	set := dht.ProtocolPrefix(DHTProtocolPrefixFor(name))
	if err := netname.Check(name); err != nil {
		return failOption(set, fmt.Errorf("network name %w", err))
	}
	return set
}

// failOption returns an option of the type of its first argument that fails
// with err.
// kad-dht's options take a type of its internal package, which only type
// inference can name outside it.
func failOption[C any](_ func(C) error, err error) func(C) error {
	return func(C) error { return err }
}

// rtPollInterval is how often NewKadDHT looks at the routing table while it
// waits for the first peer.
const rtPollInterval = 5 * time.Millisecond

// NewKadDHT starts a Kademlia DHT on h set up for skipwire's networks, which
// are often private and sometimes all on one machine, and returns it once it
// has joined the network. Pass it to NewDHT to resolve Identifiers, and Close
// it before closing h.
//
// The DHT runs in server mode under DHTProtocolPrefix (the default network;
// pass DHTNetwork for another), with filters that keep every address and
// every peer, loopback and private ones included. Why not kad-dht's
// defaults:
//
//   - dht.ModeAuto, the default mode, starts as a client and turns server only
//     when AutoNAT reports public reachability, which never happens on
//     localhost or on a private network. A network of clients answers no queries, so
//     every node is a server here.
//   - The default prefix, /ipfs, is the public IPFS ("Amino") DHT: a node that
//     meets any IPFS peer would join that network and answer for it.
//   - The dual DHT (package dual), the usual way to start kad-dht, strips
//     loopback addresses from its LAN table and non-public ones from its WAN
//     table (AddressFilter), and filters peers by address (QueryFilter,
//     RoutingTableFilter), so nodes on one machine cannot find each other.
//     A bare dht.New keeps everything today (no address filter, query and
//     routing-table filters that accept all, no IP diversity filter, which
//     would cap the peers sharing 127.0.0.1); NewKadDHT sets the three
//     filters explicitly so that stays true.
//
// bootstrap lists nodes already in the network; entries naming h itself are
// ignored, so every node of a cluster can share one list. With no bootstrap
// peer the node starts a network of its own (the first node of a cluster) and
// NewKadDHT returns at once. Otherwise NewKadDHT connects to every bootstrap
// peer, fails if it reaches none in three rounds a second apart, starts a routing-table refresh (Bootstrap)
// and waits until the routing table holds at least one peer, which takes an
// identify exchange and one DHT query. The bootstrap peers are also kept as
// dht.BootstrapPeers, so the DHT reconnects to them if its table ever empties.
//
// opts are applied after skipwire's, so they can override any of them. ctx
// bounds the start only: the DHT runs until Close. If ctx ends before the DHT
// has joined, or anything fails, NewKadDHT closes the DHT and returns an
// error.
func NewKadDHT(ctx context.Context, h host.Host, bootstrap []peer.AddrInfo, opts ...dht.Option) (*dht.IpfsDHT, error) {
	var peers []peer.AddrInfo
	for _, ai := range bootstrap {
		if ai.ID != h.ID() {
			peers = append(peers, ai)
		}
	}

	all := []dht.Option{
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(DHTProtocolPrefix),
		dht.AddressFilter(keepAllAddrs),
		dht.QueryFilter(func(any, peer.AddrInfo) bool { return true }),
		dht.RoutingTableFilter(func(any, peer.ID) bool { return true }),
	}
	if len(peers) > 0 {
		all = append(all, dht.BootstrapPeers(peers...))
	}
	d, err := dht.New(h, append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("resolver: start kad-dht: %w", err)
	}
	if err := join(ctx, h, d, peers); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// Dialing the bootstrap peers: when none answers, join tries joinRounds
// times in all, joinPause apart. On a host starved of CPU (many nodes
// starting at once on a busy machine) every handshake of a round can time
// out; the next round may find the CPU.
const (
	joinRounds = 3
	joinPause  = time.Second
)

// join connects d to the network through peers and waits until its routing
// table is not empty.
func join(ctx context.Context, h host.Host, d *dht.IpfsDHT, peers []peer.AddrInfo) error {
	for round := 1; len(peers) > 0; round++ {
		err := connectAny(ctx, h, peers)
		if err == nil {
			break
		}
		if round == joinRounds || ctx.Err() != nil {
			return err
		}
		log.Debugw("kad-dht: no bootstrap peer reachable, trying again", "round", round, "error", err)
		clearBackoff(h, peers)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(joinPause):
		}
	}
	if err := d.Bootstrap(ctx); err != nil {
		return fmt.Errorf("resolver: bootstrap kad-dht: %w", err)
	}
	if len(peers) == 0 {
		return nil
	}
	tick := time.NewTicker(rtPollInterval)
	defer tick.Stop()
	for d.RoutingTable().Size() == 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("resolver: join kad-dht: routing table still empty, "+
				"no bootstrap peer answered as a DHT server under this protocol prefix: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// clearBackoff forgets the failed dials to peers, which the host's swarm
// would otherwise refuse to retry for a while.
func clearBackoff(h host.Host, peers []peer.AddrInfo) {
	sw, ok := h.Network().(interface{ Backoff() *swarm.DialBackoff })
	if !ok {
		return
	}
	for _, ai := range peers {
		sw.Backoff().Clear(ai.ID)
	}
}

// connectAny connects h to every peer at once, and succeeds if it reaches at
// least one. The other failures are logged.
func connectAny(ctx context.Context, h host.Host, peers []peer.AddrInfo) error {
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, ai := range peers {
		wg.Go(func() {
			if err := h.Connect(ctx, ai); err != nil {
				errs[i] = fmt.Errorf("connect to bootstrap peer %s: %w", ai.ID, err)
			}
		})
	}
	wg.Wait()

	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) == len(peers) {
		return fmt.Errorf("resolver: join kad-dht: no bootstrap peer reachable: %w", errors.Join(failed...))
	}
	for _, err := range failed {
		log.Warnw("kad-dht bootstrap peer unreachable", "error", err)
	}
	return nil
}

// keepAllAddrs is the address filter that keeps loopback and private
// addresses, which kad-dht's dual DHT would drop.
func keepAllAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	return addrs
}
