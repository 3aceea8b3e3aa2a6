// Command cluster is skipwire's connection demo: it starts a local overlay of skipwire
// nodes on 127.0.0.1 with a Kademlia DHT, has every node reach every other by
// Identifier, exchanges messages over every pair, crashes and restarts one
// node, and prints a report. It exits 0 when every invariant held: no
// message lost, one libp2p connection per peer pair, one skipwire connection
// per peer, the crash detected and the node reconnected.
//
//	go run ./examples/cluster          # 8 nodes (make demo-cluster)
//	go run ./examples/cluster -n 20 -m 50
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// The first Ctrl-C stops the demo cleanly; a second one kills it.
func main() { cli.Main(run) }

const usage = `Usage: cluster [flags]

Starts a local overlay of skipwire nodes on 127.0.0.1 with a Kademlia DHT,
connects every pair by Identifier, exchanges request/echo messages over every
pair, kills one node and restarts it on the same key and port, and prints a
report. Exits 0 if no message was lost and every peer pair shares exactly one
connection, 1 otherwise.
`

// options are the demo's flags.
type options struct {
	nodes   int
	msgs    int
	size    int
	kill    int
	par     int
	timeout time.Duration
}

// run is the program; main passes it the process's arguments and streams.
func run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("cluster", stderr, usage)
	var o options
	fs.IntVar(&o.nodes, "n", 8, "number of nodes (at least 2)")
	fs.IntVar(&o.msgs, "m", 20, "request/echo round trips per ordered pair of nodes, in each exchange")
	fs.IntVar(&o.size, "s", 128, fmt.Sprintf("message size in bytes (at least %d)", headerSize))
	fs.IntVar(&o.kill, "kill", -1, "index of the node to kill and restart (default: the middle node, n/2)")
	fs.IntVar(&o.par, "p", 8, "how many lookups, pairs connecting or exchanges run at once")
	fs.DurationVar(&o.timeout, "timeout", 50*time.Second, "give up after this long")
	logLevel := fs.String("log", "", "go-log level of libp2p and skipwire logs: debug, info, warn or error (default: error, or $GOLOG_LOG_LEVEL)")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	if o.kill == -1 {
		o.kill = o.nodes / 2
	}
	var bad error
	switch {
	case fs.NArg() > 0:
		bad = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.nodes < 2:
		bad = fmt.Errorf("-n %d: need at least 2 nodes", o.nodes)
	case o.msgs < 1:
		bad = fmt.Errorf("-m %d: need at least 1 message", o.msgs)
	case o.size < headerSize || o.size > p2pconn.DefaultMaxMessageSize:
		bad = fmt.Errorf("-s %d: size must be between %d and %d", o.size, headerSize, p2pconn.DefaultMaxMessageSize)
	case o.kill < 0 || o.kill >= o.nodes:
		bad = fmt.Errorf("-kill %d: no such node (nodes are 0 to %d)", o.kill, o.nodes-1)
	case o.par < 1:
		bad = fmt.Errorf("-p %d: need at least 1", o.par)
	case o.timeout <= 0:
		bad = fmt.Errorf("-timeout %s: must be positive", o.timeout)
	default:
		bad = cli.SetLogLevel(*logLevel)
	}
	if bad != nil {
		fmt.Fprintf(stderr, "cluster: %v\n", bad)
		return cli.ExitUsage
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	d := &demo{o: o, out: stdout}
	err := d.run(ctx)
	if err != nil {
		fmt.Fprintf(stdout, "\n")
		fmt.Fprintf(stderr, "cluster: %s\n", cli.OneLine(err))
		return cli.ExitFail
	}
	if len(d.failures) > 0 {
		return cli.ExitFail
	}
	return cli.ExitOK
}

// nodeConfig is the configuration of every node: quick retries, since a
// restarted peer is back within milliseconds, and no session resumption, so
// that a crash ends the connections to the node at once, which the demo
// measures (with resumption, EventResuming says so as fast, and the
// connection lives on for ResumeWindow; examples/skipgraph runs with it).
func nodeConfig() p2pconn.Config {
	return p2pconn.Config{
		ConnectTimeout: 5 * time.Second,
		RetryAttempts:  3,
		RetryDelay:     100 * time.Millisecond,
		CloseTimeout:   2 * time.Second,
		ResumeWindow:   -1,
	}
}

// demo is one run of the demo.
type demo struct {
	o   options
	out io.Writer

	c    *cluster.Cluster
	svcs []*service
	cnt  counters
	seq  atomic.Uint64

	lookups      latencies // lookups of peers we were not connected to
	lookupsLocal int       // lookups answered at once: the DHT had connected the peer already
	connects     latencies
	reconnects   latencies
	detect       latencies
	lostErrs     int // peers whose connection ended with ErrConnectionLost
	restart      time.Duration

	failures []string
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

// fail records a broken invariant; the run goes on so that the report is complete.
func (d *demo) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.failures = append(d.failures, msg)
	d.printf("      FAIL: %s\n", msg)
}

func (d *demo) run(ctx context.Context) error {
	began := time.Now()
	n := d.o.nodes
	d.printf("skipwire cluster demo: %d nodes on 127.0.0.1, Kademlia DHT, node %d will crash and restart\n\n", n, d.o.kill)
	if err := d.start(ctx); err != nil {
		return err
	}
	defer d.close()

	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"lookups", d.lookupAll},
		{"connect", d.connectAll},
		{"exchange", d.exchangeAll},
		{"crash", d.crashAndRestart},
		{"check", d.check},
	}
	for _, s := range steps {
		if err := s.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	d.report(time.Since(began))
	return nil
}

func (d *demo) close() {
	for _, s := range d.svcs {
		s.close()
	}
	if err := d.c.Close(); err != nil {
		d.printf("closing the cluster: %s\n", cli.OneLine(err))
	}
}

// pairs returns every ordered pair (i, j) of distinct indexes in idx.
func pairs(idx []int) [][2]int {
	var ps [][2]int
	for _, i := range idx {
		for _, j := range idx {
			if i != j {
				ps = append(ps, [2]int{i, j})
			}
		}
	}
	return ps
}

// parallel runs f on every pair, at most limit at a time, and returns the
// errors joined.
func parallel(ps [][2]int, limit int, f func(i, j int) error) error {
	errs := make([]error, len(ps))
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for k, p := range ps {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(p[0], p[1]); err != nil {
				errs[k] = fmt.Errorf("node %d to node %d: %w", p[0], p[1], err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// both runs f(i, j) and f(j, i) at the same instant and returns their errors
// joined.
func both(i, j int, f func(i, j int) error) error {
	var wg sync.WaitGroup
	var e1, e2 error
	wg.Go(func() { e1 = f(i, j) })
	wg.Go(func() { e2 = f(j, i) })
	wg.Wait()
	return errors.Join(e1, e2)
}

// unordered returns every pair {i, j} of distinct indexes in idx once, i < j.
func unordered(idx []int) [][2]int {
	var ps [][2]int
	for a, i := range idx {
		for _, j := range idx[a+1:] {
			ps = append(ps, [2]int{i, j})
		}
	}
	return ps
}

func all(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

func (d *demo) start(ctx context.Context) error {
	n := d.o.nodes
	d.printf("[1/6] starting %d nodes, each joining the DHT through node 0 ... ", n)
	t0 := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Size: n, Config: nodeConfig()})
	if err != nil {
		return err
	}
	d.c = c
	d.svcs = make([]*service, n)
	for i := range n {
		d.svcs[i] = newService(c.Manager(i), &d.cnt)
	}
	d.printf("%s\n", secs(time.Since(t0)))
	const shown = 10
	for i := range min(n, shown) {
		nd := c.Node(i)
		d.printf("      node %-2d %s  %s\n", i, nd.ID.Short(), nd.Multiaddrs()[0])
	}
	if n > shown {
		d.printf("      ... and %d more\n", n-shown)
	}
	return nil
}

// lookupAll has every node resolve every other node's Identifier through the
// DHT, and times each lookup.
func (d *demo) lookupAll(ctx context.Context) error {
	ps := pairs(all(d.o.nodes))
	d.printf("[2/6] DHT lookups: every node resolves every other Identifier (%d lookups) ... ", len(ps))
	t0 := time.Now()
	var mu sync.Mutex
	err := parallel(ps, d.o.par, func(i, j int) error {
		h := d.c.Host(i)
		// kad-dht answers without addresses for a peer connected to us but
		// not yet identified; the connection's address then stands in.
		r := resolver.NewChain(resolver.NewDHT(d.c.DHT(i)), cluster.ConnResolver(h))
		target := d.c.Node(j)
		remote := h.Network().Connectedness(target.PeerID()) != network.Connected
		start := time.Now()
		info, err := r.Resolve(ctx, target.ID)
		took := time.Since(start)
		if err != nil {
			return err
		}
		if info.ID != target.PeerID() {
			return fmt.Errorf("lookup answered for %s", info.ID)
		}
		mu.Lock()
		if remote {
			d.lookups = append(d.lookups, took)
		} else {
			d.lookupsLocal++
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	d.printf("%s, all found\n", secs(time.Since(t0)))
	return nil
}

// connectAll has every node Connect to every other by Identifier, both
// sides of each pair at the same instant, and waits until the hosts settle on
// one libp2p connection per pair.
func (d *demo) connectAll(ctx context.Context) error {
	ps := unordered(all(d.o.nodes))
	d.printf("[3/6] connecting every pair by Identifier, both sides at once (%d pairs, %d Connect calls) ... ", len(ps), 2*len(ps))
	t0 := time.Now()
	var mu sync.Mutex
	err := parallel(ps, d.o.par, func(i, j int) error {
		return both(i, j, func(i, j int) error {
			start := time.Now()
			if _, err := d.svcs[i].connect(ctx, d.c.ID(j)); err != nil {
				return fmt.Errorf("node %d to node %d: %w", i, j, err)
			}
			mu.Lock()
			d.connects = append(d.connects, time.Since(start))
			mu.Unlock()
			return nil
		})
	})
	if err != nil {
		return err
	}
	d.printf("%s\n", secs(time.Since(t0)))
	d.waitSettled(ctx)
	return nil
}

// waitSettled waits until every running pair shares one libp2p connection and
// every manager holds one connection per peer, and reports it.
func (d *demo) waitSettled(ctx context.Context) {
	run := d.c.RunningNodes()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cluster.WaitFor(sctx, d.c.Settled); err != nil {
		d.fail("connections did not settle to one per peer pair within 10 s")
		return
	}
	d.printf("      settled: %d pairs, 1 libp2p connection each; %d skipwire connections per node\n",
		len(run)*(len(run)-1)/2, len(run)-1)
}

// exchange runs o.msgs request/echo round trips over every pair in ps.
func (d *demo) exchange(ctx context.Context, ps [][2]int) error {
	before := d.cnt.sent.Load()
	t0 := time.Now()
	err := parallel(ps, d.o.par, func(i, j int) error {
		return d.svcs[i].ping(ctx, d.c.ID(j), d.o.msgs, d.o.size, &d.seq)
	})
	if err != nil {
		return err
	}
	d.printf("%d messages in %s\n", d.cnt.sent.Load()-before, secs(time.Since(t0)))
	return nil
}

func (d *demo) exchangeAll(ctx context.Context) error {
	ps := pairs(all(d.o.nodes))
	d.printf("[4/6] request/echo over every pair: %d directions x %d messages of %d B ... ", len(ps), d.o.msgs, d.o.size)
	return d.exchange(ctx, ps)
}

// crashAndRestart kills node k without a skipwire goodbye, checks that every
// peer notices, restarts it on the same key and port, reconnects and
// exchanges messages with it again.
func (d *demo) crashAndRestart(ctx context.Context) error {
	peers, err := d.crash(ctx)
	if err != nil {
		return err
	}
	if err := d.restartKilled(ctx); err != nil {
		return err
	}
	return d.reconnect(ctx, peers)
}

// crash kills node k and checks that each of its peers sees its connection
// end, as lost, and stops counting it. It returns the peers.
func (d *demo) crash(ctx context.Context) ([]int, error) {
	k, n := d.o.kill, d.o.nodes
	id := d.c.ID(k)
	d.printf("[5/6] killing node %d (%s): its host closes, with no skipwire goodbye ... ", k, id.Short())

	var peers []int
	var conns []p2pconn.Connection
	for i := range n {
		if i == k {
			continue
		}
		c, ok := d.c.Manager(i).GetConnection(id)
		if !ok {
			return nil, fmt.Errorf("node %d has no connection to node %d before the crash", i, k)
		}
		peers = append(peers, i)
		conns = append(conns, c)
	}
	// Each peer's Done channel is watched from before the kill.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	seen := make([]time.Duration, len(conns))
	lost := make([]bool, len(conns))
	var wg sync.WaitGroup
	t0 := time.Now()
	for idx, c := range conns {
		wg.Go(func() {
			select {
			case <-c.Done():
				seen[idx] = time.Since(t0)
				lost[idx] = errors.Is(c.Err(), p2pconn.ErrConnectionLost)
			case <-dctx.Done():
			}
		})
	}
	if err := d.c.Kill(k); err != nil {
		cancel()
		wg.Wait()
		return nil, err
	}
	d.svcs[k].close()
	d.printf("done\n")
	wg.Wait()
	for idx := range conns {
		switch {
		case seen[idx] == 0:
			d.fail("node %d did not notice the crash within 10 s", peers[idx])
		default:
			d.detect = append(d.detect, seen[idx])
			if lost[idx] {
				d.lostErrs++
			}
		}
	}
	survivors := d.c.RunningNodes()
	err := cluster.WaitFor(dctx, func() bool {
		for _, i := range survivors {
			if d.c.Manager(i).ConnectionCount() != len(survivors)-1 {
				return false
			}
		}
		return true
	})
	if err != nil {
		d.fail("a survivor still counts a connection to the dead node")
	}
	how := "as lost (p2pconn.ErrConnectionLost)"
	if d.lostErrs < len(d.detect) {
		how = fmt.Sprintf("%d of them as lost", d.lostErrs)
	}
	d.printf("      %d/%d peers saw the connection end within %s, %s; ConnectionCount now %d on each\n",
		len(d.detect), len(peers), ms(maxOf(d.detect)), how, len(survivors)-1)
	if d.lostErrs < len(d.detect) {
		d.fail("%d of %d peers took the crash for a clean close", len(d.detect)-d.lostErrs, len(peers))
	}
	return peers, nil
}

// restartKilled restarts node k with its key on its address.
func (d *demo) restartKilled(ctx context.Context) error {
	k := d.o.kill
	id, listen := d.c.ID(k), d.c.Node(k).Listen
	d.printf("      restarting node %d with the same key on the same address %s ... ", k, listen[0])
	t0 := time.Now()
	if err := d.c.Restart(ctx, k); err != nil {
		return err
	}
	d.restart = time.Since(t0)
	d.svcs[k] = newService(d.c.Manager(k), &d.cnt)
	if d.c.ID(k) != id || !d.c.Node(k).Listen[0].Equal(listen[0]) {
		d.fail("node %d came back as %s on %v", k, d.c.ID(k).Short(), d.c.Node(k).Listen)
	}
	d.printf("%s, Identifier %s unchanged\n", secs(d.restart), id.Short())
	return nil
}

// reconnect has node k and each of its peers Connect to each other at once,
// then exchanges messages over each pair both ways.
func (d *demo) reconnect(ctx context.Context, peers []int) error {
	k := d.o.kill
	var ps [][2]int
	for _, i := range peers {
		ps = append(ps, [2]int{i, k})
	}
	d.printf("      reconnecting: node %d and each of its %d peers Connect to each other by Identifier, both sides at once ... ", k, len(peers))
	t0 := time.Now()
	var mu sync.Mutex
	err := parallel(ps, d.o.par, func(i, j int) error {
		return both(i, j, func(i, j int) error {
			start := time.Now()
			c, err := d.svcs[i].connect(ctx, d.c.ID(j))
			if err != nil {
				return fmt.Errorf("node %d to node %d: %w", i, j, err)
			}
			if !c.IsAlive() {
				return fmt.Errorf("node %d to node %d: got a dead connection", i, j)
			}
			mu.Lock()
			d.reconnects = append(d.reconnects, time.Since(start))
			mu.Unlock()
			return nil
		})
	})
	if err != nil {
		return err
	}
	d.printf("%s\n", secs(time.Since(t0)))
	d.waitSettled(ctx)
	var dirs [][2]int
	for _, p := range ps {
		dirs = append(dirs, p, [2]int{p[1], p[0]})
	}
	d.printf("      request/echo with node %d: %d directions x %d messages ... ", k, len(dirs), d.o.msgs)
	return d.exchange(ctx, dirs)
}

// check verifies the invariants on the final state.
func (d *demo) check(ctx context.Context) error {
	d.printf("[6/6] checking every pair and counting messages ... ")
	// Every request got its echo, so every message has been read by now;
	// wait anyway in case a count lags.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = cluster.WaitFor(wctx, func() bool { return d.cnt.lost() == 0 })
	d.printf("done\n")
	return nil
}

// report prints the summary and records any broken invariant.
func (d *demo) report(total time.Duration) {
	n := d.o.nodes
	var conns, streams, managed minMax
	for i := range n {
		managed.add(d.c.Manager(i).ConnectionCount())
		for j := range n {
			if i != j {
				conns.add(d.c.ConnsBetween(i, j))
				streams.add(d.c.StreamsBetween(i, j))
			}
		}
	}
	sent, delivered := d.cnt.sent.Load(), d.cnt.delivered.Load()
	lost := sent - delivered + d.cnt.timeouts.Load()

	line := func(name, format string, args ...any) {
		d.printf("  %-34s %s\n", name, fmt.Sprintf(format, args...))
	}
	d.printf("\nReport\n")
	line("nodes", "%d (node %d killed and restarted)", n, d.o.kill)
	line("libp2p connections per peer pair", "%s (%d pairs, both sides counted)", conns, n*(n-1)/2)
	line("skipwire connections per node", "%s (ConnectionCount, %d peers each)", managed, n-1)
	line("skipwire streams per peer pair", "%s", streams)
	line("messages", "sent %d, delivered %d, lost %d", sent, delivered, lost)
	line("DHT lookup latency", "%s (%d lookups over the network; %d more answered at once, the DHT being connected to the peer)", d.lookups, len(d.lookups), d.lookupsLocal)
	line("Connect latency", "%s (%d calls, both sides of a pair at once)", d.connects, len(d.connects))
	line("round-trip latency", "%s (%d requests of %d B)", latencies(d.cnt.rtts), len(d.cnt.rtts), d.o.size)
	line("crash detection", "%d/%d peers, %s", len(d.detect), n-1, d.detect)
	line("restart and reconnect", "restart %s; reconnect %s", secs(d.restart), d.reconnects)
	line("total time", "%s", secs(total))
	d.printf("\n")

	if conns.min != 1 || conns.max != 1 {
		d.fail("libp2p connections per peer pair: %s, want 1", conns)
	}
	if managed.min != n-1 || managed.max != n-1 {
		d.fail("skipwire connections per node: %s, want %d", managed, n-1)
	}
	if lost != 0 || d.cnt.sendErrs.Load() != 0 {
		d.fail("%d messages lost, %d sends failed", lost, d.cnt.sendErrs.Load())
	}
	if streams.max > 1 {
		// The contract says one skipwire stream per pair; extra ones are
		// handshake streams that lost a simultaneous open and were not
		// released. They carry nothing, so this is a warning.
		d.printf("warning: some peer pairs hold up to %d skipwire streams, want 1 (unreleased handshake streams)\n", streams.max)
	}
	if len(d.failures) == 0 {
		d.printf("PASS: %d messages, 0 lost; 1 connection per peer pair\n", sent)
	} else {
		d.printf("FAIL: %d invariant(s) broken\n", len(d.failures))
	}
}

func maxOf(l latencies) time.Duration {
	var m time.Duration
	for _, d := range l {
		m = max(m, d)
	}
	return m
}
