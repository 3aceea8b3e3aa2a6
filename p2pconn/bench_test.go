package p2pconn_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// Benchmarks of the libp2p implementation on loopback TCP hosts built from
// HostOptions, with the default Config. Throughput benchmarks time from the
// first Send until the receiver has every message; allocations are counted
// process-wide, so they include the receiver's (one slice per message) and
// libp2p's.
//
// BenchmarkLibp2pStream and BenchmarkPlainTCP run the same loads on the
// baselines of examples/bench (a raw libp2p stream with the same framing, and
// plain TCP with a 4-byte prefix and a flush per message), through the same
// code (internal/benchkit), so that profiles can be compared side by side:
//
//	go test -run '^$' -bench 'Send128|Send64K|RoundTrip' -cpuprofile /tmp/sw.out ./p2pconn/
//	go test -run '^$' -bench 'Libp2pStream' -cpuprofile /tmp/raw.out ./p2pconn/

// benchLink opens a fresh link and returns it; cleanup closes it.
type benchLink func(b *testing.B) *benchkit.Link

// benchNodes starts count loopback nodes (see benchkit.Node); cleanup closes
// them.
func benchNodes(b *testing.B, count int, cfg p2pconn.Config) []*benchkit.Node {
	b.Helper()
	nodes, err := benchkit.NewNodes(count, benchkit.NodeConfig{Manager: cfg}, resolver.NewStatic())
	require.NoError(b, err)
	b.Cleanup(func() { _ = benchkit.CloseNodes(nodes) })
	return nodes
}

// benchOpen opens a link from nodes[0] to nodes[1] with open, on ctx;
// cleanup closes it.
func benchOpen(b *testing.B, ctx context.Context, nodes []*benchkit.Node, open benchkit.Opener) *benchkit.Link {
	b.Helper()
	l, _, err := open(ctx, nodes[0], nodes[1])
	require.NoError(b, err)
	b.Cleanup(func() { _ = l.Close() })
	return l
}

// skipwireLink returns a benchLink whose Send and Next get a context that
// never ends: context.Background() if background, else a cancellable one
// (as most callers pass), which makes Send watch it.
func skipwireLink(background bool) benchLink { return skipwireLinkWith(background, p2pconn.Config{}) }

// skipwireLinkWith is skipwireLink on managers configured with cfg.
func skipwireLinkWith(background bool, cfg p2pconn.Config) benchLink {
	return func(b *testing.B) *benchkit.Link {
		ctx := context.Background()
		if !background {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			b.Cleanup(cancel)
		}
		return benchOpen(b, ctx, benchNodes(b, 2, cfg), benchkit.OpenSkipwire)
	}
}

// rawLink opens the raw libp2p baseline: the same framing on a libp2p
// stream, no buffering.
func rawLink(b *testing.B) *benchkit.Link {
	return benchOpen(b, testkit.Context(b, 20*time.Second), benchNodes(b, 2, p2pconn.Config{}), benchkit.OpenRaw)
}

// combiningLink opens the raw libp2p baseline with a combining writer:
// concurrent senders append to one buffer that whoever holds the stream
// writes (the ceiling for eight senders).
func combiningLink(b *testing.B) *benchkit.Link {
	return benchOpen(b, testkit.Context(b, 20*time.Second), benchNodes(b, 2, p2pconn.Config{}), benchkit.OpenRawCombining)
}

// tcpLink opens the plain TCP baseline: 4-byte big-endian length, payload,
// flush per message.
func tcpLink(b *testing.B) *benchkit.Link {
	ln, err := benchkit.ListenTCP()
	require.NoError(b, err)
	defer ln.Close()
	l, _, err := benchkit.DialTCP(testkit.Context(b, 20*time.Second), ln)
	require.NoError(b, err)
	b.Cleanup(func() { _ = l.Close() })
	return l
}

// Loads.

// benchThroughput sends b.N messages of size bytes from a to z, split between
// senders goroutines, and stops the clock when z has received them all.
func benchThroughput(b *testing.B, open benchLink, size, senders int) {
	l := open(b)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	res, err := benchkit.Throughput(l, size, senders, b.N, b)
	require.NoError(b, err)
	res.Syscalls.Report(b)
}

// benchRoundTrip times b.N exchanges of a 128 B request and its echo, and
// reports their median and 99th percentile.
func benchRoundTrip(b *testing.B, open benchLink) {
	l := open(b)
	b.ReportAllocs()
	res, err := benchkit.RoundTrips(l, 128, 0, b.N, b)
	require.NoError(b, err)
	res.Syscalls.Report(b)
	rtts := res.RTTs
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Nanoseconds()), "p99-ns")
}

func benchSend(b *testing.B, size int) {
	b.Run("ctx=cancel", func(b *testing.B) { benchThroughput(b, skipwireLink(false), size, 1) })
	b.Run("ctx=background", func(b *testing.B) { benchThroughput(b, skipwireLink(true), size, 1) })
}

// BenchmarkSend128 measures Send/Next throughput of 128 B messages on one
// connection: one sender with either kind of context, and eight concurrent
// senders.
func BenchmarkSend128(b *testing.B) {
	benchSend(b, 128)
	b.Run("senders=8", func(b *testing.B) { benchThroughput(b, skipwireLink(false), 128, 8) })
}

// BenchmarkSend4K measures Send/Next throughput of 4 KiB messages on one connection.
func BenchmarkSend4K(b *testing.B) { benchSend(b, 4<<10) }

// BenchmarkSend64K measures Send/Next throughput of 64 KiB messages on one connection.
func BenchmarkSend64K(b *testing.B) { benchSend(b, 64<<10) }

// BenchmarkRoundTrip128 measures a 128 B request and its echo.
func BenchmarkRoundTrip128(b *testing.B) {
	b.Run("ctx=cancel", func(b *testing.B) { benchRoundTrip(b, skipwireLink(false)) })
	b.Run("ctx=background", func(b *testing.B) { benchRoundTrip(b, skipwireLink(true)) })
}

// BenchmarkAcks runs the main loads with acknowledgements on (the
// default), with session resumption on top (ResumeWindow > 0) and with
// neither (ResumeWindow < 0), side by side: their cost.
func BenchmarkAcks(b *testing.B) {
	for _, mode := range []struct {
		name string
		cfg  p2pconn.Config
	}{{"on", p2pconn.Config{}}, {"resume", p2pconn.Config{ResumeWindow: 10 * time.Second}}, {"off", p2pconn.Config{ResumeWindow: -1}}} {
		b.Run("send128x8senders/acks="+mode.name, func(b *testing.B) { benchThroughput(b, skipwireLinkWith(false, mode.cfg), 128, 8) })
		b.Run("send64K/acks="+mode.name, func(b *testing.B) { benchThroughput(b, skipwireLinkWith(false, mode.cfg), 64<<10, 1) })
		b.Run("roundtrip128/acks="+mode.name, func(b *testing.B) { benchRoundTrip(b, skipwireLinkWith(false, mode.cfg)) })
	}
}

// BenchmarkLibp2pStream runs the same loads on a raw libp2p stream with the
// same framing, on the same kind of hosts: the limit skipwire can reach.
func BenchmarkLibp2pStream(b *testing.B) {
	b.Run("send128", func(b *testing.B) { benchThroughput(b, rawLink, 128, 1) })
	b.Run("send128x8senders", func(b *testing.B) { benchThroughput(b, rawLink, 128, 8) })
	b.Run("send128x8senders/combining", func(b *testing.B) { benchThroughput(b, combiningLink, 128, 8) })
	b.Run("send4K", func(b *testing.B) { benchThroughput(b, rawLink, 4<<10, 1) })
	b.Run("send64K", func(b *testing.B) { benchThroughput(b, rawLink, 64<<10, 1) })
	b.Run("roundtrip128", func(b *testing.B) { benchRoundTrip(b, rawLink) })
	b.Run("connect", benchRawConnectCold)
}

// BenchmarkPlainTCP runs the same loads on the seed design: plaintext TCP, a
// 4-byte length prefix and a flush per message.
func BenchmarkPlainTCP(b *testing.B) {
	b.Run("send128", func(b *testing.B) { benchThroughput(b, tcpLink, 128, 1) })
	b.Run("send128x8senders", func(b *testing.B) { benchThroughput(b, tcpLink, 128, 8) })
	b.Run("send64K", func(b *testing.B) { benchThroughput(b, tcpLink, 64<<10, 1) })
	b.Run("roundtrip128", func(b *testing.B) { benchRoundTrip(b, tcpLink) })
}

// BenchmarkConnectCached measures Connect to a peer already connected: it
// must not allocate.
func BenchmarkConnectCached(b *testing.B) {
	nodes := benchNodes(b, 2, p2pconn.Config{})
	benchOpen(b, testkit.Context(b, 20*time.Second), nodes, benchkit.OpenSkipwire)
	m, id := nodes[0].Manager, nodes[1].ID
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Connect(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.Connect(ctx, id); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkConnectCold measures Connect to a peer the host is not connected
// to: resolution, dial, secure channel, yamux, stream and handshake. Between
// iterations, with the clock stopped, both sides close the connection and
// wait until neither host holds one.
func BenchmarkConnectCold(b *testing.B) {
	nodes := benchNodes(b, 2, p2pconn.Config{})
	a, z := nodes[0], nodes[1]
	ctx := testkit.Context(b, 10*time.Minute)
	b.ReportAllocs()
	for range b.N {
		c, err := a.Manager.Connect(ctx, z.ID)
		require.NoError(b, err)
		b.StopTimer()
		cz, err := z.Manager.Accept(ctx)
		require.NoError(b, err)
		require.NoError(b, errors.Join(c.Close(), cz.Close(), a.Host.Network().ClosePeer(z.Host.ID())))
		require.NoError(b, benchkit.WaitApart(ctx, a, z))
		b.StartTimer()
	}
}

// benchRawConnectCold is BenchmarkConnectCold's baseline: host.Connect,
// NewStream on the raw protocol and a one-byte round trip.
func benchRawConnectCold(b *testing.B) {
	nodes := benchNodes(b, 2, p2pconn.Config{})
	ctx := testkit.Context(b, 10*time.Minute)
	b.ReportAllocs()
	for range b.N {
		l, _, err := benchkit.OpenRaw(ctx, nodes[0], nodes[1])
		require.NoError(b, err)
		b.StopTimer()
		require.NoError(b, l.Close())
		b.StartTimer()
	}
}

// BenchmarkIdleConnections1000 has one node hold 1000 idle connections to
// 1000 other in-process nodes, and reports what one connection costs, both
// ends together (both live in this process): live heap and goroutine stacks
// after GC (B/conn, heap-B/conn, stack-B/conn) and goroutines/conn. Its
// ns/op is the wall time to open one of the connections, 16 at a time.
//
// The skipwire sub-benchmark opens managed connections; libp2p opens bare
// libp2p connections, each carrying one raw stream with a goroutine parked in
// Read on each end (what an application needs to receive). Kernel socket
// buffers are not counted.
func BenchmarkIdleConnections1000(b *testing.B) {
	const conns = 1000
	cfg := p2pconn.Config{MaxConnections: conns + conns/10}
	nodes := benchNodes(b, conns+1, cfg)
	ctx := testkit.Context(b, 10*time.Minute)
	idle := func(open benchkit.Opener, readers bool) benchkit.Idle {
		return benchkit.Idle{
			Center: nodes[0], Peers: nodes[1:], Open: open, Readers: readers,
			Workers: 16, Settle: 5 * time.Second, Wait: 8 * time.Second,
		}
	}
	skipwire, libp2p := idle(benchkit.OpenSkipwire, false), idle(benchkit.OpenRaw, true)

	// Warm-up: hold 1000 connections of each kind once, so that what the
	// first round fills and keeps (peerstores, identify's caches, maps that
	// grew to 1000 entries) is charged to neither.
	var target uint64 // the heap to wait for before a measurement; 0: until it stops shrinking
	for _, m := range []benchkit.Idle{libp2p, skipwire} {
		var err error
		_, target, err = m.Measure(ctx, target)
		require.NoError(b, err)
	}

	b.Run("skipwire", func(b *testing.B) { benchIdle(b, ctx, skipwire, &target) })
	b.Run("libp2p", func(b *testing.B) { benchIdle(b, ctx, libp2p, &target) })
}

// benchIdle reports what one connection m opens holds, then closes them
// all. It waits for the heap to be down to *target first, and sets *target
// for the next measurement.
func benchIdle(b *testing.B, ctx context.Context, m benchkit.Idle, target *uint64) {
	if r, ok := benchIdleResults[b.Name()]; ok {
		// -benchtime Nx runs the function again: a second measurement would
		// see the first one's garbage; report the first.
		for unit, v := range r {
			b.ReportMetric(v, unit)
		}
		return
	}
	res, next, err := m.Measure(ctx, *target)
	require.NoError(b, err)
	*target = next
	r := map[string]float64{
		"ns/op":           float64(res.Took.Nanoseconds()) / float64(len(m.Peers)),
		"B/conn":          res.Bytes,
		"heap-B/conn":     res.Heap,
		"stack-B/conn":    res.Stack,
		"goroutines/conn": res.Goroutines,
	}
	benchIdleResults[b.Name()] = r
	for unit, v := range r {
		b.ReportMetric(v, unit)
	}
}

// benchIdleResults holds each idle sub-benchmark's first measurement.
var benchIdleResults = map[string]map[string]float64{}
