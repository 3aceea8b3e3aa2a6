// Command scale measures one skipwire node holding many connections: a
// central node (a libp2p host from p2pconn.HostOptions and a
// p2pconn.Manager) accepts one connection from each of N peers, which run
// in child processes (this program run again, each hosting N/procs libp2p
// hosts with a Manager each). While it holds them, the central node
// measures per connection its live heap, goroutine stacks and goroutines;
// the latency of Connect to peers it is connected to and to fresh peers;
// and its CPU time over an idle period (the shared health loop and
// libp2p's own keepalives). The same run with raw libp2p (the same central
// host options, host.Connect and NewStream from each peer, a reader
// goroutine parked on each end) is the baseline.
//
// Each contender's central node runs in a fresh process of its own, so that
// neither inherits the other's garbage or cached goroutine stacks.
//
//	go run ./examples/scale                  # 10,000 peers in 4 processes, a few minutes (make scale)
//	go run ./examples/scale -quick           # 1,000 peers, about a minute
//	go run ./examples/scale -n 2000 -json
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/internal/testkit"
)

func main() {
	// The peers and each central node run as this program again.
	testkit.ChildMain(peersRole, centralRole)
	cli.Main(run)
}

const usage = `Usage: scale [flags]

Starts a central skipwire node and N peers in child processes, each peer
connected to the central node and idle, and reports what the central node
spends per connection (memory, goroutines, CPU while idle) and how long its
Connect takes while it holds them, next to raw libp2p connections of the
same shape. Exits 0 when every connection was established and held through
the idle period, 1 otherwise.
`

// options are the program's flags.
type options struct {
	n         int
	procs     int
	transport string
	idle      time.Duration
	cold      int
	workers   int
	messages  int
	keepalive time.Duration
	raise     bool
	sites     bool
	profile   string
	json      bool
	quick     bool
	verbose   bool
	logLevel  string
	timeout   time.Duration
}

// contenders run in this order, each with a central node of its own.
var contenders = []string{contenderRaw, contenderSkipwire}

const (
	contenderSkipwire = "skipwire"
	contenderRaw      = "libp2p"
)

func parseFlags(args []string, stderr io.Writer) (options, int, bool) {
	var o options
	fs := cli.NewFlagSet("scale", stderr, usage)
	fs.IntVar(&o.n, "n", 0, "peers, each holding one connection to the central node (default 10000; -quick 1000)")
	fs.IntVar(&o.procs, "procs", 0, "child processes the peers are spread over (default 4; -quick 2)")
	fs.StringVar(&o.transport, "transport", "tcp", "tcp (a socket per connection) or quic (one UDP socket per host)")
	fs.DurationVar(&o.idle, "idle", 0, "how long the central node's CPU time is measured while its connections are idle (default 30s, two keepalive periods; -quick 15s)")
	fs.IntVar(&o.cold, "cold", 0, "cold Connects from the central node to fresh peers, per contender (default 50; -quick 20)")
	fs.IntVar(&o.workers, "workers", 8, "peers of one process that connect at once")
	fs.IntVar(&o.messages, "messages", 0, "128-byte messages each peer sends once connected, before the connection idles (0: none, idle from the start)")
	fs.DurationVar(&o.keepalive, "keepalive", 0, "p2pconn.Config.KeepaliveInterval of every node (default: the library's, 15s)")
	fs.BoolVar(&o.raise, "raise-limits", true, "raise the central node's resource-manager limits that HostOptions leaves below what N connections need (each raise is reported); false keeps HostOptions' limits as they are")
	fs.BoolVar(&o.sites, "sites", false, "also count the timers and the live heap the central node holds per connection, by where they were allocated (records every allocation: slower)")
	fs.StringVar(&o.profile, "profile", "", "write each central node's goroutine profile (pprof text, debug=1) and heap profile into this directory")
	fs.BoolVar(&o.json, "json", false, "print the figures as one JSON object instead of the table")
	fs.BoolVar(&o.quick, "quick", false, "1,000 peers in 2 processes, a 15 s idle period, 20 cold Connects")
	fs.BoolVar(&o.verbose, "v", false, "report progress on stderr")
	fs.StringVar(&o.logLevel, "log", "", "go-log level of libp2p and skipwire logs in every process: debug, info, warn or error (default: error, or $GOLOG_LOG_LEVEL)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	if code, ok := cli.Parse(fs, args); !ok {
		return o, code, false
	}
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	def(&o.n, 10_000, 1000)
	def(&o.procs, 4, 2)
	def(&o.cold, 50, 20)
	if o.idle == 0 {
		o.idle = 30 * time.Second
		if o.quick {
			o.idle = 15 * time.Second
		}
	}
	var bad error
	switch {
	case fs.NArg() > 0:
		bad = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.n < 1:
		bad = fmt.Errorf("-n %d: need at least one peer", o.n)
	case o.procs < 1 || o.procs > o.n:
		bad = fmt.Errorf("-procs %d: need between 1 and -n (%d)", o.procs, o.n)
	case o.transport != "tcp" && o.transport != "quic":
		bad = fmt.Errorf("-transport %q: tcp or quic", o.transport)
	case o.idle < 0:
		bad = fmt.Errorf("-idle %s: must not be negative", o.idle)
	case o.cold < 1:
		bad = fmt.Errorf("-cold %d: need at least 1", o.cold)
	case o.messages < 0:
		bad = fmt.Errorf("-messages %d: must not be negative", o.messages)
	case o.workers < 1:
		bad = fmt.Errorf("-workers %d: need at least 1", o.workers)
	case o.keepalive < 0:
		bad = fmt.Errorf("-keepalive %s: must not be negative", o.keepalive)
	case o.timeout <= 0:
		bad = fmt.Errorf("-timeout %s: must be positive", o.timeout)
	default:
		bad = cli.SetLogLevel(o.logLevel)
	}
	if bad != nil {
		fmt.Fprintf(stderr, "scale: %v\n", bad)
		return o, cli.ExitUsage, false
	}
	return o, cli.ExitOK, true
}

// run is the program; main passes it the process's arguments and streams.
func run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	o, code, ok := parseFlags(args, stderr)
	if !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	r, err := measure(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "scale: %s\n", cli.OneLine(err))
		return cli.ExitFail
	}
	if o.json {
		if err := r.writeJSON(stdout); err != nil {
			fmt.Fprintf(stderr, "scale: %v\n", err)
			return cli.ExitFail
		}
	} else {
		r.writeTable(stdout)
	}
	if len(r.Failures) > 0 {
		if !o.json {
			fmt.Fprintf(stdout, "\nFAIL: %s\n", strings.Join(r.Failures, "; "))
		}
		return cli.ExitFail
	}
	return cli.ExitOK
}

// measure starts the peers' processes, runs each contender against them
// and returns the report.
func measure(ctx context.Context, o options, stderr io.Writer) (_ *report, err error) {
	began := time.Now()
	progress := func(format string, args ...any) {
		if o.verbose {
			fmt.Fprintf(stderr, "scale: "+format+"\n", args...)
		}
	}
	r := newReport(o)
	if r.Env.FDLimitBefore, r.Env.FDLimit, err = raiseFDLimit(fdsWanted(o)); err != nil {
		return nil, err
	}

	progress("starting %d peers in %d processes", o.n, o.procs)
	t0 := time.Now()
	ps, err := startPeers(ctx, o)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, ps.stop()) }()
	r.Env.PeersStartSeconds = time.Since(t0).Seconds()
	progress("peers ready in %.1f s", r.Env.PeersStartSeconds)

	for _, name := range contenders {
		res, err := runContender(ctx, o, name, ps, progress)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r.add(res)
	}
	r.Env.Seconds = time.Since(began).Seconds()
	r.finish()
	return r, nil
}
