// Command natdemo runs skipwire's NAT lab as a demo: in Linux network
// namespaces, a relay on a bridge that plays the internet and two nodes,
// each behind a router of its own that masquerades. Node A reaches node B
// by Identifier through the relay and exchanges numbered messages while
// hole punching opens a direct connection (QUIC, then TCP) through cone
// NATs, or fails through symmetric ones; then a relayed connection is
// driven into the relay's data and time limits. It prints the figures and
// ends with one line:
//
//	PASS: ... N messages, 0 lost, 0 duplicated   (exit 0)
//	FAIL: ...                                    (exit 1)
//	SKIP: reason                                 (exit 0: not root, ip or nft missing)
//
//	make nat-demo                    # needs root, iproute2 and nftables
//	go run ./examples/natdemo -long  # also relay v2's default 2-minute limit
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/internal/natlab"
	"github.com/skipwire/skipwire/internal/testkit"
)

func main() {
	// The lab's relays and nodes are this program again, in the lab's
	// namespaces.
	testkit.ChildMain(natlab.Roles...)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: natdemo [flags]

Builds a NAT lab in network namespaces (a relay, two private networks behind
masquerading routers) and runs skipwire nodes in it: a node behind one NAT
reaches a node behind the other by Identifier through the relay, hole
punching opens a direct connection through cone NATs and fails through
symmetric ones, and a relayed connection meets the relay's limits. Prints the
figures, then PASS, FAIL (exit 1) or SKIP (not root, or ip or nft missing).
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("natdemo", stderr, usage)
	long := fs.Bool("long", false, "also drive a relayed connection into relay v2's default time limit (2 minutes)")
	only := fs.String("only", "", "run only the scenarios named, comma-separated (cone-quic, cone-tcp, symmetric, relay-data-limit, relay-duration-limit)")
	logLevel := fs.String("log", "", "go-log level of libp2p and skipwire logs in the parent: debug, info, warn or error")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	scenarios := natlab.Scenarios()
	if *long {
		scenarios = append(scenarios, natlab.DefaultDurationLimit())
	}
	if *only != "" {
		names := strings.Split(*only, ",")
		for _, n := range names {
			if !slices.ContainsFunc(scenarios, func(sc natlab.Scenario) bool { return sc.Name == n }) {
				fmt.Fprintf(stderr, "natdemo: -only: no scenario %q\n", n)
				return cli.ExitUsage
			}
		}
		scenarios = slices.DeleteFunc(scenarios, func(sc natlab.Scenario) bool { return !slices.Contains(names, sc.Name) })
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "natdemo: unexpected argument %q\n", fs.Arg(0))
		return cli.ExitUsage
	}
	if err := cli.SetLogLevel(*logLevel); err != nil {
		fmt.Fprintf(stderr, "natdemo: %v\n", err)
		return cli.ExitUsage
	}

	if err := natlab.Unavailable(); err != nil {
		fmt.Fprintf(stdout, "SKIP: %s\n", cli.OneLine(err))
		return cli.ExitOK
	}
	fmt.Fprintln(stdout, "skipwire NAT demo: two nodes behind two NATs reach each other through a relay (network namespaces)")
	fmt.Fprintln(stdout, "  internet 172.16.0.0/24: relay .10 (relay v2 defaults), relay2 .20 (time limit 3 s), routers .11 and .12")
	fmt.Fprintln(stdout, "  node A 10.0.1.2 behind router A, node B 10.0.2.2 behind router B; every node a process of its own")
	lab, err := natlab.New()
	if err != nil {
		fmt.Fprintf(stdout, "FAIL: building the lab: %s\n", cli.OneLine(err))
		return cli.ExitFail
	}
	var failures []string
	var results []*natlab.Result
	messages, lost, dups := 0, 0, 0
	func() {
		defer func() {
			if err := lab.Close(); err != nil {
				failures = append(failures, "closing the lab: "+cli.OneLine(err))
			}
		}()
		if err := lab.Start(); err != nil {
			failures = append(failures, "starting the relays: "+cli.OneLine(err))
			return
		}
		for i, sc := range scenarios {
			fmt.Fprintf(stdout, "\n[%d/%d] %s: %s\n", i+1, len(scenarios), sc.Name, describe(sc))
			t0 := time.Now()
			res, err := lab.Run(ctx, sc)
			if err != nil {
				failures = append(failures, sc.Name+": "+cli.OneLine(err))
				fmt.Fprintf(stdout, "      FAIL: %s\n", cli.OneLine(err))
				if ctx.Err() != nil {
					return
				}
				continue
			}
			results = append(results, res)
			for _, l := range res.Lines() {
				fmt.Fprintf(stdout, "      %s\n", l)
			}
			for _, p := range res.Problems(sc) {
				failures = append(failures, sc.Name+": "+p)
				fmt.Fprintf(stdout, "      FAIL: %s\n", p)
			}
			if sc.Kind == natlab.Exchange {
				messages += res.Sent
				lost += res.Lost
				dups += res.Duplicated
			}
			fmt.Fprintf(stdout, "      (%.1f s)\n", time.Since(t0).Seconds())
		}
	}()
	if sum := natlab.Summary(results); len(sum) > 0 {
		fmt.Fprintln(stdout, "\nfigures (with session resumption the skipwire connection moves to the direct path when hole")
		fmt.Fprintln(stdout, "punching opens one, without loss, and the relayed connection is closed)")
		for _, l := range sum {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
	}
	fmt.Fprintln(stdout)
	if len(failures) > 0 {
		fmt.Fprintf(stdout, "FAIL: %s\n", strings.Join(failures, "; "))
		return cli.ExitFail
	}
	fmt.Fprintf(stdout, "PASS: NAT lab (%s): %d messages, %d lost, %d duplicated\n", names(scenarios), messages, lost, dups)
	return cli.ExitOK
}

// describe says what a scenario does.
func describe(sc natlab.Scenario) string {
	transports := "TCP and QUIC"
	if sc.TCPOnly {
		transports = "TCP only"
	}
	switch sc.Kind {
	case natlab.DataLimit:
		return fmt.Sprintf("%s NAT, A sends %d-byte messages as fast as it can, past the relay's data limit", sc.NAT, sc.Payload)
	case natlab.DurationLimit:
		return fmt.Sprintf("%s NAT, A sends a message every %s, past the relay's time limit", sc.NAT, sc.Interval)
	}
	want := "hole punching should fail"
	if sc.WantDirect != "" {
		want = "hole punching should open a direct " + sc.WantDirect + " connection"
	}
	return fmt.Sprintf("%s NAT, nodes on %s; A connects to B by Identifier through the relay, numbered messages; %s", sc.NAT, transports, want)
}

// names lists the scenarios' names.
func names(scs []natlab.Scenario) string {
	var n []string
	for _, sc := range scs {
		n = append(n, sc.Name)
	}
	return strings.Join(n, ", ")
}
