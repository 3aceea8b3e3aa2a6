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

// DenyList is a libp2p connection gater that refuses the nodes it lists, by
// skipwire Identifier. Install it when building the host; libp2p takes one
// gater per host:
//
//	dl := p2pconn.NewDenyList()
//	opts := append(p2pconn.HostOptions(cfg),
//		libp2p.Identity(key),
//		libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/4001"),
//		libp2p.ConnectionGater(dl))
//	h, err := libp2p.New(opts...)
//	...
//	dl.Deny(badID)
//
// A denied node is refused in both directions, on every transport: dialing
// it fails before any packet is sent (Manager.Connect then returns an error
// matching swarm.ErrGaterDisallowedConnection, without retrying), and a
// connection it opens is closed right after the secure handshake, where its
// key is proven and before any protocol runs, so it never reaches Accept.
// The remote only sees its dial fail.
//
// The list only concerns Ed25519 peers, the only ones an Identifier can name:
// a peer with another key type is never denied, and is left to other
// defences. Deny refuses new connections only; to also cut an existing one,
// call Manager.Disconnect(id) and h.Network().ClosePeer(id.PeerID()).
//
// To refuse IP addresses or subnets as well, use go-libp2p's
// conngater.BasicConnectionGater instead, with BlockPeer(id.PeerID()) for
// each Identifier. For a closed membership, where only listed nodes may
// connect, use AllowList.
//
// Each refusal is counted (Refused). A DenyList is a prometheus.Collector of
// the counter skipwire_gater_refusals_total{gater="deny_list",direction}
// ("inbound" or "outbound"); register it beside Config.Metrics.
//
// Every method is safe for concurrent use; the checks libp2p makes do not
// allocate.
type DenyList struct {
	mu      sync.RWMutex
	denied  map[peer.ID]struct{} // keyed by peer ID: the checks need no conversion
	refused refusals
}

var (
	_ connmgr.ConnectionGater = (*DenyList)(nil)
	_ prometheus.Collector    = (*DenyList)(nil)
)

// NewDenyList returns an empty deny list: it refuses nobody.
func NewDenyList() *DenyList {
	return &DenyList{denied: make(map[peer.ID]struct{}), refused: newRefusals("deny_list")}
}

// Deny adds ids to the list. Denying a listed Identifier again does nothing.
func (d *DenyList) Deny(ids ...identity.Identifier) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		d.denied[id.PeerID()] = struct{}{}
	}
}

// Allow removes ids from the list. Allowing an Identifier that is not listed
// does nothing.
func (d *DenyList) Allow(ids ...identity.Identifier) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		delete(d.denied, id.PeerID())
	}
}

// Denied reports whether id is on the list.
func (d *DenyList) Denied(id identity.Identifier) bool {
	return d.deniedPeer(id.PeerID())
}

// Refused returns how many connections the list refused: opened by remotes
// (inbound), and dialed by this host (outbound).
func (d *DenyList) Refused() (inbound, outbound uint64) {
	return d.refused.inbound.Load(), d.refused.outbound.Load()
}

func (d *DenyList) deniedPeer(p peer.ID) bool {
	d.mu.RLock()
	_, ok := d.denied[p]
	d.mu.RUnlock()
	return ok
}

// InterceptPeerDial refuses to dial a denied peer. libp2p calls it before
// dialing.
func (d *DenyList) InterceptPeerDial(p peer.ID) bool {
	return d.refused.refuse(network.DirOutbound, !d.deniedPeer(p))
}

// InterceptAddrDial allows every address: the peer was checked by
// InterceptPeerDial.
func (d *DenyList) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept allows every inbound connection: the remote peer is not
// known before the secure handshake, after which InterceptSecured checks it.
func (d *DenyList) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured refuses a connection, inbound or outbound, to a denied
// peer once the secure handshake has proven who the remote is.
func (d *DenyList) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return d.refused.refuse(dir, !d.deniedPeer(p))
}

// InterceptUpgraded checks the peer once more, for a node denied while its
// connection was being set up.
func (d *DenyList) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	return d.refused.refuse(c.Stat().Direction, !d.deniedPeer(c.RemotePeer())), 0
}

// Describe implements prometheus.Collector.
func (d *DenyList) Describe(ch chan<- *prometheus.Desc) { d.refused.describe(ch) }

// Collect implements prometheus.Collector.
func (d *DenyList) Collect(ch chan<- prometheus.Metric) { d.refused.collect(ch) }
