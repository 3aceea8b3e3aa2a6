package p2pconn

import (
	"github.com/libp2p/go-libp2p/core/connmgr"
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
type AllowList struct{ peerGate }

var (
	_ connmgr.ConnectionGater = (*AllowList)(nil)
	_ prometheus.Collector    = (*AllowList)(nil)
)

// NewAllowList returns an allow list of ids (none: it refuses everybody).
func NewAllowList(ids ...identity.Identifier) *AllowList {
	a := &AllowList{newPeerGate("allow_list", true)}
	a.Allow(ids...)
	return a
}

// Allow adds ids to the list. Allowing a listed Identifier again does nothing.
func (a *AllowList) Allow(ids ...identity.Identifier) { a.add(ids) }

// Deny removes ids from the list. Denying an Identifier that is not listed
// does nothing.
func (a *AllowList) Deny(ids ...identity.Identifier) { a.remove(ids) }

// Allowed reports whether id is on the list.
func (a *AllowList) Allowed(id identity.Identifier) bool { return a.listed(id.PeerID()) }
