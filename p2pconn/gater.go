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
type DenyList struct{ peerGate }

var (
	_ connmgr.ConnectionGater = (*DenyList)(nil)
	_ prometheus.Collector    = (*DenyList)(nil)
)

// NewDenyList returns an empty deny list: it refuses nobody.
func NewDenyList() *DenyList { return &DenyList{newPeerGate("deny_list", false)} }

// Deny adds ids to the list. Denying a listed Identifier again does nothing.
func (d *DenyList) Deny(ids ...identity.Identifier) { d.add(ids) }

// Allow removes ids from the list. Allowing an Identifier that is not listed
// does nothing.
func (d *DenyList) Allow(ids ...identity.Identifier) { d.remove(ids) }

// Denied reports whether id is on the list.
func (d *DenyList) Denied(id identity.Identifier) bool { return d.listed(id.PeerID()) }

// peerGate is a connection gater by peer ID, the machinery of AllowList and
// DenyList: a set of peers that the gate admits (allow) or refuses (deny),
// checked before dialing and after the secure handshake, each refusal
// counted.
type peerGate struct {
	mu      sync.RWMutex
	set     map[peer.ID]struct{} // keyed by peer ID: the checks need no conversion
	allow   bool                 // the set lists the admitted peers, not the refused ones
	refused refusals
}

func newPeerGate(name string, allow bool) peerGate {
	return peerGate{set: make(map[peer.ID]struct{}), allow: allow, refused: newRefusals(name)}
}

func (g *peerGate) add(ids []identity.Identifier) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		g.set[id.PeerID()] = struct{}{}
	}
}

func (g *peerGate) remove(ids []identity.Identifier) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		delete(g.set, id.PeerID())
	}
}

func (g *peerGate) listed(p peer.ID) bool {
	g.mu.RLock()
	_, ok := g.set[p]
	g.mu.RUnlock()
	return ok
}

// admits reports whether p may connect.
func (g *peerGate) admits(p peer.ID) bool { return g.listed(p) == g.allow }

// Refused returns how many connections the list refused: opened by remotes
// (inbound), and dialed by this host (outbound).
func (g *peerGate) Refused() (inbound, outbound uint64) {
	return g.refused.inbound.Load(), g.refused.outbound.Load()
}

// InterceptPeerDial refuses to dial a peer the gate does not admit. libp2p
// calls it before dialing.
func (g *peerGate) InterceptPeerDial(p peer.ID) bool {
	return g.refused.refuse(network.DirOutbound, g.admits(p))
}

// InterceptAddrDial allows every address: the peer was checked by
// InterceptPeerDial.
func (g *peerGate) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept allows every inbound connection: the remote peer is not
// known before the secure handshake, after which InterceptSecured checks it.
func (g *peerGate) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured refuses a connection, inbound or outbound, to a peer the
// gate does not admit, once the secure handshake has proven who the remote is.
func (g *peerGate) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.refused.refuse(dir, g.admits(p))
}

// InterceptUpgraded checks the peer once more, for a peer the list changed
// for while its connection was being set up.
func (g *peerGate) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	return g.refused.refuse(c.Stat().Direction, g.admits(c.RemotePeer())), 0
}

// Describe implements prometheus.Collector.
func (g *peerGate) Describe(ch chan<- *prometheus.Desc) { g.refused.describe(ch) }

// Collect implements prometheus.Collector.
func (g *peerGate) Collect(ch chan<- prometheus.Metric) { g.refused.collect(ch) }
