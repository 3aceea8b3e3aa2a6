package p2pconn_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// nextDisconnect returns the next EventDisconnected of events for peer id.
func nextDisconnect(t testing.TB, ctx context.Context, events <-chan p2pconn.Event, id identity.Identifier) p2pconn.Event {
	t.Helper()
	for {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "subscription ended")
			if ev.Kind == p2pconn.EventDisconnected && ev.Peer == id {
				return ev
			}
		case <-ctx.Done():
			t.Fatal("no disconnected event")
		}
	}
}

// TestPeerLeft: a node whose manager closes is seen as "left" by its peers
// (Err, Next after the buffered messages, the disconnected event), at once;
// a Disconnect is a plain clean close, and so is the close of a version-1
// node, which cannot say it left.
func TestPeerLeft(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			ctx := testkit.Context(t, 30*time.Second)
			b := c.node(testConfig())
			events, cancel := b.m.Subscribe()
			defer cancel()

			// A Disconnect is not a departure.
			a := c.node(testConfig())
			ca, cb := connected(t, ctx, a, b)
			require.NoError(t, a.m.Disconnect(b.id))
			<-cb.Done()
			require.ErrorIs(t, cb.Err(), p2pconn.ErrConnectionClosed)
			require.NotErrorIs(t, cb.Err(), p2pconn.ErrPeerLeft)
			require.NotErrorIs(t, nextDisconnect(t, ctx, events, a.id).Err, p2pconn.ErrPeerLeft)
			require.NotErrorIs(t, ca.Err(), p2pconn.ErrPeerLeft)

			// The manager's Close is.
			ca, cb = connected(t, ctx, a, b)
			l := newLedger()
			sendAll(t, ctx, ca, l, 1, 5, 100)
			closed := time.Now()
			require.NoError(t, a.m.Close())
			<-cb.Done()
			t.Logf("departure seen %s after Close began", time.Since(closed).Round(time.Microsecond))
			for _, err := range []error{cb.Err(), nextDisconnect(t, ctx, events, a.id).Err} {
				require.ErrorIs(t, err, p2pconn.ErrPeerLeft)
				require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
				require.ErrorIs(t, err, io.EOF)
				require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
			}
			err := readAll(t, ctx, cb, l, 0)
			require.ErrorIs(t, err, p2pconn.ErrPeerLeft, "Next ends with the departure")
			_, _, got := l.counts()
			require.Equal(t, 5, got, "the messages sent before leaving")

			// A version-1 node leaves as a plain close.
			old := c.node(testConfig())
			p2pconn.SpeakVersion1(old.m)
			_, cb = connected(t, ctx, old, b)
			require.NoError(t, old.m.Close())
			<-cb.Done()
			require.ErrorIs(t, cb.Err(), p2pconn.ErrConnectionClosed)
			require.NotErrorIs(t, cb.Err(), p2pconn.ErrPeerLeft)
			require.NotErrorIs(t, cb.Err(), p2pconn.ErrConnectionLost)
		})
	}
}

// TestProbe: Probe measures a round trip on the live connection and never
// dials.
func TestProbe(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 10*time.Second)
	a, b, d := c.node(testConfig()), c.node(testConfig()), c.node(testConfig())
	connected(t, ctx, a, b)
	rtt, err := a.m.Probe(ctx, b.id)
	require.NoError(t, err)
	require.Positive(t, rtt)
	t.Logf("probe round trip %s", rtt)

	_, err = a.m.Probe(ctx, d.id)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.Zero(t, libp2pConns(a, d), "Probe never dials")

	require.NoError(t, a.m.Disconnect(b.id))
	_, err = a.m.Probe(ctx, b.id)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
}

// idleConfig closes connections idle for 150 ms.
func idleConfig() p2pconn.Config {
	cfg := testConfig()
	cfg.IdleTimeout = 150 * time.Millisecond
	return cfg
}

// TestIdleTimeout: an idle connection is closed cleanly on both sides (not
// lost, not "left"); a protected peer's connection, one with unread
// messages, and a busy one are kept.
func TestIdleTimeout(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			ctx := testkit.Context(t, 30*time.Second)
			a := c.node(idleConfig())
			b, p, u := c.node(testConfig()), c.node(testConfig()), c.node(testConfig())
			a.m.Protect(p.id)
			ab, ba := connected(t, ctx, a, b)
			ap, _ := connected(t, ctx, a, p)
			au, ua := connected(t, ctx, a, u)
			require.NoError(t, ua.Send(ctx, []byte("unread")))

			<-ab.Done()
			require.ErrorIs(t, ab.Err(), p2pconn.ErrConnectionClosed)
			require.NotErrorIs(t, ab.Err(), p2pconn.ErrConnectionLost)
			_, err := ba.Next(ctx)
			require.ErrorIs(t, err, io.EOF)
			require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
			require.NotErrorIs(t, err, p2pconn.ErrPeerLeft)
			require.False(t, ba.IsAlive())

			// Three idle periods later the others are still there.
			time.Sleep(3 * idleConfig().IdleTimeout) // the span under test, not a wait for a state
			require.True(t, ap.IsAlive(), "a protected peer is never closed idle")
			require.True(t, au.IsAlive(), "a connection with unread messages is not idle")
			msg, err := au.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, "unread", string(msg))
			<-au.Done() // read: now it goes

			a.m.Unprotect(p.id)
			<-ap.Done()
			require.Zero(t, a.m.ConnectionCount())
		})
	}
}

// TestIdleCloseLosesNothing: remotes send now and then, at about the idle
// timeout, reconnecting when a Send fails, so that their Sends race the idle
// close again and again: every Send that returned nil is delivered once, in
// order, and no failed one arrives. 2 s here, a minute in make soak.
func TestIdleCloseLosesNothing(t *testing.T) {
	span := 2 * time.Second
	if soak() {
		span = time.Minute
	}
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			ctx := testkit.Context(t, 60*time.Second)
			a := c.node(idleConfig())
			l := newLedger()
			var received sync.WaitGroup
			var mu sync.Mutex
			var arrived [][]byte
			late := 0 // messages read from a connection already closed idle
			acceptCtx, stopAccept := context.WithCancel(ctx)
			defer stopAccept()
			go func() {
				for {
					conn, err := a.m.Accept(acceptCtx)
					if err != nil {
						return
					}
					received.Add(1)
					go func() {
						defer received.Done()
						for {
							msg, err := conn.Next(ctx)
							if err != nil {
								return
							}
							// Checked against the ledger at the end: a message
							// may arrive before its Send has returned.
							mu.Lock()
							arrived = append(arrived, msg)
							if !conn.IsAlive() {
								late++
							}
							mu.Unlock()
						}
					}()
				}
			}()

			send := func(b *node, i int) error {
				end := time.Now().Add(span)
				for seq := uint32(0); time.Now().Before(end); seq++ {
					conn, err := b.m.Connect(ctx, a.id)
					if err != nil {
						return err
					}
					err = conn.Send(ctx, message(uint32(i), seq, 64))
					l.sent(uint32(i), seq, err)
					if err != nil && !errors.Is(err, p2pconn.ErrConnectionClosed) {
						return err
					}
					// Around the idle timeout, give or take the health loop's tick.
					time.Sleep(idleConfig().IdleTimeout - 40*time.Millisecond + rand.N(80*time.Millisecond))
				}
				conn, err := b.m.Connect(ctx, a.id)
				if err != nil {
					return err
				}
				return conn.Close()
			}
			// Three senders, so that Sends meet idle closes more often.
			senders := []*node{c.node(testConfig()), c.node(testConfig()), c.node(testConfig())}
			errs := make([]error, len(senders))
			testkit.ForEach(len(senders), len(senders), func(i int) { errs[i] = send(senders[i], i) })
			require.NoError(t, errors.Join(errs...))
			ok, failed, _ := l.counts()
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(arrived) >= ok
			}, 10*time.Second, 10*time.Millisecond, "every message whose Send returned nil")
			stopAccept()
			require.NoError(t, a.m.Close())
			received.Wait()
			for _, msg := range arrived {
				require.NoError(t, l.arrived(msg))
			}
			_, _, got := l.counts()
			t.Logf("%d Sends returned nil, %d arrived (%d after this side closed idle), %d failed (closed idle under them), %d lost", ok, got, late, failed, ok-got)
			require.Equal(t, ok, got)
		})
	}
}

// TestEvictAtLimit: at MaxConnections a new connection, outbound or
// inbound, closes the least recently used unprotected one, which loses
// nothing; when every connection is protected, Connect is refused.
func TestEvictAtLimit(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			ctx := testkit.Context(t, 30*time.Second)
			cfg := testConfig()
			cfg.MaxConnections = 2
			cfg.EvictAtLimit = true
			a := c.node(cfg)
			b, d, e, f := c.node(testConfig()), c.node(testConfig()), c.node(testConfig()), c.node(testConfig())

			ab, ba := connected(t, ctx, a, b)
			ad, _ := connected(t, ctx, a, d)
			l := newLedger()
			sendAll(t, ctx, ba, l, 1, 10, 100) // b's messages, unread by a
			require.NoError(t, ad.Send(ctx, []byte("d is in use")))

			// b is the least recently used: a's own use counts, not the remote's
			// unread traffic... except that b's messages arrived after d's
			// connection was made, so use d more recently still.
			require.NoError(t, ad.Send(ctx, []byte("d again")))
			a.m.Protect(d.id)
			ae, err := a.m.Connect(ctx, e.id)
			require.NoError(t, err)
			<-ab.Done()
			require.NotErrorIs(t, ab.Err(), p2pconn.ErrConnectionLost)
			require.NoError(t, drainUntil(ctx, ab, l, 10), "b's messages sent before the eviction stay readable")
			_, err = ba.Next(ctx)
			require.ErrorIs(t, err, io.EOF, "b sees a clean close")
			require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
			require.True(t, ad.IsAlive(), "a protected connection is never evicted")
			require.LessOrEqual(t, a.m.ConnectionCount(), 2)

			// Inbound: f's Connect evicts e.
			fa, err := f.m.Connect(ctx, a.id)
			require.NoError(t, err)
			<-ae.Done()
			require.NoError(t, fa.Send(ctx, []byte("hello from f")))
			af, err := a.m.Accept(ctx)
			for err == nil && af.RemoteID() != f.id {
				af, err = a.m.Accept(ctx)
			}
			require.NoError(t, err)
			msg, err := af.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, "hello from f", string(msg))

			// Everything protected: refused.
			a.m.Protect(f.id)
			_, err = a.m.Connect(ctx, b.id)
			require.ErrorIs(t, err, p2pconn.ErrTooManyConnections)
			require.Equal(t, 2, a.m.ConnectionCount())
		})
	}
}

// TestUnreachableFor: a Connect to a peer that just died fails at the first
// dial, the next fail-fast Connects fail at once with *UnreachableError
// without dialing, and the memory ends with its window, a libp2p connection
// from the peer, or IgnoreRecentFailure; a Connect with retries waits out
// the window and reaches a restarted peer.
func TestUnreachableFor(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 30*time.Second)
	cfg := testConfig()
	cfg.UnreachableFor = 500 * time.Millisecond
	cfg.ResumeWindow = 200 * time.Millisecond // the killed node comes back as a new process
	a := c.node(cfg)
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	bh := testkit.NewHost(t, key, transports["tcp"], p2pconn.HostOptions(testConfig())...)
	port := bh.Addrs()[0]
	bm, err := p2pconn.NewManager(bh, nil, testConfig())
	require.NoError(t, err)
	c.table.Add(bm.ID(), bh.Addrs()...)
	old, err := a.m.Connect(ctx, bm.ID())
	require.NoError(t, err)

	require.NoError(t, bh.Close()) // a crash: no goodbye
	require.NoError(t, bm.Close())
	<-old.Done()
	died := time.Now()
	_, err = a.m.Connect(ctx, bm.ID(), p2pconn.WithRetryAttempts(0))
	require.Error(t, err)
	require.NotErrorIs(t, err, p2pconn.ErrUnreachable)
	t.Logf("first Connect failed %s after the connection died", time.Since(died).Round(time.Microsecond))

	start := time.Now()
	_, err = a.m.Connect(ctx, bm.ID(), p2pconn.WithRetryAttempts(0))
	t.Logf("remembered: failed in %s", time.Since(start).Round(time.Microsecond))
	var ue *p2pconn.UnreachableError
	require.ErrorAs(t, err, &ue)
	require.ErrorIs(t, err, p2pconn.ErrUnreachable)
	require.Equal(t, bm.ID(), ue.Peer)
	require.Error(t, ue.Cause)
	require.False(t, ue.LastTried.IsZero())

	_, err = a.m.Connect(ctx, bm.ID(), p2pconn.WithRetryAttempts(0), p2pconn.IgnoreRecentFailure())
	require.Error(t, err)
	require.NotErrorIs(t, err, p2pconn.ErrUnreachable, "IgnoreRecentFailure dials")

	// The peer restarts on the same key and port; a's next fail-fast Connect
	// is still within the window, but a Connect with retries waits it out.
	bh2 := testkit.NewHost(t, key, port.String(), p2pconn.HostOptions(testConfig())...)
	bm2, err := p2pconn.NewManager(bh2, nil, testConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = bm2.Close() })
	_, err = a.m.Connect(ctx, bm2.ID(), p2pconn.WithRetryAttempts(0))
	require.ErrorIs(t, err, p2pconn.ErrUnreachable)
	start = time.Now()
	conn, err := a.m.Connect(ctx, bm2.ID())
	require.NoError(t, err)
	t.Logf("a Connect with retries reached the restarted peer in %s", time.Since(start).Round(time.Millisecond))
	require.NoError(t, a.m.Disconnect(bm2.ID()))
	<-conn.Done()

	// A failure is forgotten as soon as the peer connects to this host.
	_, err = a.m.Connect(ctx, c.node(testConfig()).id) // an unrelated peer, to show nothing leaks
	require.NoError(t, err)
	require.NoError(t, bh2.Close())
	require.NoError(t, bm2.Close())
	require.Eventually(t, func() bool {
		_, err := a.m.Connect(ctx, bm2.ID(), p2pconn.WithRetryAttempts(0))
		return errors.Is(err, p2pconn.ErrUnreachable)
	}, 5*time.Second, 10*time.Millisecond)
	bh3 := testkit.NewHost(t, key, port.String(), p2pconn.HostOptions(testConfig())...)
	bm3, err := p2pconn.NewManager(bh3, nil, testConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = bm3.Close() })
	require.NoError(t, bh3.Connect(ctx, peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}))
	_, err = a.m.Connect(ctx, bm3.ID(), p2pconn.WithRetryAttempts(0))
	require.NoError(t, err, "a libp2p connection from the peer clears the memory")
}

// TestEvictionUnderLoad: nodes with a small MaxConnections and EvictAtLimit
// send to random peers, so that connections are evicted all the time on
// both sides: no node ever holds more than MaxConnections, every Send that
// returned nil is delivered once and in order, and the ring neighbours each
// node protects are never evicted. 12 nodes with 4 connections for 3 s
// here; 64 nodes with 16 for 30 s in make soak.
func TestEvictionUnderLoad(t *testing.T) {
	n, limit, span := 12, 4, 3*time.Second
	if soak() {
		n, limit, span = 64, 16, 30*time.Second
	}
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, span+time.Minute)
	cfg := testConfig()
	cfg.MaxConnections = limit
	cfg.EvictAtLimit = true
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = c.node(cfg)
	}

	// Every node reads every connection it gets, whoever opened it.
	var mu sync.Mutex
	var arrived [][]byte
	var readers sync.WaitGroup
	var closes atomic.Int64 // connections closed, counted at both ends
	for _, nd := range nodes {
		events, cancel := nd.m.Subscribe()
		t.Cleanup(cancel)
		readers.Add(1)
		go func() {
			defer readers.Done()
			for ev := range events {
				if ev.Kind == p2pconn.EventDisconnected {
					closes.Add(1)
				}
				if ev.Kind != p2pconn.EventConnected {
					continue
				}
				readers.Add(1)
				go func() {
					defer readers.Done()
					for {
						msg, err := ev.Conn.Next(ctx)
						if err != nil {
							return
						}
						mu.Lock()
						arrived = append(arrived, msg)
						mu.Unlock()
					}
				}()
			}
		}()
	}

	// Each node protects its two ring neighbours and connects to them.
	neighbours := make([][]p2pconn.Connection, n)
	for i, nd := range nodes {
		for _, j := range []int{(i + 1) % n, (i + n - 1) % n} {
			nd.m.Protect(nodes[j].id)
		}
	}
	for i, nd := range nodes {
		for _, j := range []int{(i + 1) % n, (i + n - 1) % n} {
			conn, err := nd.m.Connect(ctx, nodes[j].id)
			require.NoError(t, err)
			neighbours[i] = append(neighbours[i], conn)
		}
	}

	l := newLedger()
	l.unordered = true // to several peers, over successive connections
	var over, refused sync.Map
	errs := make([]error, n)
	testkit.ForEach(n, n, func(i int) {
		nd := nodes[i]
		end := time.Now().Add(span)
		for seq := uint32(0); time.Now().Before(end); {
			to := nodes[rand.N(n)]
			if to == nd {
				continue
			}
			conn, err := nd.m.Connect(ctx, to.id)
			if err != nil {
				if !errors.Is(err, p2pconn.ErrRefused) && !errors.Is(err, p2pconn.ErrTooManyConnections) {
					errs[i] = err
					return
				}
				refused.Store(i, true)
				continue
			}
			err = conn.Send(ctx, message(uint32(i), seq, 100))
			l.sent(uint32(i), seq, err)
			seq++
			if err != nil && !errors.Is(err, p2pconn.ErrConnectionClosed) {
				errs[i] = err
				return
			}
			if k := nd.m.ConnectionCount(); k > limit {
				over.Store(i, k)
			}
		}
	})
	require.NoError(t, errors.Join(errs...))
	over.Range(func(k, v any) bool {
		t.Errorf("node %d held %d connections, limit %d", k, v, limit)
		return true
	})
	ok, failed, _ := l.counts()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(arrived) >= ok
	}, 30*time.Second, 10*time.Millisecond, "every message whose Send returned nil: %d returned nil, %d arrived", ok, func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(arrived)
	}())
	for i := range nodes {
		for _, conn := range neighbours[i] {
			require.True(t, conn.IsAlive(), "node %d: a protected neighbour's connection was closed: %v", i, conn.Err())
		}
	}
	for _, nd := range nodes {
		require.NoError(t, nd.m.Close())
	}
	readers.Wait()
	for _, msg := range arrived {
		require.NoError(t, l.arrived(msg))
	}
	_, _, got := l.counts()
	t.Logf("%d nodes, MaxConnections %d, %s: %d connection ends seen by either side, %d Sends returned nil, %d arrived, %d failed (evicted under them), %d lost",
		n, limit, span, closes.Load(), ok, got, failed, ok-got)
	require.Equal(t, ok, got)
}
