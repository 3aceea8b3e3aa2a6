package natlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/internal/testkit"
)

// Kind is what a scenario does with the relayed skipwire connection.
type Kind int

const (
	// Exchange sends numbered messages while hole punching runs, and
	// measures round trips.
	Exchange Kind = iota
	// DataLimit sends as fast as it can, past the relay's data limit.
	DataLimit
	// DurationLimit sends a message now and then, past the relay's time
	// limit.
	DurationLimit
)

// ShortRelayDuration is the time limit of the lab's second relay (relay
// v2's default is 2 minutes).
const ShortRelayDuration = 3 * time.Second

// Scenario is one run of two fresh nodes: node B behind router B takes a
// slot on the relay, node A behind router A connects to it by Identifier
// through the relay and does what Kind says.
type Scenario struct {
	Name string
	NAT  NAT
	// TCPOnly makes the nodes listen on TCP only and reach the relay over
	// TCP, so that hole punching tries TCP (it tries the transport of the
	// node's connection to its relay, QUIC when both are offered).
	TCPOnly bool
	Kind    Kind
	// ShortRelay runs the scenario through the lab's second relay, whose
	// relayed connections end after ShortRelayDuration, instead of the
	// relay with relay v2's default limits (2 minutes, 128 KiB).
	ShortRelay bool
	// WantDirect is the transport hole punching should open ("tcp",
	// "quic-v1"), or "" if it should fail (Exchange only).
	WantDirect string

	Messages  int           // Exchange: at least this many numbered messages
	Payload   int           // bytes per message (at least 8)
	Interval  time.Duration // between messages (Exchange, DurationLimit)
	MaxStream time.Duration // longest time the dialer sends
	Bulk      int64         // DataLimit: bytes to send
}

// Scenarios are the lab's standard runs: hole punching over QUIC and over
// TCP through cone NATs, no hole punching through symmetric NATs, and a
// relayed connection at each of the relay's limits (the time limit on the
// short relay; DefaultDurationLimit is the same at relay v2's 2 minutes).
//
// The Exchange runs send at most 1000 messages of 32 bytes (10 s at one per
// 10 ms), about 70 KiB relayed in each direction with framing and
// encryption: well within relay v2's default data limit, 128 KiB.
func Scenarios() []Scenario {
	const d, most = 10 * time.Millisecond, 10 * time.Second
	return []Scenario{
		{Name: "cone-quic", NAT: Cone, WantDirect: "quic-v1", Messages: 200, Payload: 32, Interval: d, MaxStream: most},
		{Name: "cone-tcp", NAT: Cone, TCPOnly: true, WantDirect: "tcp", Messages: 200, Payload: 32, Interval: d, MaxStream: most},
		{Name: "symmetric", NAT: Symmetric, Messages: 200, Payload: 32, Interval: d, MaxStream: most},
		{Name: "relay-data-limit", NAT: Symmetric, Kind: DataLimit, Payload: 1024, Bulk: 1 << 20, MaxStream: 20 * time.Second},
		{Name: "relay-duration-limit", NAT: Symmetric, Kind: DurationLimit, ShortRelay: true, Payload: 32, Interval: 100 * time.Millisecond, MaxStream: 4 * ShortRelayDuration},
	}
}

// DefaultDurationLimit drives a relayed connection into relay v2's default
// time limit, 2 minutes: a long run, left out of Scenarios.
func DefaultDurationLimit() Scenario {
	return Scenario{Name: "relay-default-duration-limit", NAT: Symmetric, Kind: DurationLimit, Payload: 32, Interval: time.Second, MaxStream: 150 * time.Second}
}

// relay is a running relay of the lab.
type relay struct {
	child *testkit.Child
	info  peer.AddrInfo
}

// Start starts the lab's relays; Run starts them if need be. Close stops
// them.
func (lab *Lab) Start() (err error) {
	if lab.relays != nil {
		return nil
	}
	lab.relays = make(map[string]*relay)
	defer func() {
		if err != nil {
			err = errors.Join(err, lab.stopRelays())
		}
	}()
	for _, r := range []struct {
		name, ip string
		limit    *relayv2.RelayLimit
	}{
		{"relay", relayIP, nil},
		{"relay2", relay2IP, &relayv2.RelayLimit{Duration: ShortRelayDuration, Data: relayv2.DefaultLimit().Data}},
	} {
		spec := relaySpec{
			Listen: []string{fmt.Sprintf("/ip4/%s/tcp/4001", r.ip), fmt.Sprintf("/ip4/%s/udp/4001/quic-v1", r.ip)},
			Limit:  r.limit,
		}
		c, err := launch(relayRole, spec, lab.wrap(r.name))
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		lab.relays[r.name] = &relay{child: c}
		if lab.relays[r.name].info, err = parseRelay(c.Ready); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	return nil
}

// Run runs sc with two fresh nodes and returns what the dialer measured.
// It fails if a node fails; whether the figures pass is Result.Problems'
// business.
func (lab *Lab) Run(ctx context.Context, sc Scenario) (*Result, error) {
	if err := lab.Start(); err != nil {
		return nil, err
	}
	if lab.nat != sc.NAT {
		if err := lab.SetNAT(sc.NAT); err != nil {
			return nil, err
		}
	}
	r := lab.relays["relay"]
	if sc.ShortRelay {
		r = lab.relays["relay2"]
	}
	rinfo := r.info
	listen := func(ip string) []string {
		return []string{fmt.Sprintf("/ip4/%s/tcp/0", ip), fmt.Sprintf("/ip4/%s/udp/0/quic-v1", ip)}
	}
	if sc.TCPOnly {
		listen = func(ip string) []string { return []string{fmt.Sprintf("/ip4/%s/tcp/0", ip)} }
		rinfo.Addrs = nil
		for _, a := range r.info.Addrs {
			if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
				rinfo.Addrs = append(rinfo.Addrs, a)
			}
		}
	}

	// Exchanges run with session resumption, so that the skipwire
	// connection moves to the direct libp2p connection hole punching
	// opens; the limit scenarios show what the relay's limits do to a
	// connection that cannot move.
	resume := time.Duration(-1) // none: the limits end the connection
	if sc.Kind == Exchange {
		resume = ResumeWindow
	}
	b, err := launch(nodeRole, nodeSpec{Listen: listen(nodeBIP), Relay: rinfo, ResumeWindow: resume}, lab.wrap("b"))
	if err != nil {
		return nil, fmt.Errorf("node B: %w", err)
	}
	defer b.Stop(10 * time.Second)
	if len(b.Ready) != 2 {
		return nil, fmt.Errorf("node B: READY %v", b.Ready)
	}
	dir, err := os.MkdirTemp("", "skipwire-natlab-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ds := &dialSpec{
		Kind: sc.Kind, Peer: b.Ready[0], Addrs: strings.Split(b.Ready[1], ","),
		Messages: sc.Messages, Payload: sc.Payload, Interval: sc.Interval, MaxStream: sc.MaxStream, Bulk: sc.Bulk,
		Result: filepath.Join(dir, "result.json"),
	}
	a, err := launch(nodeRole, nodeSpec{Listen: listen(nodeAIP), Relay: rinfo, Dial: ds, ResumeWindow: resume}, lab.wrap("a"))
	if err != nil {
		return nil, fmt.Errorf("node A: %w", err)
	}
	select {
	case <-a.Exited():
	case <-ctx.Done():
		_ = a.Kill()
		return nil, fmt.Errorf("node A: %w", ctx.Err())
	}
	if err := a.Stop(10 * time.Second); err != nil { // it has exited: its exit status
		return nil, fmt.Errorf("node A: %w", err)
	}
	res, err := readResult(ds.Result)
	if err != nil {
		return nil, err
	}
	res.Scenario, res.NAT = sc.Name, sc.NAT.String()
	if err := b.Stop(10 * time.Second); err != nil {
		return res, fmt.Errorf("node B: %w", err)
	}
	return res, nil
}

// launch starts a child of the lab with its JSON argument, in the
// namespace wrap runs it in.
func launch(role testkit.Role, arg any, wrap []string) (*testkit.Child, error) {
	js, err := json.Marshal(arg)
	if err != nil {
		return nil, err
	}
	return testkit.Launch(role, testkit.ChildOptions{Args: []string{string(js)}, Wrap: wrap, StartTimeout: 30 * time.Second})
}

// parseRelay reads a relay's READY fields: its peer ID, then its addresses.
func parseRelay(fields []string) (peer.AddrInfo, error) {
	if len(fields) < 2 {
		return peer.AddrInfo{}, fmt.Errorf("READY %v: want a peer ID and addresses", fields)
	}
	id, err := peer.Decode(fields[0])
	if err != nil {
		return peer.AddrInfo{}, err
	}
	info := peer.AddrInfo{ID: id}
	for _, f := range fields[1:] {
		a, err := ma.NewMultiaddr(f)
		if err != nil {
			return peer.AddrInfo{}, err
		}
		info.Addrs = append(info.Addrs, a)
	}
	return info, nil
}

// stopRelays stops the lab's relays.
func (lab *Lab) stopRelays() error {
	var errs []error
	for name, r := range lab.relays {
		if err := r.child.Stop(10 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	lab.relays = nil
	return errors.Join(errs...)
}
