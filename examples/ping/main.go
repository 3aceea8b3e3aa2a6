// Command ping is ping(8) over skipwire. With no argument it listens, prints
// its address and echoes every message it receives; given that address it
// sends request messages, times each echo and prints a summary.
//
//	go run ./examples/ping                                    # terminal 1
//	go run ./examples/ping -c 5 /ip4/127.0.0.1/tcp/.../p2p/12D3KooW...   # terminal 2
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// The first Ctrl-C ends the run (with its summary); a second one kills it.
func main() { cli.Main(run) }

const usage = `Usage:
  ping [flags]              listen, print this node's address, echo every message
  ping [flags] <multiaddr>  send messages to that node and time each echo

The multiaddr is the one the listener prints, such as
/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW... The exit status is 0 when every
message was echoed, 1 when some were lost, 2 on bad arguments or an
unreachable peer.
`

// seqSize is the size of the sequence number that starts every message.
const seqSize = 8

type options struct {
	count    int
	interval time.Duration
	size     int
	wait     time.Duration
	listen   string
	key      string
}

// run is the program; main passes it the process's arguments and streams.
func run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("ping", stderr, usage)
	var o options
	fs.IntVar(&o.count, "c", 0, "stop after sending this many messages (default: until interrupted)")
	fs.DurationVar(&o.interval, "i", time.Second, "wait this long between messages")
	fs.IntVar(&o.size, "s", 56, fmt.Sprintf("message size in bytes (at least %d)", seqSize))
	fs.DurationVar(&o.wait, "W", 2*time.Second, "how long to wait for each echo, and for the connection")
	fs.StringVar(&o.listen, "listen", "/ip4/127.0.0.1/tcp/0", "listen address of the listener, e.g. /ip4/0.0.0.0/tcp/4001 (0 picks a free port)")
	fs.StringVar(&o.key, "key", "", "file holding the node's private key, created if absent (default: a new key each run)")
	logLevel := fs.String("log", "", "go-log level of libp2p and skipwire logs: debug, info, warn or error (default: error, or $GOLOG_LOG_LEVEL)")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	var bad error
	switch {
	case fs.NArg() > 1:
		bad = fmt.Errorf("one address at most, got %d arguments", fs.NArg())
	case o.count < 0:
		bad = fmt.Errorf("-c %d: must not be negative", o.count)
	case o.interval < 0:
		bad = fmt.Errorf("-i %s: must not be negative", o.interval)
	case o.size < seqSize || o.size > p2pconn.DefaultMaxMessageSize:
		bad = fmt.Errorf("-s %d: size must be between %d and %d", o.size, seqSize, p2pconn.DefaultMaxMessageSize)
	case o.wait <= 0:
		bad = fmt.Errorf("-W %s: must be positive", o.wait)
	default:
		bad = cli.SetLogLevel(*logLevel)
	}
	if bad != nil {
		fmt.Fprintf(stderr, "ping: %v\n", bad)
		return cli.ExitUsage
	}
	if fs.NArg() == 0 {
		return listen(ctx, o, stdout, stderr)
	}
	return ping(ctx, o, fs.Arg(0), stdout, stderr)
}

// node is a host and its manager, closed in that order's reverse.
type node struct {
	h host.Host
	m *p2pconn.Manager
}

func newNode(o options, listen string, r resolver.AddressResolver, cfg p2pconn.Config) (*node, error) {
	key, err := cli.LoadKey(o.key)
	if err != nil {
		return nil, err
	}
	h, err := cli.NewHost(cfg, key, listen)
	if err != nil {
		return nil, err
	}
	m, err := p2pconn.NewManager(h, r, cfg)
	if err != nil {
		return nil, errors.Join(err, h.Close())
	}
	return &node{h: h, m: m}, nil
}

// close closes the manager (every connection gracefully), then the host.
func (n *node) close() {
	_ = n.m.Close()
	_ = n.h.Close()
}

// listen echoes every message of every connection until ctx ends.
func listen(ctx context.Context, o options, stdout, stderr io.Writer) int {
	n, err := newNode(o, o.listen, nil, p2pconn.Config{})
	if err != nil {
		fmt.Fprintf(stderr, "ping: %s\n", cli.OneLine(err))
		return cli.ExitUsage
	}
	defer n.close()
	out := cli.NewPrinter(stdout)
	addrs := cli.FullAddrs(n.h)
	if len(addrs) == 0 {
		fmt.Fprintf(stderr, "ping: listening on %s gave no address to print\n", o.listen)
		return cli.ExitUsage
	}
	out.Printf("skipwire ping listening as %s on %s\n", n.m.ID().Short(), addrs[0])
	for _, a := range addrs[1:] {
		out.Printf("  also on %s\n", a)
	}
	out.Printf("ping it from another terminal with: %s -c 5 %s\n", cli.Command("ping"), addrs[0])

	// Echo goroutines stop when ctx ends, before n.close closes the connections.
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := n.m.Accept(ctx)
		if err != nil {
			return cli.ExitOK // ctx ended: Ctrl-C
		}
		out.Printf("%s connected from %s\n", c.RemoteID().Short(), c.RemoteAddr())
		wg.Go(func() { echo(ctx, c, out) })
	}
}

// echo sends every message of c back until c dies or ctx ends.
func echo(ctx context.Context, c p2pconn.Connection, out *cli.Printer) {
	for {
		msg, err := c.Next(ctx)
		if err == nil {
			err = c.Send(ctx, msg)
		}
		if err != nil {
			if ctx.Err() == nil {
				out.Printf("%s disconnected%s\n", c.RemoteID().Short(), lostSuffix(err))
			}
			return
		}
	}
}

// lostSuffix says how a connection ended, for a "disconnected" line.
func lostSuffix(err error) string {
	if errors.Is(err, p2pconn.ErrConnectionLost) {
		return " (connection lost)"
	}
	return ""
}

// ping sends o.count messages to the node at addr and prints each echo's
// round-trip time, then a summary.
func ping(ctx context.Context, o options, addr string, stdout, stderr io.Writer) int {
	info, id, err := cli.ParsePeer(addr)
	if err != nil {
		fmt.Fprintf(stderr, "ping: %s\n", err)
		return cli.ExitUsage
	}
	table := resolver.NewStatic()
	table.Add(id, info.Addrs...)
	// One attempt, as ping(8) makes: a peer that is not there now is reported at once.
	cfg := p2pconn.Config{ConnectTimeout: o.wait, RetryAttempts: 0}
	n, err := newNode(o, "", table, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ping: %s\n", cli.OneLine(err))
		return cli.ExitUsage
	}
	defer n.close()

	fmt.Fprintf(stdout, "PING %s (%s): %d bytes per message\n", addr, id.Short(), o.size)
	start := time.Now()
	c, err := n.m.Connect(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return cli.ExitFail
		}
		fmt.Fprintf(stderr, "ping: cannot reach %s: %s\n", id.Short(), cli.ConnectError(err))
		return cli.ExitUsage
	}
	fmt.Fprintf(stdout, "connected to %s in %.3f ms\n", id.Short(), ms(time.Since(start)))

	var st stats
	failed := false // the connection broke
	msg := make([]byte, o.size)
	for i := seqSize; i < len(msg); i++ {
		msg[i] = byte(i)
	}
	for seq := uint64(1); o.count == 0 || seq <= uint64(o.count); seq++ {
		if seq > 1 && !sleep(ctx, o.interval) {
			break
		}
		binary.BigEndian.PutUint64(msg, seq)
		sent := time.Now()
		err := c.Send(ctx, msg)
		if err == nil {
			st.sent++
			err = awaitEcho(ctx, c, msg, o.wait)
		}
		switch {
		case err == nil:
			rtt := time.Since(sent)
			st.add(rtt)
			fmt.Fprintf(stdout, "%d bytes from %s: seq=%d time=%.3f ms\n", len(msg), id.Short(), seq, ms(rtt))
			continue
		case ctx.Err() != nil:
			// Interrupted: print the summary, as ping(8) does.
		case errors.Is(err, errNoEcho):
			fmt.Fprintf(stdout, "no echo for seq=%d within %s\n", seq, o.wait)
			continue
		default:
			failed = true
			fmt.Fprintf(stderr, "ping: seq=%d: %s\n", seq, cli.OneLine(err))
		}
		break
	}
	_ = c.Close()

	fmt.Fprintf(stdout, "--- %s skipwire ping statistics ---\n", id.Short())
	fmt.Fprintln(stdout, st.summary())
	if failed || st.sent == 0 || st.received < st.sent {
		return cli.ExitFail
	}
	return cli.ExitOK
}

var errNoEcho = errors.New("no echo")

// awaitEcho waits up to wait for the echo of msg on c, skipping late echoes
// of earlier messages. It returns errNoEcho if none came in time.
func awaitEcho(ctx context.Context, c p2pconn.Connection, msg []byte, wait time.Duration) error {
	want := binary.BigEndian.Uint64(msg)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		got, err := c.Next(wctx)
		switch {
		case err != nil && wctx.Err() != nil && ctx.Err() == nil:
			return errNoEcho
		case err != nil:
			return err
		case len(got) < seqSize || binary.BigEndian.Uint64(got) < want:
			continue // a late echo of an earlier message
		case !bytes.Equal(got, msg):
			return fmt.Errorf("echo of seq=%d differs from what was sent", want)
		}
		return nil
	}
}

// sleep waits d, and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// stats are the round-trip statistics of a run.
type stats struct {
	sent, received int
	sum, sumSq     float64 // milliseconds
	min, max       float64
}

func (s *stats) add(rtt time.Duration) {
	v := ms(rtt)
	if s.received == 0 || v < s.min {
		s.min = v
	}
	if s.received == 0 || v > s.max {
		s.max = v
	}
	s.received++
	s.sum += v
	s.sumSq += v * v
}

// summary is ping(8)'s summary on one line.
func (s *stats) summary() string {
	loss := 0.0
	if s.sent > 0 {
		loss = 100 * float64(s.sent-s.received) / float64(s.sent)
	}
	line := fmt.Sprintf("%d messages sent, %d received, %s%% loss", s.sent, s.received, percent(loss))
	if s.received == 0 {
		return line
	}
	avg := s.sum / float64(s.received)
	mdev := math.Sqrt(max(s.sumSq/float64(s.received)-avg*avg, 0))
	return fmt.Sprintf("%s; rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms", line, s.min, avg, s.max, mdev)
}

// percent prints whole percentages without decimals, as ping(8) does.
func percent(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
