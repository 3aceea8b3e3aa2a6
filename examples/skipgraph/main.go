// Command skipgraph is skipwire's demo: a skip graph of N nodes on
// 127.0.0.1 (package sg), each a libp2p host with a Kademlia DHT joined
// through one introducer, a p2pconn.Manager and a network.Network. The
// nodes join one at a time, answer searches checked against the sorted key
// list, then a tenth crash, a tenth leave and new nodes join while searches
// run; once the tables are repaired, searches again, and a report. It ends
// with "PASS: N/N searches correct" (the searches after repair) and exits
// 0, or with "FAIL: ..." and exits 1.
//
//	go run ./examples/skipgraph                 # 64 nodes (make demo)
//	go run ./examples/skipgraph -n 200 -searches 2000
//	go run ./examples/skipgraph -procs 16       # 16 of the nodes in processes of their own
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/examples/skipgraph/testbed"
	"github.com/skipwire/skipwire/internal/testkit"
)

func main() {
	// With -procs, the demo runs again as the process of a node.
	testkit.ChildMain(testbed.ChildRole)
	cli.Main(run)
}

const usage = `Usage: skipgraph [flags]

Runs a skip graph of skipwire nodes on 127.0.0.1 (with -procs, some of them
in processes of their own): the nodes join one at a time through an
introducer, answer searches for random keys (each answer is
checked against the sorted key list), then a tenth of them crash, a tenth
leave gracefully and new ones join while searches go on; once every table is
repaired, searches again and prints a report. Exits 0 if every search after
the repair was correct, no message was lost and every pair of hosts shares
at most one connection; 1 otherwise.
`

// options are the demo's flags.
type options struct {
	nodes     int
	procs     int
	searches  int
	churn     float64
	searchers int
	parallel  int
	quic      bool
	timeout   time.Duration
	logLevel  string // -log, passed on to the child processes
}

// run is the program; main passes it the process's arguments and streams.
func run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("skipgraph", stderr, usage)
	var o options
	fs.IntVar(&o.nodes, "n", 64, "number of nodes (at least 4)")
	fs.IntVar(&o.procs, "procs", 0, "how many of the nodes run in child processes, one node each (this program run again); node 0, the introducer, runs in this process")
	fs.IntVar(&o.searches, "searches", 500, "searches before the churn, and again after the repair")
	fs.Float64Var(&o.churn, "churn", 0.1, "fraction of the nodes that crash, and again that leave, and of new nodes that join")
	fs.IntVar(&o.searchers, "searchers", 4, "searches running at once during the churn")
	fs.IntVar(&o.parallel, "p", 8, "searches running at once before the churn and after the repair")
	fs.BoolVar(&o.quic, "quic", false, "connect over QUIC instead of TCP (one UDP socket per host instead of a file descriptor per connection: for hundreds of nodes)")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up after this long")
	logLevel := fs.String("log", "", "go-log level of libp2p and skipwire logs: debug, info, warn or error (default: error, or $GOLOG_LOG_LEVEL)")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	var bad error
	switch {
	case fs.NArg() > 0:
		bad = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.nodes < 4:
		bad = fmt.Errorf("-n %d: need at least 4 nodes", o.nodes)
	case o.procs < 0:
		bad = fmt.Errorf("-procs %d: must not be negative", o.procs)
	case o.procs >= o.nodes:
		bad = fmt.Errorf("-procs %d: must be less than -n %d (node 0, the introducer, runs in this process)", o.procs, o.nodes)
	case o.searches < 1:
		bad = fmt.Errorf("-searches %d: need at least 1", o.searches)
	case o.churn < 0 || o.churn > 0.3:
		bad = fmt.Errorf("-churn %g: must be between 0 and 0.3", o.churn)
	case o.searchers < 0:
		bad = fmt.Errorf("-searchers %d: must not be negative", o.searchers)
	case o.parallel < 1:
		bad = fmt.Errorf("-p %d: need at least 1", o.parallel)
	case o.timeout <= 0:
		bad = fmt.Errorf("-timeout %s: must be positive", o.timeout)
	default:
		bad = cli.SetLogLevel(*logLevel)
	}
	o.logLevel = *logLevel
	if bad != nil {
		fmt.Fprintf(stderr, "skipgraph: %v\n", bad)
		return cli.ExitUsage
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	d := &demo{o: o, out: stdout}
	if err := d.run(ctx); err != nil {
		fmt.Fprintf(stdout, "\nFAIL: %s\n", cli.OneLine(err))
		return cli.ExitFail
	}
	if len(d.failures) > 0 {
		fmt.Fprintf(stdout, "\nFAIL: %s\n", strings.Join(d.failures, "; "))
		return cli.ExitFail
	}
	fmt.Fprintf(stdout, "\nPASS: %d/%d searches correct\n", d.after.Correct, d.after.Total())
	return cli.ExitOK
}

// demo is one run of the demo, and what it measured.
type demo struct {
	o   options
	out io.Writer
	tb  *testbed.Testbed

	began                  time.Time
	joins, churnJoins      []time.Duration
	killed, left, joined   int
	killedApart            int // killed nodes that ran in child processes
	before, during, after  *testbed.Searches
	crashSeen, leaveSeen   []time.Duration
	crashFixed, leaveFixed time.Duration
	joinFixed              time.Duration
	conns                  testbed.Connections
	ledger                 testbed.Totals

	failures []string
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

// fail records a broken promise; the run goes on, so that the report is
// complete.
func (d *demo) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.failures = append(d.failures, msg)
	d.printf("      FAIL: %s\n", msg)
}

func (d *demo) run(ctx context.Context) error {
	d.began = time.Now()
	n := d.o.nodes
	d.printf("skip graph demo: %d nodes on 127.0.0.1, one introducer (node 0), Identifiers resolved through a Kademlia DHT\n\n", n)
	d.printf("A skip graph keeps its nodes in a list sorted by key (level 0). Each node also draws\n" +
		"random bits, its membership vector; at level i it links to the nearest nodes on either\n" +
		"side whose first i bits match its own, so each level holds about half the nodes of the\n" +
		"one below. A search starts at a node's top level and steps down a level whenever the\n" +
		"next step would pass the target: about log2 N hops.\n\n")

	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"start", d.start},
		{"join", d.joinAll},
		{"search", d.searchBefore},
		{"churn", d.churn},
		{"repair", d.repair},
		{"search after repair", d.searchAfter},
		{"count", d.count},
	}
	defer d.close()
	for _, s := range steps {
		if err := s.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	d.report(time.Since(d.began))
	return nil
}

func (d *demo) close() {
	if d.tb != nil {
		if err := d.tb.Close(); err != nil {
			d.printf("closing the nodes: %s\n", cli.OneLine(err))
		}
	}
}

func (d *demo) start(ctx context.Context) error {
	t0 := time.Now()
	apart := ""
	if d.o.procs > 0 {
		apart = fmt.Sprintf(", %d of them in child processes (one node each)", d.o.procs)
	}
	d.printf("[1/7] starting %d nodes%s: a libp2p host each, its DHT joined through node 0, a connection manager, a network ... ", d.o.nodes, apart)
	opts := testbed.Options{Nodes: d.o.nodes, Children: d.o.procs}
	if d.o.logLevel != "" {
		opts.ChildEnv = []string{"GOLOG_LOG_LEVEL=" + d.o.logLevel}
	}
	if d.o.quic {
		opts.Listen = "/ip4/127.0.0.1/udp/0/quic-v1"
	}
	if d.o.nodes > 100 {
		// Hundreds of hosts in one process: close the connections nothing
		// uses, before libp2p's connection manager would.
		opts.TrimAfter = 10 * time.Second
	}
	tb, err := testbed.Start(ctx, opts)
	if err != nil {
		return err
	}
	d.tb = tb
	d.printf("%s\n", ms(time.Since(t0)))
	return nil
}

func (d *demo) joinAll(ctx context.Context) error {
	n := d.o.nodes
	d.printf("[2/7] joining the skip graph one node at a time, each through the introducer\n")
	t0 := time.Now()
	every := max(n/4, 1)
	for i := range n {
		t, err := d.tb.Join(ctx, i)
		if err != nil {
			return err
		}
		d.joins = append(d.joins, t)
		if (i+1)%every == 0 || i+1 == n {
			d.printf("      %d/%d joined (%s)\n", i+1, n, ms(time.Since(t0)))
		}
	}
	if err := d.tb.WaitConverged(ctx); err != nil {
		return err
	}
	levels, _ := d.tb.Levels()
	d.printf("      every table matches the sorted key list: %d nodes, levels 0 to %d\n", n, levels-1)
	t := d.tb.Node(0).Table()
	d.printf("      node 0's table, for instance (neighbours as key@Identifier):\n")
	for _, line := range strings.Split(strings.TrimRight(t.String(), "\n"), "\n") {
		d.printf("        %s\n", line)
	}
	return nil
}

func (d *demo) searchBefore(ctx context.Context) error {
	d.printf("[3/7] %d searches from random nodes for random keys ... ", d.o.searches)
	d.before = d.tb.RunSearches(ctx, d.o.searches, d.o.parallel, nil)
	d.printf("%d/%d correct\n", d.before.Correct, d.before.Total())
	d.examples(d.before)
	if d.before.Correct != d.before.Total() {
		d.fail("%d of %d searches before the churn were not correct", d.before.Total()-d.before.Correct, d.before.Total())
	}
	return nil
}

// victims returns k running nodes at random, the introducer excepted.
func (d *demo) victims(k int) []int {
	run := slices.DeleteFunc(d.tb.Running(), func(i int) bool { return i == 0 })
	rand.Shuffle(len(run), func(a, b int) { run[a], run[b] = run[b], run[a] })
	return run[:min(k, len(run))]
}

func (d *demo) churn(ctx context.Context) error {
	k := int(float64(d.o.nodes)*d.o.churn + 0.5)
	d.printf("[4/7] churn, while %d searches at a time go on\n", d.o.searchers)
	stop := d.tb.StartSearches(d.o.searchers, 5*time.Millisecond)

	// Crashes, all at once: no goodbye; the neighbours see their
	// connections lost.
	victims := d.victims(k)
	apart := ""
	if d.o.procs > 0 {
		for _, i := range victims {
			if d.tb.InChild(i) {
				d.killedApart++
			}
		}
		apart = fmt.Sprintf(" (%d of them in child processes, by SIGKILL)", d.killedApart)
	}
	d.printf("      killing %d nodes at once%s: their hosts close, with no goodbye ... ", k, apart)
	seen, fixed, err := d.depart(ctx, victims, func(i int) (testbed.Departure, error) { return d.tb.Kill(i) })
	if err != nil {
		return err
	}
	d.killed, d.crashSeen, d.crashFixed = len(seen), seen, fixed
	d.printf("no table names them after %s; every table repaired after %s\n", ms(slices.Max(seen)), ms(fixed))

	// Graceful leaves, all at once: each tells its neighbours, then its
	// manager tells every peer that it left.
	d.printf("      %d nodes leave gracefully, at once ... ", k)
	seen, fixed, err = d.depart(ctx, d.victims(k), func(i int) (testbed.Departure, error) { return d.tb.Leave(ctx, i) })
	if err != nil {
		return err
	}
	d.left, d.leaveSeen, d.leaveFixed = len(seen), seen, fixed
	d.printf("no table names them after %s; every table repaired after %s\n", ms(slices.Max(seen)), ms(fixed))

	// New nodes: a host each, whose DHT joins through the introducer, then
	// the skip graph; as many of them in child processes, in proportion,
	// as at the start.
	d.printf("      %d new nodes join, one at a time ... ", k)
	t0 := time.Now()
	newApart := (k*d.o.procs + d.o.nodes/2) / d.o.nodes
	for j := range k {
		var i int
		var err error
		if (j+1)*newApart/k > j*newApart/k {
			i, err = d.tb.AddChild(ctx, testbed.ChildOptions{})
		} else {
			i, err = d.tb.Add(ctx)
		}
		if err != nil {
			return err
		}
		t, err := d.tb.Join(ctx, i)
		if err != nil {
			return err
		}
		d.churnJoins = append(d.churnJoins, t)
		d.joined++
	}
	d.printf("%s\n", ms(time.Since(t0)))
	d.during = stop()
	d.printf("      searches during the churn: %d correct, %d wrong, %d failed\n", d.during.Correct, d.during.Wrong, d.during.Failed)
	d.examples(d.during)
	return nil
}

// depart takes the nodes victims out at once with leave, and returns how
// long after each departure no table named the node, and how long until
// every table was repaired.
func (d *demo) depart(ctx context.Context, victims []int, leave func(i int) (testbed.Departure, error)) ([]time.Duration, time.Duration, error) {
	w := d.tb.WatchDepartures()
	t0 := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, i := range victims {
		wg.Go(func() {
			g, err := leave(i)
			w.Add(g)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %d: %w", i, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	seen, err := w.Wait(ctx)
	if err != nil {
		return nil, 0, err
	}
	if err := d.tb.WaitConverged(ctx); err != nil {
		return nil, 0, err
	}
	fixed := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		// A leave that could not tell every neighbour: they learn from its
		// manager's close, or from the loss. Not a broken promise.
		d.printf("(%s) ", cli.OneLine(err))
	}
	return seen, fixed, nil
}

func (d *demo) repair(ctx context.Context) error {
	d.printf("[5/7] waiting until every table matches the sorted key list ... ")
	t0 := time.Now()
	if err := d.tb.WaitConverged(ctx); err != nil {
		return err
	}
	d.joinFixed = time.Since(t0)
	d.printf("%d nodes, %s\n", len(d.tb.Running()), ms(d.joinFixed))
	return nil
}

func (d *demo) searchAfter(ctx context.Context) error {
	d.printf("[6/7] %d searches after the repair ... ", d.o.searches)
	d.after = d.tb.RunSearches(ctx, d.o.searches, d.o.parallel, nil)
	d.printf("%d/%d correct\n", d.after.Correct, d.after.Total())
	d.examples(d.after)
	if d.after.Correct != d.after.Total() || d.after.Total() != d.o.searches {
		d.fail("%d of %d searches after the repair were not correct", d.o.searches-d.after.Correct, d.o.searches)
	}
	return nil
}

// count settles the connections and counts the messages: those sent a
// second ago must have arrived by now.
func (d *demo) count(ctx context.Context) error {
	d.printf("[7/7] counting connections and messages ... ")
	cut := time.Now()
	conns, err := d.tb.WaitOnePerPair(ctx)
	d.conns = conns
	if err != nil {
		d.fail("%s", cli.OneLine(err))
	}
	if wait := time.Until(cut.Add(time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	d.ledger = d.tb.Ledger().Totals(d.tb.Alive, cut)
	d.printf("done\n")
	if d.ledger.Lost > 0 {
		d.fail("%d messages between running nodes were lost, e.g. %s", d.ledger.Lost, strings.Join(d.ledger.Examples, ", "))
	}
	return nil
}

// examples prints the first wrong or failed searches, if any.
func (d *demo) examples(s *testbed.Searches) {
	for _, e := range s.Snapshot().Examples {
		d.printf("        %s\n", e)
	}
}

// ms formats d in milliseconds, or seconds from 10 s on.
func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}
