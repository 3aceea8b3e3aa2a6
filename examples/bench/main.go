// Command bench measures skipwire against its baselines in one process and
// one run, on the same loopback hosts: a raw libp2p stream carrying the same
// framing (the limit skipwire can reach), the same with a combining writer
// (the coalescing ceiling for concurrent senders) and plain TCP with a
// 4-byte length prefix and a flush per message (what users would write by
// hand); and it measures what acknowledgements cost and what the network
// layer adds on top of a Connection.
//
// It prints a table and the ratios the performance targets in ARCHITECTURE.md
// are stated in, each the median of per-round ratios with its spread; -json
// prints the same figures as one JSON object.
//
//	go run ./examples/bench            # full run, about 4 minutes
//	go run ./examples/bench -quick     # under a minute
//	go run ./examples/bench -quick -json
//	go run ./examples/bench -markdown BENCHMARKS.md -gobench gobench.txt
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"time"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command-line flags; zero sizes mean "the mode's default".
type options struct {
	quick      bool
	json       bool
	verbose    bool
	rounds     int
	idleRounds int
	conns      int
	small      int
	volume     int
	rtts       int
	connects   int
	security   string
	markdown   string
	goBench    string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "smaller samples and fewer rounds: finishes in under a minute")
	fs.BoolVar(&o.json, "json", false, "print the figures as one JSON object instead of the table")
	fs.BoolVar(&o.verbose, "v", false, "report progress on stderr")
	fs.IntVar(&o.rounds, "rounds", 0, "fresh connections per contender and figure, alternating the contenders (default 15, quick 5)")
	fs.IntVar(&o.idleRounds, "idle-rounds", 0, "rounds of the idle memory figure (default 3, quick 2)")
	fs.IntVar(&o.conns, "conns", 200, "idle connections opened for the memory figure")
	fs.IntVar(&o.small, "small", 0, "128 B messages per throughput sample (default 200000, quick 40000)")
	fs.IntVar(&o.volume, "volume", 0, "bytes per 64 KiB throughput sample (default 512 MiB, quick 64 MiB)")
	fs.IntVar(&o.rtts, "rtts", 0, "round trips per round (default 2000, quick 800)")
	fs.IntVar(&o.connects, "connects", 0, "cold connects per contender and round (default 4, quick 3)")
	fs.StringVar(&o.security, "security", "tls", "secure channel of the libp2p hosts: tls (HostOptions as is: TLS 1.3 offered first) or noise (TLS removed)")
	fs.StringVar(&o.markdown, "markdown", "", "also write the report as Markdown to this file (make bench writes BENCHMARKS.md)")
	fs.StringVar(&o.goBench, "gobench", "", "with -markdown: a file holding `go test -bench` output to include")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	def := func(v *int, full, quick int) {
		if *v < 0 {
			*v = 0
		}
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	def(&o.rounds, 15, 5)
	def(&o.idleRounds, 3, 2)
	def(&o.small, 200_000, 40_000)
	def(&o.volume, 512<<20, 64<<20)
	def(&o.rtts, 2000, 800)
	def(&o.connects, 4, 3)
	if o.conns < 1 {
		return o, errors.New("-conns must be at least 1")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	sec, err := securityOption(o.security)
	if err != nil {
		return err
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()

	nc := nodeConfig(p2pconn.Config{MaxConnections: max(1000, 2*o.conns)}, sec)
	pair, err := benchkit.NewNodes(2, nc, resolver.NewStatic())
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, benchkit.CloseNodes(pair)) }()
	noAcks, err := benchkit.NewNodes(2, nodeConfig(p2pconn.Config{ResumeWindow: -1}, sec), resolver.NewStatic())
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, benchkit.CloseNodes(noAcks)) }()
	bn := &bench{o: o, r: newReport(o), nc: nc, a: pair[0], b: pair[1], na: noAcks[0], nb: noAcks[1], stderr: stderr}

	// Each phase uses the same two nodes (and the two without
	// acknowledgements), but for the fan-in and the idle connections.
	for _, phase := range []func(context.Context) error{bn.throughput, bn.roundTrips, bn.coldConnects, bn.cachedConnect, bn.fanIn, bn.idleMemory} {
		if err := phase(ctx); err != nil {
			return err
		}
	}

	r := bn.r
	r.Env.Seconds = time.Since(began).Seconds()
	r.finish()
	if o.markdown != "" {
		if err := r.writeMarkdown(o.markdown, o.goBench); err != nil {
			return err
		}
	}
	if o.json {
		return r.writeJSON(stdout)
	}
	r.writeTable(stdout)
	return nil
}

// rotate returns xs starting at index k mod len(xs), so that each round
// starts with a different contender.
func rotate[T any](xs []T, k int) []T {
	k %= len(xs)
	return append(append([]T(nil), xs[k:]...), xs[:k]...)
}

// environment describes where the figures were taken.
type environment struct {
	GoVersion  string  `json:"go_version"`
	OS         string  `json:"os"`
	Arch       string  `json:"arch"`
	CPUs       int     `json:"cpus"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	Security   string  `json:"security"`
	Negotiated string  `json:"negotiated"` // secure channel and muxer of a skipwire connection
	Rounds     int     `json:"rounds"`
	IdleRounds int     `json:"idle_rounds"`
	Quick      bool    `json:"quick"`
	Conns      int     `json:"idle_conns"`
	Seconds    float64 `json:"seconds"`
}

func newEnvironment(o options) environment {
	return environment{
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Security:   o.security,
		Rounds:     o.rounds,
		IdleRounds: o.idleRounds,
		Quick:      o.quick,
		Conns:      o.conns,
	}
}
