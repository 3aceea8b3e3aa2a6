package natlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// Roles are the lab's child processes, a relay and a node; a program or
// test binary that runs the lab passes them to testkit.ChildMain first.
var Roles = []testkit.Role{relayRole, nodeRole}

var (
	relayRole = testkit.Role{Name: "skipwire-natlab-relay", Run: runRelay}
	nodeRole  = testkit.Role{Name: "skipwire-natlab-node", Run: runNode}
)

// treatAsPublic makes this process count the lab's "internet" as public.
// go-libp2p keeps only public addresses where it matters here: a relay
// puts only public addresses in a reservation (so AutoRelay makes no
// /p2p-circuit address from private ones), and the hole-punching service
// starts only once the host has a public address. The lab's internet is in
// 172.16.0.0/12, which manet lists as private; the lab's processes (and
// only they: this changes a package variable of go-multiaddr for the whole
// process) drop that range from the list before building a host.
func treatAsPublic() {
	_, lab, err := net.ParseCIDR(internetPrefix)
	if err != nil {
		panic(err)
	}
	manet.Private4 = slices.DeleteFunc(slices.Clone(manet.Private4), func(n *net.IPNet) bool {
		return n.String() == lab.String()
	})
}

// relaySpec is what the parent passes to a relay.
type relaySpec struct {
	Listen []string
	Limit  *relayv2.RelayLimit // nil: relay v2's defaults
}

// runRelay is a relay (p2pconn.RelayHostOptions) listening on spec.Listen;
// it announces its peer ID and addresses, then relays until ctx ends.
func runRelay(ctx context.Context, args []string) error {
	var spec relaySpec
	if err := unmarshalArg(args, &spec); err != nil {
		return err
	}
	treatAsPublic()
	key, err := identity.GenerateKey()
	if err != nil {
		return err
	}
	res := relayv2.DefaultResources()
	if spec.Limit != nil {
		res.Limit = spec.Limit
	}
	// Every node behind a router reaches the relay from the router's one
	// address: lift libp2p's per-address limits (8 connections at a time,
	// 0.2 new ones per second after a burst of 16, 8 reservations).
	res.MaxReservationsPerIP = res.MaxReservations
	rc := p2pconn.RelayConfig{
		Resources: res,
		ResourceManager: []rcmgr.Option{
			rcmgr.WithLimitPerSubnet([]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: 1024}}, nil),
			rcmgr.WithConnRateLimiters(&rate.Limiter{}),
		},
	}
	h, err := libp2p.New(append(p2pconn.RelayHostOptions(labConfig(), rc),
		libp2p.Identity(key), libp2p.ListenAddrStrings(spec.Listen...))...)
	if err != nil {
		return err
	}
	if err := waitProtocol(ctx, h, proto.ProtoIDv2Hop, 15*time.Second); err != nil {
		return errors.Join(fmt.Errorf("relay service: %w", err), h.Close())
	}
	testkit.Ready(append([]string{h.ID().String()}, addrStrings(h.Addrs())...)...)
	<-ctx.Done()
	return h.Close()
}

// nodeSpec is what the parent passes to a node.
type nodeSpec struct {
	Listen []string
	Relay  peer.AddrInfo
	// Dial is the dialer's part; nil for the node that is dialed, which
	// echoes every message.
	Dial *dialSpec
	// ResumeWindow is the managers' p2pconn.Config.ResumeWindow.
	ResumeWindow time.Duration
}

// ResumeWindow is the nodes' p2pconn.Config.ResumeWindow in the Exchange
// scenarios.
const ResumeWindow = 30 * time.Second

// runNode is a skipwire node behind NAT (p2pconn.NATHostOptions with one
// static relay). The dialed node announces its Identifier and its
// /p2p-circuit addresses once it has them, then echoes until ctx ends; the
// dialer announces its Identifier, runs its part (dial) and exits.
func runNode(ctx context.Context, args []string) error {
	var spec nodeSpec
	if err := unmarshalArg(args, &spec); err != nil {
		return err
	}
	treatAsPublic()
	key, err := identity.GenerateKey()
	if err != nil {
		return err
	}
	tr := newPunchTracer()
	nat := p2pconn.NATConfig{
		StaticRelays: []peer.AddrInfo{spec.Relay},
		Reachability: network.ReachabilityPrivate,
		HolePunching: []holepunch.Option{holepunch.WithTracer(tr)},
	}
	cfg := labConfig()
	cfg.ResumeWindow = spec.ResumeWindow
	h, err := libp2p.New(append(p2pconn.NATHostOptions(cfg, nat),
		libp2p.Identity(key), libp2p.ListenAddrStrings(spec.Listen...))...)
	if err != nil {
		return err
	}
	table := resolver.NewStatic()
	m, err := p2pconn.NewManager(h, table, cfg)
	if err != nil {
		return errors.Join(err, h.Close())
	}
	closeAll := func(err error) error { return errors.Join(err, m.Close(), h.Close()) }

	// Hole punching starts once the host knows its public address (the
	// relay's observation): until then an inbound relayed connection would
	// not be punched, and a punch request would find no handler.
	if err := waitProtocol(ctx, h, holepunch.Protocol, 15*time.Second); err != nil {
		return closeAll(fmt.Errorf("hole punching: %w", err))
	}
	if spec.Dial == nil {
		circuits, err := waitCircuitAddrs(ctx, h, 15*time.Second)
		if err != nil {
			return closeAll(err)
		}
		serveCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			echoAll(serveCtx, m)
		}()
		testkit.Ready(m.ID().String(), strings.Join(addrStrings(circuits), ","))
		<-ctx.Done()
		cancel()
		<-done
		return closeAll(nil)
	}
	testkit.Ready(m.ID().String())
	res, err := dial(ctx, h, m, table, tr, *spec.Dial)
	if err == nil {
		err = writeResult(spec.Dial.Result, res)
	}
	return closeAll(err)
}

// labConfig is the managers' configuration in the lab.
func labConfig() p2pconn.Config {
	return p2pconn.Config{
		ConnectTimeout:    10 * time.Second,
		RetryAttempts:     2,
		RetryDelay:        200 * time.Millisecond,
		KeepaliveInterval: 5 * time.Second,
		KeepaliveTimeout:  5 * time.Second,
		CloseTimeout:      2 * time.Second,
	}
}

// echoAll echoes every message on every connection m accepts, until ctx ends.
func echoAll(ctx context.Context, m *p2pconn.Manager) {
	for {
		c, err := m.Accept(ctx)
		if err != nil {
			return
		}
		go func() {
			for {
				msg, err := c.Next(ctx)
				if err != nil || c.Send(ctx, msg) != nil {
					return
				}
			}
		}()
	}
}

// waitProtocol waits until h serves p.
func waitProtocol(ctx context.Context, h host.Host, p protocol.ID, d time.Duration) error {
	return poll(ctx, d, func() bool { return slices.Contains(h.Mux().Protocols(), p) },
		func() error { return fmt.Errorf("%s not served after %s", p, d) })
}

// waitCircuitAddrs waits until h has /p2p-circuit addresses (AutoRelay's
// reservation) and returns them.
func waitCircuitAddrs(ctx context.Context, h host.Host, d time.Duration) ([]ma.Multiaddr, error) {
	var circuits []ma.Multiaddr
	err := poll(ctx, d, func() bool {
		circuits = slices.DeleteFunc(h.Addrs(), func(a ma.Multiaddr) bool { return !isCircuit(a) })
		return len(circuits) > 0
	}, func() error { return fmt.Errorf("no /p2p-circuit address after %s: %v", d, h.Addrs()) })
	return circuits, err
}

// poll calls ok every 10 ms until it is true, d passes (the error of
// failed) or ctx ends.
func poll(ctx context.Context, d time.Duration, ok func() bool, failed func() error) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return failed()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

func addrStrings(addrs []ma.Multiaddr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// unmarshalArg decodes the one JSON argument of a role into v.
func unmarshalArg(args []string, v any) error {
	if len(args) != 1 {
		return fmt.Errorf("want 1 argument (JSON), got %d", len(args))
	}
	return json.Unmarshal([]byte(args[0]), v)
}
