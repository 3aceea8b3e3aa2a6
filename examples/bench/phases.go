package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/resolver"
)

// bench runs the measurements between nodes a and b (na and nb for the
// contender without acknowledgements) and collects them in r.
type bench struct {
	o      options
	r      *report
	nc     benchkit.NodeConfig // of every node but na and nb
	a, b   *benchkit.Node
	na, nb *benchkit.Node // Managers without acknowledgements and resumption
	stderr io.Writer
}

// progress reports on stderr with -v.
func (bn *bench) progress(format string, a ...any) {
	if bn.o.verbose {
		fmt.Fprintf(bn.stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
	}
}

// nodes returns the nodes c runs between: c opens from the first to the
// second.
func (bn *bench) nodes(c contender) (from, to *benchkit.Node) {
	if c.noAcks {
		return bn.na, bn.nb
	}
	return bn.a, bn.b
}

// startNetworks starts the network contender on the Managers of a and b:
// a sends to b.
func (bn *bench) startNetworks(ctx context.Context) (*benchkit.Nets, error) {
	return benchkit.StartNetworks(ctx, bn.b, []*benchkit.Node{bn.a}, network.Config{})
}

// scenario is one throughput figure.
type scenario struct {
	key        string // prefix of the figures' keys
	size       int
	senders    int
	count      int
	contenders []contender
}

// throughput takes -rounds samples of each scenario and contender, each on a
// fresh connection, the contenders alternating.
func (bn *bench) throughput(ctx context.Context) error {
	scenarios := []scenario{
		{key: "small_1sender", size: 128, senders: 1, count: bn.o.small,
			contenders: []contender{skipwire, rawLibp2p, combining, plainTCP}},
		{key: "small_8senders", size: 128, senders: 8, count: bn.o.small,
			contenders: []contender{skipwire, noAcks, networkLayer, rawLibp2p, combining, plainTCP}},
		{key: "throughput_64k", size: 64 << 10, senders: 1, count: max(1, bn.o.volume/(64<<10)),
			contenders: []contender{skipwire, noAcks, rawLibp2p, plainTCP}},
	}
	// A first pass with a tenth of the messages, not recorded, takes the
	// costs of a process that just started (heap growth, first connections)
	// off the first round.
	for _, sc := range scenarios {
		warm := sc
		warm.count = max(1, sc.count/10)
		for _, c := range sc.contenders {
			if _, err := bn.throughputSample(ctx, c, warm); err != nil {
				return fmt.Errorf("%s throughput %s, warm-up: %w", c.key, sc.key, err)
			}
		}
	}
	bn.progress("throughput warm-up done")
	for round := range bn.o.rounds {
		for _, sc := range scenarios {
			for _, c := range rotate(sc.contenders, round) {
				res, err := bn.throughputSample(ctx, c, sc)
				if err != nil {
					return fmt.Errorf("%s throughput %s: %w", c.key, sc.key, err)
				}
				bn.r.addThroughput(c.key, sc, res)
				bn.progress("round %d %-16s %-14s %8.1f MB/s %5.2f writes/msg", round, c.key, sc.key,
					float64(sc.count*sc.size)/res.Elapsed.Seconds()/1e6, res.Syscalls.Writes)
			}
		}
	}
	return nil
}

// throughputSample opens a fresh connection for c, warms it up with 5% of
// the messages, and times sc.count messages.
func (bn *bench) throughputSample(ctx context.Context, c contender, sc scenario) (benchkit.ThroughputResult, error) {
	warm := max(sc.senders, sc.count/20)
	if c.open == nil {
		n, err := bn.startNetworks(ctx)
		if err != nil {
			return benchkit.ThroughputResult{}, err
		}
		res, err := n.OneWay(sc.size, sc.senders, warm, sc.count)
		return res, errors.Join(err, n.Close())
	}
	from, to := bn.nodes(c)
	l, _, err := c.open(ctx, from, to)
	if err != nil {
		return benchkit.ThroughputResult{}, err
	}
	if _, err := benchkit.Throughput(l, sc.size, sc.senders, warm, nil); err != nil {
		return benchkit.ThroughputResult{}, fmt.Errorf("warm-up: %w", err)
	}
	res, err := benchkit.Throughput(l, sc.size, sc.senders, sc.count, nil)
	if err != nil {
		return benchkit.ThroughputResult{}, err
	}
	return res, l.Close()
}

// roundTrips makes -rtts round trips per round and contender, a fresh
// connection each.
func (bn *bench) roundTrips(ctx context.Context) error {
	warm := min(200, bn.o.rtts/5)
	for round := range bn.o.rounds {
		for _, c := range rotate([]contender{skipwire, noAcks, networkLayer, rawLibp2p, combining, plainTCP}, round) {
			var res benchkit.RoundTripResult
			if c.open == nil {
				n, err := bn.startNetworks(ctx)
				if err != nil {
					return err
				}
				res, err = n.Requests(128, warm, bn.o.rtts)
				if err = errors.Join(err, n.Close()); err != nil {
					return fmt.Errorf("%s round trips: %w", c.key, err)
				}
			} else {
				from, to := bn.nodes(c)
				l, _, err := c.open(ctx, from, to)
				if err != nil {
					return err
				}
				if res, err = benchkit.RoundTrips(l, 128, warm, bn.o.rtts, nil); err != nil {
					return fmt.Errorf("%s round trips: %w", c.key, err)
				}
			}
			bn.r.addRTTs(c.key, res.RTTs)
			bn.progress("round %d %-16s rtt p50 %v", round, c.key, testkit.Percentile(res.RTTs, 50))
		}
	}
	return nil
}

// coldConnects opens and closes -connects links per contender and round,
// the contenders alternating; a first pass is a warm-up.
func (bn *bench) coldConnects(ctx context.Context) error {
	cs := []contender{skipwire, rawLibp2p, plainTCP}
	open := func(c contender) (time.Duration, error) {
		l, took, err := c.open(ctx, bn.a, bn.b)
		if err != nil {
			return 0, fmt.Errorf("cold connect: %w", err)
		}
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("%s close: %w", c.key, err)
		}
		return took, nil
	}
	for _, c := range cs {
		if _, err := open(c); err != nil {
			return err
		}
	}
	for round := range bn.o.rounds {
		took := map[string][]time.Duration{}
		for i := range bn.o.connects {
			for _, c := range rotate(cs, round+i) {
				d, err := open(c)
				if err != nil {
					return err
				}
				took[c.key] = append(took[c.key], d)
			}
		}
		for _, c := range cs {
			bn.r.addConnects(c.key, took[c.key])
		}
	}
	bn.progress("cold connects done")
	return nil
}

// cachedConnect times Connect on a live skipwire connection, and notes
// which secure channel and muxer the hosts negotiated.
func (bn *bench) cachedConnect(ctx context.Context) error {
	l, _, err := skipwire.open(ctx, bn.a, bn.b)
	if err != nil {
		return err
	}
	if conns := bn.a.Host.Network().ConnsToPeer(bn.b.Host.ID()); len(conns) > 0 {
		st := conns[0].ConnState()
		bn.r.Env.Negotiated = string(st.Security) + " " + string(st.StreamMultiplexer)
	}
	iters := 2_000_000
	if bn.o.quick {
		iters = 200_000
	}
	bn.r.CachedNs, bn.r.CachedAllocs, err = cachedConnect(ctx, bn.a.Manager, bn.b, iters)
	if err = errors.Join(err, l.Close()); err != nil {
		return fmt.Errorf("cached connect: %w", err)
	}
	bn.progress("cached connect %.1f ns", bn.r.CachedNs)
	return nil
}

// fanInPeers is how many nodes send to one in the fan-in figure.
const fanInPeers = 32

// fanIn starts one node and fanInPeers others, each with a Network, and
// has every peer send -small/4 messages in all per round (128 B, one sender
// each) to the one node, on fresh connections each round.
func (bn *bench) fanIn(ctx context.Context) (err error) {
	nc := bn.nc
	nc.TCP = false
	nodes, err := benchkit.NewNodes(fanInPeers+1, nc, resolver.NewStatic())
	if err != nil {
		return fmt.Errorf("fan-in: %w", err)
	}
	defer func() { err = errors.Join(err, benchkit.CloseNodes(nodes)) }()
	n, err := benchkit.StartNetworks(ctx, nodes[0], nodes[1:], network.Config{})
	if err != nil {
		return fmt.Errorf("fan-in: %w", err)
	}
	defer func() { err = errors.Join(err, n.Close()) }()
	per := max(1, bn.o.small/4/fanInPeers)
	bn.r.FanIn.Peers, bn.r.FanIn.PerPeer = fanInPeers, per
	for round := range bn.o.rounds {
		res, err := n.FanIn(128, max(1, per/20), per)
		if err != nil {
			return fmt.Errorf("fan-in round %d: %w", round, err)
		}
		bn.r.addFanIn(res)
		bn.progress("round %d fan-in %8.0f msgs/s, delay p99 %v", round,
			float64(res.Messages)/res.Elapsed.Seconds(), testkit.Percentile(res.Delays, 99))
		if err := n.Disconnect(); err != nil {
			return fmt.Errorf("fan-in round %d: %w", round, err)
		}
	}
	return nil
}

// idleMemory opens -conns connections from one node to as many others, for
// each kind of connection in turn, a few rounds, after a warm-up.
func (bn *bench) idleMemory(ctx context.Context) (err error) {
	nodes, err := benchkit.NewNodes(bn.o.conns+1, bn.nc, resolver.NewStatic())
	if err != nil {
		return fmt.Errorf("idle memory: %w", err)
	}
	defer func() { err = errors.Join(err, benchkit.CloseNodes(nodes)) }()
	idle := func(v idleVariant, wait time.Duration) benchkit.Idle {
		return benchkit.Idle{
			Center: nodes[0], Peers: nodes[1:], Open: v.c.open, Readers: v.readers,
			Workers: 8, Settle: 3 * time.Second, Wait: wait,
		}
	}
	bn.progress("idle memory: %d nodes up", len(nodes))

	variants := []idleVariant{
		{key: "skipwire", c: skipwire},
		{key: "libp2p", c: rawLibp2p, readers: true},
		{key: "libp2p_bare", c: rawLibp2p},
		{key: "tcp", c: plainTCP, readers: true},
	}
	// -quick measures the two kinds the target compares, so that it has the
	// time for two rounds and a spread.
	measured, wait := variants, 6*time.Second
	if bn.o.quick {
		measured, wait = variants[:2], 5*time.Second
	}
	// Warm-up: hold -conns connections of each libp2p kind once, so that what
	// the first round fills and keeps (peerstores, identify's caches, maps
	// grown to -conns entries) is charged to neither. The second pass waits
	// for the first one's garbage to go and sets the first measurement's
	// target.
	var target uint64 // the heap to wait for before each measurement
	for i, v := range []idleVariant{variants[2], variants[0]} {
		if _, target, err = idle(v, time.Duration(i)*wait).Measure(ctx, 0); err != nil {
			return fmt.Errorf("idle memory warm-up: %w", err)
		}
	}
	for round := range bn.o.idleRounds {
		for _, v := range rotate(measured, round) {
			var res benchkit.IdleResult
			if res, target, err = idle(v, wait).Measure(ctx, target); err != nil {
				return fmt.Errorf("idle memory %s: %w", v.key, err)
			}
			bn.r.addIdle(v.key, res)
			bn.progress("idle %-12s %8.0f B/conn %.2f goroutines/conn", v.key, res.Bytes, res.Goroutines)
		}
	}
	return nil
}
