package p2pconn

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// Hosts for networks with NAT.
//
// Three kinds of host, one option set each:
//
//   - HostOptions: a node with an address others can dial (a server, a
//     node with a port forward announced through libp2p.AddrsFactory, a
//     test on one machine). No relay, no hole punching; with
//     libp2p.EnableRelay() appended it dials nodes behind NAT through
//     their relays.
//   - NATHostOptions: a node that may sit behind a NAT it does not control
//     (a home router, a carrier-grade NAT, a firewall that lets no
//     connection in). It is reached through a circuit relay v2 relay and
//     tries to turn each relayed connection into a direct one by hole
//     punching (DCUtR).
//   - RelayHostOptions: a node with a public address that relays for the
//     others and answers their reachability checks (AutoNAT).

// NATConfig configures NATHostOptions. Exactly one of StaticRelays and
// RelaySource must be set.
type NATConfig struct {
	// StaticRelays are the relays the node reserves a slot on, typically
	// nodes built with RelayHostOptions. Each needs at least one address.
	StaticRelays []peer.AddrInfo

	// RelaySource, instead of StaticRelays, finds relays as the node runs:
	// libp2p's AutoRelay asks it for candidates and reserves a slot on the
	// ones that serve the relay protocol (for example, peers met in the DHT).
	RelaySource autorelay.PeerSource

	// Reachability overrides what AutoNAT finds out. The zero value,
	// network.ReachabilityUnknown, lets AutoNAT (v1, and v2 per address)
	// decide: the node looks for relays once AutoNAT has found it private,
	// which takes a few dial-backs from AutoNAT servers among its peers (a
	// RelayHostOptions node is one). network.ReachabilityPrivate skips the
	// wait: use it for a node known to sit behind NAT, so it reserves a
	// relay slot at once.
	Reachability network.Reachability

	// HolePunching are options of libp2p's hole-punching service, such as
	// holepunch.WithTracer.
	HolePunching []holepunch.Option
}

// validate says what makes nat unusable.
func (nat NATConfig) validate() error {
	switch {
	case len(nat.StaticRelays) == 0 && nat.RelaySource == nil:
		return errors.New("no relay: set NATConfig.StaticRelays or RelaySource")
	case len(nat.StaticRelays) > 0 && nat.RelaySource != nil:
		return errors.New("NATConfig.StaticRelays and RelaySource are both set")
	}
	for _, r := range nat.StaticRelays {
		if err := r.ID.Validate(); err != nil {
			return fmt.Errorf("static relay: %w", err)
		}
		if len(r.Addrs) == 0 {
			return fmt.Errorf("static relay %s: no address", r.ID)
		}
	}
	switch nat.Reachability {
	case network.ReachabilityUnknown, network.ReachabilityPrivate, network.ReachabilityPublic:
		return nil
	}
	return fmt.Errorf("NATConfig.Reachability %d: not a network.Reachability", nat.Reachability)
}

// NATHostOptions returns the libp2p options of a skipwire host that may sit
// behind NAT: those of HostOptions, plus
//
//   - the circuit relay v2 transport and AutoRelay, which reserves a slot on
//     nat's relays and adds /p2p-circuit addresses (relay address, then
//     /p2p/<relay>/p2p-circuit) to the host's addresses while AutoNAT finds
//     the node unreachable (or nat.Reachability says so);
//   - DCUtR hole punching: when a peer reaches the node through a relay, the
//     two try to open a direct connection through both NATs (TCP
//     simultaneous open or QUIC), which succeeds behind most home routers
//     (address- and port-preserving NATs) and fails behind symmetric ones;
//   - AutoNAT v2, which checks which of the node's addresses others can dial;
//   - libp2p's address discovery from what peers observe (identify): hole
//     punching needs the node's public address as its relay sees it;
//   - TCP port reuse: dials leave from the listening port, so that the
//     address the relay observes is the one a hole punch opens.
//
// Give such a node's peers its /p2p-circuit addresses (h.Addrs() once the
// reservation is made, or the relay's address followed by
// /p2p/<relay ID>/p2p-circuit): through a resolver.Static table, or the DHT,
// which learns them from identify. The skipwire connection then runs over
// the relayed libp2p connection, which circuit relay v2 limits (relay
// v2's defaults: 2 minutes and 128 KiB in each direction, then the relay
// resets it and the connection is lost). When hole punching opens a direct
// connection, the skipwire connection stays where it is: it does not move
// to the direct path yet, and the duplicate cleanup (only the side with the
// smaller Identifier closes duplicates) closes the direct connection a
// second later, since it carries no skipwire stream.
//
// Address discovery makes the hazard HostOptions avoids possible: with
// go-libp2p v0.51 a host may never finish Close when many hosts of one
// process close at once. Run one NAT host per process.
//
// A NAT host needs an address the relay can see it from, hence listen
// addresses: append libp2p.Identity and libp2p.ListenAddrStrings (TCP and
// QUIC on port 0 or a fixed port) as with HostOptions. The relay transport
// (TCP or QUIC) of the node's connection to the relay is the one hole
// punching tries. An invalid cfg or nat makes libp2p.New fail.
func NATHostOptions(cfg Config, nat NATConfig) []libp2p.Option {
	withReuse := libp2p.Transport(tcp.NewTCPTransport)
	return append(baseOptions(withReuse),
		libp2p.EnableRelay(),
		libp2p.EnableHolePunching(nat.HolePunching...),
		libp2p.EnableAutoNATv2(),
		natOption(nat),
		managersOption(cfg, nil),
	)
}

// natOption validates nat and applies its relays and reachability when
// libp2p.New applies the options.
func natOption(nat NATConfig) libp2p.Option {
	return func(lc *libp2p.Config) error {
		if err := nat.validate(); err != nil {
			return fmt.Errorf("skipwire NAT host options: %w", err)
		}
		opts := []libp2p.Option{libp2p.EnableAutoRelayWithPeerSource(nat.RelaySource)}
		if len(nat.StaticRelays) > 0 {
			opts[0] = libp2p.EnableAutoRelayWithStaticRelays(nat.StaticRelays)
		}
		switch nat.Reachability {
		case network.ReachabilityPrivate:
			opts = append(opts, libp2p.ForceReachabilityPrivate())
		case network.ReachabilityPublic:
			opts = append(opts, libp2p.ForceReachabilityPublic())
		}
		return lc.Apply(opts...)
	}
}

// RelayConfig configures RelayHostOptions.
type RelayConfig struct {
	// Resources are the relay's limits. The zero value means relay v2's
	// defaults (relay.DefaultResources: 128 reservations, 16 circuits per
	// peer, 8 reservations per IP address, and each relayed connection
	// limited to 2 minutes and 128 KiB in each direction). Limit nil means
	// relayed connections without limits (relay.WithInfiniteLimits).
	Resources relayv2.Resources

	// ResourceManager are options of the host's resource manager. By
	// default libp2p allows 8 connections at a time from one IPv4 address
	// (one IPv6 /56), and new ones at 0.2 per second after a burst of 16:
	// a relay for many nodes behind one carrier-grade NAT raises them, with
	// rcmgr.WithLimitPerSubnet and rcmgr.WithConnRateLimiters.
	ResourceManager []rcmgr.Option
}

// RelayHostOptions returns the libp2p options of a relay for skipwire nodes
// behind NAT: those of HostOptions, plus the circuit relay v2 service with
// rc's limits, and the AutoNAT v1 and v2 services, which tell the nodes
// whether they are reachable. The host's reachability is forced public (the
// relay service runs only on a host that is), so it needs addresses others
// can dial: listen on a public address, or announce one with
// libp2p.AddrsFactory. The relay gives its public addresses to the nodes
// that reserve a slot, and they build their /p2p-circuit addresses from
// them; private and loopback addresses are left out (libp2p's
// manet.IsPublicAddr).
//
// A relay may run a skipwire Manager too; it reaches nodes behind NAT over
// the connections they keep to it (it has no relay transport of its own).
func RelayHostOptions(cfg Config, rc RelayConfig) []libp2p.Option {
	res := rc.Resources
	if res == (relayv2.Resources{}) {
		res = relayv2.DefaultResources()
	}
	noReuse := libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport())
	return append(baseOptions(noReuse),
		libp2p.DisableRelay(),
		libp2p.DisableIdentifyAddressDiscovery(),
		libp2p.EnableRelayService(relayv2.WithResources(res)),
		libp2p.ForceReachabilityPublic(),
		libp2p.EnableNATService(),
		libp2p.EnableAutoNATv2(),
		managersOption(cfg, rc.ResourceManager),
	)
}
