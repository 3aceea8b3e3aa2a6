package p2pconn

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	yamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// HostOptions returns the libp2p options a skipwire host should use with cfg:
// TCP (without port reuse) and QUIC transports; TLS 1.3 and Noise, both encrypted and
// authenticated (never plaintext); yamux; libp2p's ping service, which the
// health check uses; a connection manager whose low watermark is
// MaxConnections; and a resource manager whose connection limits leave room
// for MaxConnections managed connections plus duplicates being settled and
// other protocols (a per-peer limit of 1 would kill both connections of a
// simultaneous dial, so the per-peer limit stays above it).
//
// It also turns off libp2p's address discovery from the addresses peers say
// they observe (libp2p.DisableIdentifyAddressDiscovery): skipwire nodes are
// dialed at the addresses their resolver gives, and with go-libp2p v0.51 a
// host with discovery on may never finish Close when identify events keep
// arriving while it closes (its observed-address manager stops reading them
// without unsubscribing, the event bus blocks, and autonat's Close waits on
// it for good), as happens when many hosts of one process close at once. A
// node behind a NAT with a port forward announces its public address with
// libp2p.AddrsFactory; one that cannot be dialed at all uses NATHostOptions.
//
// Without the relay transport, such a host cannot dial the /p2p-circuit
// addresses of nodes behind NAT: append libp2p.EnableRelay() when it must
// reach them (it then dials through their relays, and neither reserves a
// slot nor punches holes itself).
//
// It never sets an identity or listen addresses: append
// libp2p.Identity(key) and libp2p.ListenAddrStrings(...) yourself. The
// connection and resource managers are created when libp2p.New applies the
// options, and closed with the host. An invalid cfg makes libp2p.New fail.
func HostOptions(cfg Config) []libp2p.Option {
	// Without port reuse, a dial never leaves from the listening port, so
	// two hosts dialing each other at once cannot meet in a TCP simultaneous
	// open (one connection on which both sides act as the client and the
	// secure handshake fails).
	noReuse := libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport())
	return append(baseOptions(noReuse),
		// skipwire connects nodes directly; a relay transport would only add
		// /p2p-circuit addresses to the host's listen addresses.
		libp2p.DisableRelay(),
		libp2p.DisableIdentifyAddressDiscovery(),
		managersOption(cfg, nil),
	)
}

// baseOptions returns the options every skipwire host has: the TCP
// transport tcpTransport, QUIC, TLS and Noise, yamux and ping.
func baseOptions(tcpTransport libp2p.Option) []libp2p.Option {
	return []libp2p.Option{
		tcpTransport,
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(tls.ID, tls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.Ping(true),
	}
}

// managersOption builds the connection and resource managers when libp2p.New
// applies it, so that nothing runs for options that are never used. rmOpts
// are passed to the resource manager.
func managersOption(cfg Config, rmOpts []rcmgr.Option) libp2p.Option {
	return func(lc *libp2p.Config) error {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("skipwire host options: %w", err)
		}
		cfg = cfg.withDefaults()
		low := cfg.MaxConnections
		high := low + max(low/10, 32)
		cm, err := connmgr.NewConnManager(low, high)
		if err != nil {
			return fmt.Errorf("skipwire host options: connection manager: %w", err)
		}
		rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(resourceLimits(cfg)), rmOpts...)
		if err != nil {
			_ = cm.Close()
			return fmt.Errorf("skipwire host options: resource manager: %w", err)
		}
		return lc.Apply(libp2p.ConnectionManager(cm), libp2p.ResourceManager(rm))
	}
}

// resourceLimits raises libp2p's auto-scaled default limits where they are
// too low for cfg.MaxConnections and for the memory one connection may
// hold in received messages (connMemory); it never lowers one. The memory
// of all skipwire connections together stays bounded by the ServiceName
// service's limit, libp2p's scaled default for services (64 MiB plus 128
// MiB per GiB of an eighth of the RAM), raised to one connection's worst
// case if it is below.
// streamWindowReserve is what the muxer reserves per stream for its
// receive window (go-yamux's initial window, 256 KiB).
const streamWindowReserve = 256 << 10

func resourceLimits(cfg Config) rcmgr.ConcreteLimitConfig {
	base := rcmgr.DefaultLimits.AutoScale()
	def := base.ToPartialLimitConfig()
	conns := 2*cfg.MaxConnections + 256
	raise := func(v *rcmgr.LimitVal, want int) {
		if *v >= 0 && int(*v) < want {
			*v = rcmgr.LimitVal(want)
		}
	}
	raiseMem := func(v *rcmgr.LimitVal64, want int64) {
		if *v >= 0 && int64(*v) < want {
			*v = rcmgr.LimitVal64(want)
		}
	}
	p := rcmgr.PartialLimitConfig{System: def.System, Transient: def.Transient, PeerDefault: def.PeerDefault, Stream: def.Stream}
	raise(&p.System.Conns, conns)
	raise(&p.System.ConnsInbound, conns)
	raise(&p.System.ConnsOutbound, conns)
	raise(&p.System.FD, conns)
	raise(&p.System.Streams, 4*conns)
	raise(&p.System.StreamsInbound, 2*conns)
	raise(&p.System.StreamsOutbound, 2*conns)
	// Two hosts dialing each other at once hold two connections until the
	// duplicate is closed; leave room for a few.
	raise(&p.PeerDefault.Conns, 8)
	raise(&p.PeerDefault.ConnsInbound, 4)
	raise(&p.PeerDefault.ConnsOutbound, 4)

	// A connection's messages count in its stream, its peer (with the
	// muxer's windows, 16 MiB each at most), its protocol for that peer,
	// the service for that peer and the service: leave room for one
	// connection's worst case, and streams for every connection.
	mem := connMemory(cfg) + 2*maxMemStep
	raiseMem(&p.Stream.Memory, mem)
	raiseMem(&p.PeerDefault.Memory, mem+32<<20)
	proto, svc, svcPeer := def.ProtocolPeerDefault, def.ServiceDefault, def.ServicePeerDefault
	raiseMem(&proto.Memory, mem)
	raiseMem(&svcPeer.Memory, mem)
	raiseMem(&svc.Memory, mem)
	raise(&svc.Streams, 2*conns)
	raise(&svc.StreamsInbound, conns)
	raise(&svc.StreamsOutbound, conns)
	// The protocol's own stream limits (libp2p scales its default, about
	// 1,265 inbound streams on 24 GiB, with the memory) would refuse the
	// connections past them: a stream for every connection. The muxer
	// reserves each stream's receive window (yamux: 256 KiB) in the
	// system's memory: room for that too, beside libp2p's scaled default.
	pr := def.ProtocolDefault
	raise(&pr.Streams, 2*conns)
	raise(&pr.StreamsInbound, conns)
	raise(&pr.StreamsOutbound, conns)
	p.Protocol = map[protocol.ID]rcmgr.ResourceLimits{ProtocolFor(cfg.NetworkName): pr}
	raiseMem(&p.System.Memory, int64(def.System.Memory)+int64(conns)*streamWindowReserve)
	p.ProtocolPeer = map[protocol.ID]rcmgr.ResourceLimits{ProtocolFor(cfg.NetworkName): proto}
	p.Service = map[string]rcmgr.ResourceLimits{ServiceName: svc}
	p.ServicePeer = map[string]rcmgr.ResourceLimits{ServiceName: svcPeer}
	return p.Build(base)
}
