package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/resolver"
)

// bench runs the measurements between nodes a and b and collects them in r.
type bench struct {
	o      options
	r      *report
	nc     benchkit.NodeConfig // of every node
	a, b   *benchkit.Node
	stderr io.Writer
}

// progress reports on stderr with -v.
func (bn *bench) progress(format string, a ...any) {
	if bn.o.verbose {
		fmt.Fprintf(bn.stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
	}
}

// scenario is one throughput figure.
type scenario struct {
	key     string
	size    int
	senders int
	count   int
}

// throughput takes -rounds samples of each scenario and contender, each on a
// fresh link, the contenders alternating.
func (bn *bench) throughput(ctx context.Context) error {
	scenarios := []scenario{
		{key: "small1", size: 128, senders: 1, count: bn.o.small},
		{key: "small8", size: 128, senders: 8, count: bn.o.small},
		{key: "big", size: 64 << 10, senders: 1, count: max(1, bn.o.volume/(64<<10))},
	}
	for round := range bn.o.rounds {
		for _, sc := range scenarios {
			for _, c := range rotate(contenders, round) {
				res, err := throughputSample(ctx, c, bn.a, bn.b, sc)
				if err != nil {
					return fmt.Errorf("%s throughput %s: %w", c.key, sc.key, err)
				}
				bn.r.addThroughput(c.key, sc, res)
				bn.progress("round %d %-8s %-6s %8.1f MB/s %5.2f writes/msg", round, c.key, sc.key,
					float64(sc.count*sc.size)/res.Elapsed.Seconds()/1e6, res.Syscalls.Writes)
			}
		}
	}
	return nil
}

func throughputSample(ctx context.Context, c contender, a, b *benchkit.Node, sc scenario) (benchkit.ThroughputResult, error) {
	l, _, err := c.open(ctx, a, b)
	if err != nil {
		return benchkit.ThroughputResult{}, err
	}
	warm := max(sc.senders, sc.count/20)
	if _, err := benchkit.Throughput(l, sc.size, sc.senders, warm, nil); err != nil {
		return benchkit.ThroughputResult{}, fmt.Errorf("warm-up: %w", err)
	}
	res, err := benchkit.Throughput(l, sc.size, sc.senders, sc.count, nil)
	if err != nil {
		return benchkit.ThroughputResult{}, err
	}
	return res, l.Close()
}

// roundTrips makes -rtts round trips per round and contender, a fresh link each.
func (bn *bench) roundTrips(ctx context.Context) error {
	for round := range bn.o.rounds {
		for _, c := range rotate(contenders, round) {
			l, _, err := c.open(ctx, bn.a, bn.b)
			if err != nil {
				return err
			}
			res, err := benchkit.RoundTrips(l, 128, min(200, bn.o.rtts/5), bn.o.rtts, nil)
			if err != nil {
				return fmt.Errorf("%s round trips: %w", c.key, err)
			}
			bn.r.addRTTs(c.key, res.RTTs)
			bn.progress("round %d %-8s rtt p50 %v", round, c.key, testkit.Percentile(res.RTTs, 50))
		}
	}
	return nil
}

// coldConnects opens and closes -connects links per contender; the first of
// each is a warm-up.
func (bn *bench) coldConnects(ctx context.Context) error {
	for i := range bn.o.connects + 1 {
		for _, c := range rotate(contenders, i) {
			l, took, err := c.open(ctx, bn.a, bn.b)
			if err != nil {
				return fmt.Errorf("cold connect: %w", err)
			}
			if i > 0 {
				bn.r.addConnect(c.key, took)
			}
			if err := l.Close(); err != nil {
				return fmt.Errorf("%s close: %w", c.key, err)
			}
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
	rounds, wait := 3, 6*time.Second
	if bn.o.quick {
		rounds, wait = 1, 5*time.Second
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
	for round := range rounds {
		for _, v := range rotate(variants, round) {
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
