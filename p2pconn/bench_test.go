package p2pconn_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-varint"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
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
// plain TCP with a 4-byte prefix and a flush per message), so that profiles
// can be compared side by side:
//
//	go test -run '^$' -bench 'Send128|Send64K|RoundTrip' -cpuprofile /tmp/sw.out ./p2pconn/
//	go test -run '^$' -bench 'Libp2pStream' -cpuprofile /tmp/raw.out ./p2pconn/

// benchEnd is one end of a connection under benchmark.
type benchEnd interface {
	send(msg []byte) error // safe for concurrent use
	recv() ([]byte, error) // one caller at a time
}

// benchLink opens a fresh connection and returns its two ends; cleanup closes it.
type benchLink func(b *testing.B) (a, z benchEnd)

// benchNode is a Manager on a loopback TCP host that also serves the raw
// baseline protocol.
type benchNode struct {
	id  identity.Identifier
	h   host.Host
	m   *p2pconn.Manager
	raw chan network.Stream
}

const benchRawProtocol protocol.ID = "/bench/raw/1.0.0"

// newBenchNode starts a node; it does not register any cleanup, so it can be
// called from many goroutines.
func newBenchNode(cfg p2pconn.Config, table *resolver.Static) (*benchNode, error) {
	key, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	opts := append(p2pconn.HostOptions(cfg), libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, err
	}
	m, err := p2pconn.NewManager(h, table, cfg)
	if err != nil {
		_ = h.Close()
		return nil, err
	}
	n := &benchNode{id: m.ID(), h: h, m: m, raw: make(chan network.Stream, 4)}
	table.Add(n.id, h.Addrs()...)
	h.SetStreamHandler(benchRawProtocol, func(s network.Stream) {
		// The raw protocol's only handshake: echo the opener's first byte.
		var one [1]byte
		if _, err := io.ReadFull(s, one[:]); err != nil {
			_ = s.Reset()
			return
		}
		if _, err := s.Write(one[:]); err != nil {
			_ = s.Reset()
			return
		}
		select {
		case n.raw <- s:
		default:
			_ = s.Reset()
		}
	})
	return n, nil
}

func (n *benchNode) close() error {
	err := n.m.Close()
	for {
		select {
		case s := <-n.raw:
			_ = s.Reset()
			continue
		default:
		}
		break
	}
	return errors.Join(err, n.h.Close())
}

// benchNodes starts count nodes, a few at a time; cleanup closes them.
func benchNodes(b *testing.B, count int, cfg p2pconn.Config) []*benchNode {
	b.Helper()
	table := resolver.NewStatic()
	nodes := make([]*benchNode, count)
	errs := make([]error, count)
	benchParallel(count, 4, func(i int) { nodes[i], errs[i] = newBenchNode(cfg, table) })
	b.Cleanup(func() {
		benchParallel(count, 8, func(i int) {
			if nodes[i] != nil {
				_ = nodes[i].close()
			}
		})
	})
	require.NoError(b, errors.Join(errs...))
	return nodes
}

// benchParallel runs f(0) ... f(count-1) on workers goroutines and waits.
func benchParallel(count, workers int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, count) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range count {
		next <- i
	}
	close(next)
	wg.Wait()
}

// skipwire ends.

type skipwireEnd struct {
	ctx context.Context
	c   p2pconn.Connection
}

func (e skipwireEnd) send(msg []byte) error { return e.c.Send(e.ctx, msg) }
func (e skipwireEnd) recv() ([]byte, error) { return e.c.Next(e.ctx) }

// skipwireLink returns a benchLink whose Send and Next get a context that
// never ends: context.Background() if background, else a cancellable one
// (as most callers pass), which makes Send watch it.
func skipwireLink(background bool) benchLink {
	return func(b *testing.B) (benchEnd, benchEnd) {
		ctx := context.Background()
		if !background {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			b.Cleanup(cancel)
		}
		ca, cb := benchConnect(b, benchNodes(b, 2, p2pconn.Config{}))
		return skipwireEnd{ctx, ca}, skipwireEnd{ctx, cb}
	}
}

// benchConnect connects nodes[0] to nodes[1] and returns both ends.
func benchConnect(b *testing.B, nodes []*benchNode) (ca, cb p2pconn.Connection) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca, err := nodes[0].m.Connect(ctx, nodes[1].id)
	require.NoError(b, err)
	cb, err = nodes[1].m.Accept(ctx)
	require.NoError(b, err)
	return ca, cb
}

// Raw libp2p baseline: the same framing on a libp2p stream, no buffering.

type rawEnd struct {
	s   network.Stream
	mu  sync.Mutex // one frame is one locked write sequence
	buf []byte     // guarded by mu
	rb  [1]byte
}

func (e *rawEnd) send(msg []byte) error {
	var hdr [varint.MaxLenUvarint63]byte
	h := varint.PutUvarint(hdr[:], uint64(len(msg)))
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(msg) <= 8<<10 {
		e.buf = append(append(e.buf[:0], hdr[:h]...), msg...)
		_, err := e.s.Write(e.buf)
		return err
	}
	if _, err := e.s.Write(hdr[:h]); err != nil {
		return err
	}
	_, err := e.s.Write(msg)
	return err
}

func (e *rawEnd) ReadByte() (byte, error) {
	for {
		n, err := e.s.Read(e.rb[:])
		if n == 1 {
			return e.rb[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

func (e *rawEnd) recv() ([]byte, error) {
	n, err := varint.ReadUvarint(e)
	if err != nil {
		return nil, err
	}
	if n > p2pconn.DefaultMaxMessageSize {
		return nil, fmt.Errorf("frame of %d bytes over the limit", n)
	}
	msg := make([]byte, n)
	_, err = io.ReadFull(e.s, msg)
	return msg, err
}

// benchRawStream opens a raw stream from a to z: host.Connect, NewStream and
// a one-byte round trip. It returns both ends.
func benchRawStream(ctx context.Context, a, z *benchNode) (sa, sz network.Stream, err error) {
	if err := a.h.Connect(ctx, peer.AddrInfo{ID: z.h.ID(), Addrs: z.h.Addrs()}); err != nil {
		return nil, nil, err
	}
	sa, err = a.h.NewStream(ctx, z.h.ID(), benchRawProtocol)
	if err != nil {
		return nil, nil, err
	}
	one := [1]byte{1}
	if _, err := sa.Write(one[:]); err != nil {
		_ = sa.Reset()
		return nil, nil, err
	}
	if _, err := io.ReadFull(sa, one[:]); err != nil {
		_ = sa.Reset()
		return nil, nil, err
	}
	select {
	case sz = <-z.raw:
		return sa, sz, nil
	case <-ctx.Done():
		_ = sa.Reset()
		return nil, nil, ctx.Err()
	}
}

func rawLink(b *testing.B) (benchEnd, benchEnd) {
	nodes := benchNodes(b, 2, p2pconn.Config{})
	sa, sz, err := benchRawStream(ctxT(b, 20*time.Second), nodes[0], nodes[1])
	require.NoError(b, err)
	b.Cleanup(func() { _ = sa.Reset(); _ = sz.Reset() })
	return &rawEnd{s: sa}, &rawEnd{s: sz}
}

// Plain TCP baseline: 4-byte big-endian length, payload, flush per message.

type tcpEnd struct {
	mu sync.Mutex
	w  *bufio.Writer // guarded by mu
	r  *bufio.Reader
}

func (e *tcpEnd) send(msg []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(msg)))
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(hdr[:])
	_, _ = e.w.Write(msg)
	return e.w.Flush()
}

func (e *tcpEnd) recv() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(e.r, hdr[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	_, err := io.ReadFull(e.r, msg)
	return msg, err
}

func tcpLink(b *testing.B) (benchEnd, benchEnd) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	ca, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(b, err)
	cz, ok := <-accepted
	require.True(b, ok)
	b.Cleanup(func() { _ = ca.Close(); _ = cz.Close() })
	end := func(c net.Conn) *tcpEnd { return &tcpEnd{w: bufio.NewWriter(c), r: bufio.NewReader(c)} }
	return end(ca), end(cz)
}

// Loads.

// benchSyscalls returns the process's read and write system calls so far
// (Linux: /proc/self/io), or zeros where that is not available.
func benchSyscalls() (counts [2]uint64) {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return counts
	}
	for line := range strings.Lines(string(data)) {
		for i, key := range []string{"syscr: ", "syscw: "} {
			if v, ok := strings.CutPrefix(line, key); ok {
				counts[i], _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return counts
}

// benchReportSyscalls reports the read and write system calls per op since
// before, both ends of the connection together: a write syscall carries one
// TLS record with one or more yamux frames, so wsys/op below 1 on the
// sender means frames were coalesced.
func benchReportSyscalls(b *testing.B, before [2]uint64) {
	after := benchSyscalls()
	if after[1] == 0 {
		return
	}
	b.ReportMetric(float64(after[0]-before[0])/float64(b.N), "rsys/op")
	b.ReportMetric(float64(after[1]-before[1])/float64(b.N), "wsys/op")
}

// benchThroughput sends b.N messages of size bytes from a to z, split between
// senders goroutines, and stops the clock when z has received them all.
func benchThroughput(b *testing.B, open benchLink, size, senders int) {
	a, z := open(b)
	n := b.N
	got := make(chan error, 1)
	go func() {
		for i := range n {
			msg, err := z.recv()
			if err == nil && len(msg) != size {
				err = fmt.Errorf("%d bytes, want %d", len(msg), size)
			}
			if err != nil {
				got <- fmt.Errorf("receive %d of %d: %w", i, n, err)
				return
			}
		}
		got <- nil
	}()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	sys0 := benchSyscalls()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make([]error, senders)
	for s := range senders {
		count := n / senders
		if s < n%senders {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, size)
			for range count {
				if err := a.send(msg); err != nil {
					errs[s] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(b, errors.Join(errs...))
	require.NoError(b, <-got)
	b.StopTimer()
	benchReportSyscalls(b, sys0)
}

// benchRoundTrip times b.N exchanges of a 128 B request and its echo, and
// reports their median and 99th percentile.
func benchRoundTrip(b *testing.B, open benchLink) {
	var echoDone chan struct{}
	b.Cleanup(func() { // runs after the link's own cleanup has closed it
		if echoDone != nil {
			<-echoDone
		}
	})
	a, z := open(b)
	echoDone = make(chan struct{})
	go func() {
		defer close(echoDone)
		for {
			msg, err := z.recv()
			if err != nil {
				return
			}
			if err := z.send(msg); err != nil {
				return
			}
		}
	}()
	msg := make([]byte, 128)
	rtts := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	sys0 := benchSyscalls()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		require.NoError(b, a.send(msg))
		_, err := a.recv()
		require.NoError(b, err)
		rtts = append(rtts, time.Since(start))
	}
	b.StopTimer()
	benchReportSyscalls(b, sys0)
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

// BenchmarkLibp2pStream runs the same loads on a raw libp2p stream with the
// same framing, on the same kind of hosts: the limit skipwire can reach.
func BenchmarkLibp2pStream(b *testing.B) {
	b.Run("send128", func(b *testing.B) { benchThroughput(b, rawLink, 128, 1) })
	b.Run("send128x8senders", func(b *testing.B) { benchThroughput(b, rawLink, 128, 8) })
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
	benchConnect(b, nodes)
	m, id := nodes[0].m, nodes[1].id
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
	ctx := ctxT(b, 10*time.Minute)
	b.ReportAllocs()
	for range b.N {
		c, err := a.m.Connect(ctx, z.id)
		require.NoError(b, err)
		b.StopTimer()
		cz, err := z.m.Accept(ctx)
		require.NoError(b, err)
		require.NoError(b, errors.Join(c.Close(), cz.Close(), a.h.Network().ClosePeer(z.h.ID())))
		benchWaitApart(b, a, z)
		b.StartTimer()
	}
}

// benchRawConnectCold is BenchmarkConnectCold's baseline: host.Connect,
// NewStream on the raw protocol and a one-byte round trip.
func benchRawConnectCold(b *testing.B) {
	nodes := benchNodes(b, 2, p2pconn.Config{})
	a, z := nodes[0], nodes[1]
	ctx := ctxT(b, 10*time.Minute)
	b.ReportAllocs()
	for range b.N {
		sa, sz, err := benchRawStream(ctx, a, z)
		require.NoError(b, err)
		b.StopTimer()
		_ = sa.Reset()
		_ = sz.Reset()
		require.NoError(b, a.h.Network().ClosePeer(z.h.ID()))
		benchWaitApart(b, a, z)
		b.StartTimer()
	}
}

// benchWaitApart waits until a and z hold no libp2p and no skipwire
// connection to each other.
func benchWaitApart(b *testing.B, a, z *benchNode) {
	b.Helper()
	require.Eventually(b, func() bool {
		_, az := a.m.GetConnection(z.id)
		_, za := z.m.GetConnection(a.id)
		return !az && !za && len(a.h.Network().ConnsToPeer(z.h.ID())) == 0 && len(z.h.Network().ConnsToPeer(a.h.ID())) == 0
	}, 10*time.Second, 200*time.Microsecond)
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
	center, peers := nodes[0], nodes[1:]
	ctx := ctxT(b, 10*time.Minute)

	openSkipwire := func(i int) (func(), error) {
		c, err := center.m.Connect(ctx, peers[i].id)
		if err != nil {
			return nil, err
		}
		cz, err := peers[i].m.Accept(ctx)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		return func() {
			_ = c.Close()
			_ = cz.Close()
			_ = center.h.Network().ClosePeer(peers[i].h.ID())
		}, nil
	}
	openLibp2p := func(i int) (func(), error) {
		sa, sz, err := benchRawStream(ctx, center, peers[i])
		if err != nil {
			return nil, err
		}
		var wg sync.WaitGroup
		for _, s := range []network.Stream{sa, sz} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := &rawEnd{s: s}
				for {
					if _, err := e.recv(); err != nil {
						return
					}
				}
			}()
		}
		return func() {
			_ = sa.Reset()
			_ = sz.Reset()
			wg.Wait()
			_ = center.h.Network().ClosePeer(peers[i].h.ID())
		}, nil
	}

	// Warm-up: hold 1000 connections of each kind once, so that what the
	// first round fills and keeps (peerstores, identify's caches, maps that
	// grew to 1000 entries) is charged to neither.
	var target uint64 // the heap to wait for before a measurement; 0: until it stops shrinking
	tolerance := uint64(conns) << 10
	for _, open := range []func(int) (func(), error){openLibp2p, openSkipwire} {
		before := benchQuiesce(target, tolerance)
		closers, _, err := benchIdleOpen(peers, open)
		benchIdleClose(b, peers, closers)
		require.NoError(b, err)
		target = before.heap + tolerance
	}

	b.Run("skipwire", func(b *testing.B) { benchIdle(b, peers, openSkipwire, &target) })
	b.Run("libp2p", func(b *testing.B) { benchIdle(b, peers, openLibp2p, &target) })
}

// benchQuiesce waits until the live heap is at most target, or, when target
// is 0, until it has stopped shrinking for 1.5 s; at most 8 s either way.
// libp2p lets go of a closed connection's state (yamux session, TLS state) a
// few seconds after the close, so a snapshot taken at once would count that
// garbage in the next measurement's baseline.
func benchQuiesce(target, tolerance uint64) benchMemStats {
	benchSettle()
	s := benchMem()
	low, lowAt := s.heap, time.Now()
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); {
		if target > 0 && s.heap <= target || target == 0 && time.Since(lowAt) >= 1500*time.Millisecond {
			break
		}
		time.Sleep(250 * time.Millisecond)
		s = benchMem()
		if s.heap+tolerance < low {
			low, lowAt = s.heap, time.Now()
		}
	}
	return s
}

// benchIdleOpen opens one connection to each peer with open, 16 at a time,
// and returns the functions that close them.
func benchIdleOpen(peers []*benchNode, open func(i int) (close func(), err error)) ([]func(), time.Duration, error) {
	closers := make([]func(), len(peers))
	errs := make([]error, len(peers))
	start := time.Now()
	benchParallel(len(peers), 16, func(i int) { closers[i], errs[i] = open(i) })
	return closers, time.Since(start), errors.Join(errs...)
}

// benchIdleClose closes what benchIdleOpen opened and waits until no peer
// holds a libp2p connection.
func benchIdleClose(b *testing.B, peers []*benchNode, closers []func()) {
	benchParallel(len(closers), 16, func(i int) {
		if closers[i] != nil {
			closers[i]()
		}
	})
	for _, p := range peers {
		require.Eventually(b, func() bool { return len(p.h.Network().Conns()) == 0 }, 20*time.Second, time.Millisecond)
	}
}

// benchIdle measures the memory and goroutines one connection opened by open
// holds, then closes them all. It waits for the heap to be down to *target
// first, and sets *target for the next measurement.
func benchIdle(b *testing.B, peers []*benchNode, open func(i int) (close func(), err error), target *uint64) {
	if m, ok := benchIdleResults[b.Name()]; ok {
		// -benchtime Nx runs the function again: a second measurement would
		// see the first one's garbage; report the first.
		for unit, v := range m {
			b.ReportMetric(v, unit)
		}
		return
	}
	n := float64(len(peers))
	tolerance := uint64(len(peers)) << 10
	before := benchQuiesce(*target, tolerance)
	*target = before.heap + tolerance
	closers, took, err := benchIdleOpen(peers, open)
	b.Cleanup(func() { benchIdleClose(b, peers, closers) })
	require.NoError(b, err)
	benchSettle()
	after := benchMem()
	heap := (float64(after.heap) - float64(before.heap)) / n
	stack := (float64(after.stack) - float64(before.stack)) / n
	m := map[string]float64{
		"ns/op":           float64(took.Nanoseconds()) / n,
		"B/conn":          heap + stack,
		"heap-B/conn":     heap,
		"stack-B/conn":    stack,
		"goroutines/conn": float64(after.goroutines-before.goroutines) / n,
	}
	benchIdleResults[b.Name()] = m
	for unit, v := range m {
		b.ReportMetric(v, unit)
	}
}

// benchIdleResults holds each idle sub-benchmark's first measurement.
var benchIdleResults = map[string]map[string]float64{}

type benchMemStats struct {
	heap, stack uint64
	goroutines  int
}

// benchMem returns the live heap, stacks and goroutines after two GCs.
func benchMem() benchMemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return benchMemStats{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// benchSettle waits until the goroutine count has been stable for 100 ms
// (identify and the handshakes' helpers finishing), at most 5 s.
func benchSettle() {
	last, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(5 * time.Second); same < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
}
