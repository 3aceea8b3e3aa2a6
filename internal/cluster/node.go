package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// Node is one incarnation of a cluster node. Its fields are set by the
// cluster and must not be changed.
type Node struct {
	Index    int
	Key      crypto.PrivKey // Ed25519; kept across restarts
	ID       identity.Identifier
	Host     host.Host
	DHT      *dht.IpfsDHT
	Resolver resolver.AddressResolver // Options.NewResolver's, by default DefaultResolver's
	Manager  *p2pconn.Manager
	Listen   []ma.Multiaddr // the bound listen addresses, ports resolved, relay ones left out

	closeOnce [3]sync.Once // manager, DHT, host
	closeErr  [3]error
}

// PeerID returns the node's libp2p peer ID.
func (n *Node) PeerID() peer.ID { return n.Host.ID() }

// AddrInfo returns the node's peer ID and listen addresses, as a bootstrap
// entry or a dial target.
func (n *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.Host.ID(), Addrs: n.Listen}
}

// Multiaddrs returns the node's full multiaddrs, /p2p/<peer id> included.
func (n *Node) Multiaddrs() []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.Host.ID(), Addrs: n.Listen})
	if err != nil {
		return nil
	}
	return addrs
}

// startNode starts node i with key (a new one if nil) listening on listen,
// its DHT joined through boot.
func startNode(ctx context.Context, i int, key crypto.PrivKey, listen []string, boot []peer.AddrInfo, opts Options) (*Node, error) {
	if key == nil {
		k, err := identity.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("cluster: node %d: %w", i, err)
		}
		key = k
	}
	hostOpts := append(p2pconn.HostOptions(opts.Config),
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
	)
	hostOpts = append(hostOpts, opts.HostOptions...)
	h, err := libp2p.New(hostOpts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: node %d: start host on %v: %w", i, listen, err)
	}
	dhtOpts := append([]dht.Option{resolver.DHTNetwork(opts.Config.NetworkName)}, opts.DHTOptions...)
	kad, err := resolver.NewKadDHT(ctx, h, boot, dhtOpts...)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cluster: node %d: %w", i, err), h.Close())
	}
	newResolver := opts.NewResolver
	if newResolver == nil {
		newResolver = DefaultResolver
	}
	r := newResolver(h, kad)
	m, err := p2pconn.NewManager(h, r, opts.Config)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cluster: node %d: %w", i, err), kad.Close(), h.Close())
	}
	return &Node{
		Index:    i,
		Key:      key,
		ID:       m.ID(),
		Host:     h,
		DHT:      kad,
		Resolver: r,
		Manager:  m,
		Listen:   directAddrs(h.Network().ListenAddresses()),
	}, nil
}

// directAddrs drops relay addresses: libp2p's circuit relay transport, which
// the default options enable, listens on "/p2p-circuit", an address nobody
// can dial without a relay, and that restarting would listen on twice.
func directAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	var direct []ma.Multiaddr
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err != nil {
			direct = append(direct, a)
		}
	}
	return direct
}

// stop closes the manager (gracefully), then the DHT, then the host.
func (n *Node) stop() error {
	return errors.Join(n.closeManager(), n.closeDHT(), n.closeHost())
}

// kill closes the host first, as a crash would, then releases the manager
// and the DHT.
func (n *Node) kill() error {
	return errors.Join(n.closeHost(), n.closeManager(), n.closeDHT())
}

func (n *Node) closeManager() error {
	return n.closeStep(0, "manager", n.Manager.Close)
}

func (n *Node) closeDHT() error {
	return n.closeStep(1, "dht", n.DHT.Close)
}

func (n *Node) closeHost() error {
	return n.closeStep(2, "host", n.Host.Close)
}

// closeStep runs close once and names the node and the step in its error.
func (n *Node) closeStep(k int, what string, close func() error) error {
	n.closeOnce[k].Do(func() {
		if err := close(); err != nil {
			n.closeErr[k] = fmt.Errorf("cluster: node %d: close %s: %w", n.Index, what, err)
		}
	})
	return n.closeErr[k]
}
