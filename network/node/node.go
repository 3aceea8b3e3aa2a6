// Package node builds a complete skipwire node in one call: a libp2p host
// with p2pconn.HostOptions, a resolver, a p2pconn.Manager and a
// network.Network, and stops them in the right order.
//
//	n, err := node.New(node.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
//	if err != nil { ... }
//	defer n.Close()
//	n.AddPeer(otherID, otherAddrs...) // or give Config.Resolver, e.g. a DHT
//	conduit, err := n.Register("search", processor)
//
// Package network itself depends on the p2pconn contract only; this package
// is where it meets libp2p.
package node

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// DefaultListen are the listen addresses of a node whose Config has none:
// TCP and QUIC on every interface, on ports the system picks.
var DefaultListen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}

// Config says how to build a node. The zero value is a node with a new key,
// listening on DefaultListen, with default settings.
type Config struct {
	// Key is the node's Ed25519 host key; its public key is the node's
	// Identifier. Nil: a new key (see identity.LoadOrCreateKey to keep one).
	Key crypto.PrivKey
	// Listen are the host's listen multiaddrs. Empty: DefaultListen.
	Listen []string
	// Resolver finds the addresses of other nodes, after the node's own
	// table (AddPeer). Nil: the host's peerstore.
	Resolver resolver.AddressResolver
	// Conn configures the host options and the manager.
	Conn p2pconn.Config
	// Network configures the Network.
	Network network.Config
	// HostOptions are appended to p2pconn.HostOptions(Conn), before the
	// identity and listen addresses.
	HostOptions []libp2p.Option
}

// Node is a running skipwire node. Its methods are safe for concurrent use.
type Node struct {
	h     host.Host
	m     *p2pconn.Manager
	n     *network.Network
	table *resolver.Static
}

// New builds and starts a node. On error, whatever was started is stopped.
func New(cfg Config) (*Node, error) {
	key := cfg.Key
	if key == nil {
		var err error
		if key, err = identity.GenerateKey(); err != nil {
			return nil, fmt.Errorf("node: key: %w", err)
		}
	}
	listen := cfg.Listen
	if len(listen) == 0 {
		listen = DefaultListen
	}
	addrs := make([]ma.Multiaddr, len(listen))
	for i, s := range listen {
		// Checked before libp2p.New: the options that build the host's
		// connection and resource managers run before the listen addresses
		// are parsed, and a failure then would leave them running.
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("node: listen address %q: %w", s, err)
		}
		addrs[i] = a
	}
	opts := append(p2pconn.HostOptions(cfg.Conn), cfg.HostOptions...)
	opts = append(opts, libp2p.Identity(key), libp2p.ListenAddrs(addrs...))
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("node: host: %w", err)
	}
	table := resolver.NewStatic()
	rest := cfg.Resolver
	if rest == nil {
		rest = resolver.NewPeerstore(h.Peerstore())
	}
	m, err := p2pconn.NewManager(h, resolver.NewChain(table, rest), cfg.Conn)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("node: %w", err), h.Close())
	}
	n, err := network.New(m, cfg.Network)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("node: %w", err), m.Close(), h.Close())
	}
	return &Node{h: h, m: m, n: n, table: table}, nil
}

// ID returns the node's Identifier.
func (nd *Node) ID() identity.Identifier { return nd.m.ID() }

// Host returns the node's libp2p host.
func (nd *Node) Host() host.Host { return nd.h }

// Manager returns the node's connection manager.
func (nd *Node) Manager() *p2pconn.Manager { return nd.m }

// Network returns the node's Network.
func (nd *Node) Network() *network.Network { return nd.n }

// AddrInfo returns the node's peer ID and listen addresses, to give to
// other nodes (their AddPeer, a bootstrap list).
func (nd *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: nd.h.ID(), Addrs: nd.h.Addrs()}
}

// AddPeer tells the node where id listens; its own table is asked before
// Config.Resolver.
func (nd *Node) AddPeer(id identity.Identifier, addrs ...ma.Multiaddr) { nd.table.Add(id, addrs...) }

// Register installs p as the processor of ch: Network.Register.
func (nd *Node) Register(ch network.Channel, p network.MessageProcessor) (network.Conduit, error) {
	return nd.n.Register(ch, p)
}

// Conduit returns a conduit on ch: Network.Conduit.
func (nd *Node) Conduit(ch network.Channel) network.Conduit { return nd.n.Conduit(ch) }

// Close stops the node, in this order: the Network (processors stop, peers
// are told), the manager (connections close gracefully, which needs the
// host), then the host. It is how a node leaves: its peers' connections end
// with an error matching p2pconn.ErrPeerLeft. A DHT given as Config.Resolver
// is the caller's: close it after Close returns. It returns the errors joined.
func (nd *Node) Close() error {
	return errors.Join(nd.n.Close(), nd.m.Close(), nd.h.Close())
}
