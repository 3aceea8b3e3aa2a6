package p2pconn

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skipwire/skipwire/identity"
)

// AllowList is a libp2p connection gater for a closed membership: only the
// nodes it lists, by skipwire Identifier, may connect. Install it when
// building the host; libp2p takes one gater per host:
//
//	al := p2pconn.NewAllowList(members...)
//	opts := append(p2pconn.HostOptions(cfg),
//		libp2p.Identity(key),
//		libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/4001"),
//		libp2p.ConnectionGater(al))
//	h, err := libp2p.New(opts...)
//	...
//	al.Allow(newcomer)
//	reg.MustRegister(al) // its refusals, beside Config.Metrics
//
// Every other node is refused in both directions, on every transport, at
// the same points as DenyList refuses a denied node: dialing it fails before
// any packet is sent (Manager.Connect then returns an error matching
// swarm.ErrGaterDisallowedConnection, without retrying), and a connection it
// opens is closed right after the secure handshake, before any protocol
// runs, so it never reaches Accept. Peers whose key is not Ed25519 have no
// Identifier and are refused too. This host's other protocols (a DHT, for
// one) only reach listed nodes as well. Deny refuses new connections only;
// to also cut an existing one, call Manager.Disconnect(id) and
// h.Network().ClosePeer(id.PeerID()).
//
// Each refusal is counted (Refused). An AllowList is a prometheus.Collector
// of the counter skipwire_gater_refusals_total{gater="allow_list",direction}
// ("inbound" or "outbound").
//
// Every method is safe for concurrent use; the checks libp2p makes do not
// allocate.
type AllowList struct {
	mu      sync.RWMutex
	allowed map[peer.ID]struct{} // keyed by peer ID: the checks need no conversion
	refused refusals
}

var (
	_ connmgr.ConnectionGater = (*AllowList)(nil)
	_ prometheus.Collector    = (*AllowList)(nil)
)

// NewAllowList returns an allow list of ids (none: it refuses everybody).
func NewAllowList(ids ...identity.Identifier) *AllowList {
	a := &AllowList{allowed: make(map[peer.ID]struct{}), refused: newRefusals("allow_list")}
	a.Allow(ids...)
	return a
}

// Allow adds ids to the list. Allowing a listed Identifier again does nothing.
func (a *AllowList) Allow(ids ...identity.Identifier) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range ids {
		a.allowed[id.PeerID()] = struct{}{}
	}
}

// Deny removes ids from the list. Denying an Identifier that is not listed
// does nothing.
func (a *AllowList) Deny(ids ...identity.Identifier) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range ids {
		delete(a.allowed, id.PeerID())
	}
}

// Allowed reports whether id is on the list.
func (a *AllowList) Allowed(id identity.Identifier) bool {
	return a.allowedPeer(id.PeerID())
}

// Refused returns how many connections the list refused: opened by remotes
// (inbound), and dialed by this host (outbound).
func (a *AllowList) Refused() (inbound, outbound uint64) {
	return a.refused.inbound.Load(), a.refused.outbound.Load()
}

func (a *AllowList) allowedPeer(p peer.ID) bool {
	a.mu.RLock()
	_, ok := a.allowed[p]
	a.mu.RUnlock()
	return ok
}

// InterceptPeerDial refuses to dial a peer that is not listed. libp2p calls
// it before dialing.
func (a *AllowList) InterceptPeerDial(p peer.ID) bool {
	return a.refused.refuse(network.DirOutbound, a.allowedPeer(p))
}

// InterceptAddrDial allows every address: the peer was checked by
// InterceptPeerDial.
func (a *AllowList) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept allows every inbound connection: the remote peer is not
// known before the secure handshake, after which InterceptSecured checks it.
func (a *AllowList) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured refuses a connection, inbound or outbound, to a peer that
// is not listed, once the secure handshake has proven who the remote is.
func (a *AllowList) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return a.refused.refuse(dir, a.allowedPeer(p))
}

// InterceptUpgraded checks the peer once more, for a node denied while its
// connection was being set up.
func (a *AllowList) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	return a.refused.refuse(c.Stat().Direction, a.allowedPeer(c.RemotePeer())), 0
}

// Describe implements prometheus.Collector.
func (a *AllowList) Describe(ch chan<- *prometheus.Desc) { a.refused.describe(ch) }

// Collect implements prometheus.Collector.
func (a *AllowList) Collect(ch chan<- prometheus.Metric) { a.refused.collect(ch) }
