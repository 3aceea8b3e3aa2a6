package network_test

import (
	"context"
	"flag"
	"sync"
	"testing"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
)

// BenchmarkRoundTrip compares a Request/Reply through network with a
// Send/Next round trip on the Connection beneath, 128-byte messages, on
// loopback TCP.
func BenchmarkRoundTrip(b *testing.B) {
	payload := make([]byte, 128)
	b.Run("connection", func(b *testing.B) {
		w := tcpEnv.world(b)
		ma, mb := w.manager(b, connConfig()), w.manager(b, connConfig())
		ctx := testContext(b, opTimeout)
		ca, err := ma.Connect(ctx, mb.ID())
		if err != nil {
			b.Fatal(err)
		}
		cb, err := mb.Accept(ctx)
		if err != nil {
			b.Fatal(err)
		}
		echo(b, cb)
		b.ResetTimer()
		for range b.N {
			if err := ca.Send(ctx, payload); err != nil {
				b.Fatal(err)
			}
			if _, err := ca.Next(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("network", func(b *testing.B) {
		ns := newNodes(b, tcpEnv.world(b), 2, network.Config{})
		newEcho(b, ns[1], "echo").drop()
		c := ns[0].n.Conduit("echo")
		ctx := testContext(b, opTimeout)
		if _, err := c.Request(ctx, ns[1].id, payload); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if _, err := c.Request(ctx, ns[1].id, payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOneWay compares 8 senders' 128-byte messages to one node through
// network with the same through the Connection beneath, on loopback TCP.
func BenchmarkOneWay(b *testing.B) {
	const senders = 8
	payload := make([]byte, 128)
	b.Run("connection", func(b *testing.B) {
		w := tcpEnv.world(b)
		ma, mb := w.manager(b, connConfig()), w.manager(b, connConfig())
		ctx := testContext(b, opTimeout)
		ca, err := ma.Connect(ctx, mb.ID())
		if err != nil {
			b.Fatal(err)
		}
		cb, err := mb.Accept(ctx)
		if err != nil {
			b.Fatal(err)
		}
		s0 := benchkit.ReadSyscalls()
		b.ResetTimer()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range b.N {
				if _, err := cb.Next(ctx); err != nil {
					return
				}
			}
		}()
		sendAll(b, senders, func() error { return ca.Send(ctx, payload) })
		<-done
		b.StopTimer()
		s0.Since(b.N).Report(b)
	})
	b.Run("network", func(b *testing.B) {
		ns := newNodes(b, tcpEnv.world(b), 2, network.Config{Window: *benchWindow, WindowLimit: *benchWindowLimit})
		var got sync.WaitGroup
		got.Add(b.N)
		register(b, ns[1], "in", network.ProcessorFunc(func(context.Context, network.Message) { got.Done() }))
		c := ns[0].n.Conduit("in")
		ctx := testContext(b, opTimeout)
		s0 := benchkit.ReadSyscalls()
		b.ResetTimer()
		sendAll(b, senders, func() error { return c.Send(ctx, ns[1].id, payload) })
		got.Wait()
		b.StopTimer()
		s0.Since(b.N).Report(b)
	})
}

// benchWindow is the Config.Window of BenchmarkOneWay/network, and its
// WindowLimit unless larger: the 8 senders share one sender's window on one
// channel, which grows from Window while the processor keeps up, and a
// window that cannot grow stalls them on credits (-window-limit=256: fixed
// windows of 256).
var (
	benchWindow      = flag.Int("window", network.DefaultWindow, "Config.Window of BenchmarkOneWay/network")
	benchWindowLimit = flag.Int("window-limit", 0, "Config.WindowLimit of BenchmarkOneWay/network (0: the default)")
)

// sendAll calls send b.N times from senders goroutines.
func sendAll(b *testing.B, senders int, send func() error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	left := b.N
	for range senders {
		wg.Go(func() {
			for {
				mu.Lock()
				if left == 0 {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				if err := send(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// echo answers every message of c with itself until c ends.
func echo(b *testing.B, c p2pconn.Connection) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			msg, err := c.Next(context.Background())
			if err != nil {
				return
			}
			if c.Send(context.Background(), msg) != nil {
				return
			}
		}
	})
	b.Cleanup(func() { _ = c.Close(); wg.Wait() })
}

// drop makes the echo processor stop recording the calls it sees.
func (e *echoProcessor) drop() { e.calls = nil }
