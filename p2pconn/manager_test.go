package p2pconn_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// TestConnectCancelledMidHandshake abandons a Connect after the acceptor's
// ACCEPT and before CONFIRM: neither side keeps a connection, and the next
// Connect works.
func TestConnectCancelledMidHandshake(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	a, b := c.node(testConfig()), c.node(testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel the caller's ctx, and wait until that reaches the attempt.
	defer p2pconn.SetTestHookBeforeConfirm(func(attempt context.Context) {
		cancel()
		<-attempt.Done()
	})()

	_, err := a.m.Connect(ctx, b.id)
	require.ErrorIs(t, err, context.Canceled)
	p2pconn.SetTestHookBeforeConfirm(nil)

	require.Equal(t, 0, a.m.ConnectionCount())
	// b dropped the stream: no connection, nothing to accept.
	require.Never(t, func() bool { return b.m.ConnectionCount() != 0 }, 200*time.Millisecond, 10*time.Millisecond)
	actx, acancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer acancel()
	_, err = b.m.Accept(actx)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	ctx2 := testkit.Context(t, 5*time.Second)
	ca, err := a.m.Connect(ctx2, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx2)
	require.NoError(t, err)
	exchange(t, ctx2, ca, cb, 10)
}

// TestConnectCancelledAtRandom cancels Connects at random points: both sides
// always agree on whether a connection exists.
func TestConnectCancelledAtRandom(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	a, b := c.node(testConfig()), c.node(testConfig())
	for trial := range trials(30, 300) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.N(3000))*time.Microsecond)
		_, _ = a.m.Connect(ctx, b.id)
		cancel()
		// A Connect cancelled after CONFIRM still leaves a (whole) connection.
		require.Eventually(t, func() bool {
			return a.m.ConnectionCount() == b.m.ConnectionCount()
		}, 5*time.Second, 5*time.Millisecond, "trial %d: a has %d, b has %d", trial, a.m.ConnectionCount(), b.m.ConnectionCount())
		require.NoError(t, a.m.CloseAll())
		require.Eventually(t, func() bool {
			return a.m.ConnectionCount() == 0 && b.m.ConnectionCount() == 0
		}, 5*time.Second, 5*time.Millisecond)
	}
	ctx := testkit.Context(t, 5*time.Second)
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Connect(ctx, a.id)
	require.NoError(t, err)
	exchange(t, ctx, ca, cb, 10)
}

// TestLargeAndSmallMessagesBothWays sends messages from 0 bytes to 1 MiB in
// both directions at once and checks content, order and boundaries.
func TestLargeAndSmallMessagesBothWays(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxMessageSize = 1 << 20
			c := newCluster(t, listen)
			a, b := c.node(cfg), c.node(cfg)
			ctx := testkit.Context(t, 60*time.Second)
			ca, err := a.m.Connect(ctx, b.id)
			require.NoError(t, err)
			cb, err := b.m.Accept(ctx)
			require.NoError(t, err)

			const n = 1000
			sizes := make([]int, n)
			for i := range sizes {
				switch {
				case i == 0:
					sizes[i] = 0
				case i == 1:
					sizes[i] = 1 << 20
				case i%100 == 0:
					sizes[i] = rand.N(1<<20 + 1)
				default:
					sizes[i] = rand.N(8 << 10)
				}
			}
			var wg sync.WaitGroup
			for _, pair := range [][2]p2pconn.Connection{{ca, cb}, {cb, ca}} {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i, size := range sizes {
						require.NoError(t, pair[0].Send(ctx, payload(i, size)))
					}
				}()
				go func() {
					defer wg.Done()
					for i, size := range sizes {
						msg, err := pair[1].Next(ctx)
						require.NoError(t, err)
						require.Equal(t, payload(i, size), msg, "message %d", i)
					}
				}()
			}
			wg.Wait()
		})
	}
}

// payload returns a deterministic message of size bytes for index i.
func payload(i, size int) []byte {
	b := make([]byte, size)
	seed := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
	r := rand.NewChaCha8(seed)
	_, _ = r.Read(b)
	return b
}

// TestCloseDeliversEverything closes right after sending: the remote reads
// every message, then a clean io.EOF.
func TestCloseDeliversEverything(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	a, b := c.node(testConfig()), c.node(testConfig())
	ctx := testkit.Context(t, 20*time.Second)
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx)
	require.NoError(t, err)
	const n = 300 // fits the receive queue and stream window of a remote that does not read yet
	for i := range n {
		require.NoError(t, ca.Send(ctx, payload(i, 512)))
	}
	start := time.Now()
	require.NoError(t, ca.Close())
	t.Logf("Close took %s with %d messages unread by the remote", time.Since(start), n)
	for i := range n {
		msg, err := cb.Next(ctx)
		require.NoError(t, err, "message %d", i)
		require.True(t, bytes.Equal(payload(i, 512), msg))
	}
	_, err = cb.Next(ctx)
	require.ErrorIs(t, err, io.EOF)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
	require.False(t, cb.IsAlive())
	require.Eventually(t, func() bool { return b.m.ConnectionCount() == 0 }, 5*time.Second, 5*time.Millisecond)

	_, err = ca.Next(ctx)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.ErrorIs(t, ca.Send(ctx, []byte("x")), p2pconn.ErrConnectionClosed)
	require.Empty(t, ca.RemoteAddr())
}

// TestHostClosedIsLoss closes the remote's host without closing its manager:
// the connection is lost, detected at once, and ends with the resume window
// (100 ms here).
func TestHostClosedIsLoss(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	cfg := testConfig()
	cfg.ResumeWindow = 100 * time.Millisecond
	a, b := c.node(cfg), c.node(testConfig())
	ctx := testkit.Context(t, 10*time.Second)
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, b.h.Close())
	select {
	case <-ca.Done():
	case <-ctx.Done():
		t.Fatal("loss not detected")
	}
	t.Logf("host close detected in %s", time.Since(start))
	_, err = ca.Next(ctx)
	require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.ErrorIs(t, err, io.EOF)
	require.ErrorIs(t, ca.Err(), p2pconn.ErrConnectionLost)
	require.Equal(t, 0, a.m.ConnectionCount())
}

func TestConnectErrors(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	a, b := c.node(testConfig()), c.node(testConfig())
	ctx := testkit.Context(t, 20*time.Second)

	t.Run("self", func(t *testing.T) {
		_, err := a.m.Connect(ctx, a.id)
		require.ErrorIs(t, err, p2pconn.ErrSelfConnect)
	})
	t.Run("not found", func(t *testing.T) {
		key, err := identity.GenerateKey()
		require.NoError(t, err)
		id, err := identity.FromPrivateKey(key)
		require.NoError(t, err)
		_, err = a.m.Connect(ctx, id)
		require.ErrorIs(t, err, resolver.ErrNotFound)
		require.Contains(t, err.Error(), id.Short())
		require.Contains(t, err.Error(), "attempt 1")
		require.NotContains(t, err.Error(), "attempt 2", "not found is not retried")
	})
	t.Run("resolver answers another peer", func(t *testing.T) {
		r := resolverFunc(func(context.Context, identity.Identifier) (peer.AddrInfo, error) {
			return peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}, nil
		})
		h := newHost(t, transports["tcp"])
		m, err := p2pconn.NewManager(h, r, testConfig())
		require.NoError(t, err)
		defer m.Close()
		_, err = m.Connect(ctx, b.id)
		require.ErrorIs(t, err, p2pconn.ErrPeerMismatch)
	})
	t.Run("another key at the address", func(t *testing.T) {
		key, err := identity.GenerateKey()
		require.NoError(t, err)
		id, err := identity.FromPrivateKey(key)
		require.NoError(t, err)
		c.table.Add(id, b.h.Addrs()...) // b listens there, not id
		_, err = a.m.Connect(ctx, id)
		require.ErrorIs(t, err, p2pconn.ErrPeerMismatch)
		require.NotContains(t, err.Error(), "attempt 2", "a mismatch is not retried")
	})
	t.Run("message too large", func(t *testing.T) {
		conn, err := a.m.Connect(ctx, b.id)
		require.NoError(t, err)
		err = conn.Send(ctx, make([]byte, p2pconn.DefaultMaxMessageSize+1))
		require.ErrorIs(t, err, p2pconn.ErrMessageTooLarge)
		require.True(t, conn.IsAlive())
		require.NoError(t, conn.Send(ctx, []byte("still fine")))
	})
	t.Run("manager closed", func(t *testing.T) {
		d := c.node(testConfig())
		require.NoError(t, d.m.Close())
		require.NoError(t, d.m.Close(), "Close is idempotent")
		_, err := d.m.Connect(ctx, a.id)
		require.ErrorIs(t, err, p2pconn.ErrManagerClosed)
		_, err = d.m.Accept(ctx)
		require.ErrorIs(t, err, p2pconn.ErrManagerClosed)
		_, err = a.m.Connect(ctx, d.id)
		require.ErrorIs(t, err, p2pconn.ErrRefused, "a closed manager's host refuses the protocol")
	})
}

// TestLimits: past MaxConnections, Connect fails with ErrTooManyConnections
// and a full node refuses inbound connections with ErrRefused.
func TestLimits(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	cfg := testConfig()
	cfg.MaxConnections = 2
	full := c.node(cfg)
	others := []*node{c.node(testConfig()), c.node(testConfig()), c.node(testConfig())}
	ctx := testkit.Context(t, 20*time.Second)
	for _, o := range others[:2] {
		_, err := full.m.Connect(ctx, o.id)
		require.NoError(t, err)
	}
	_, err := full.m.Connect(ctx, others[2].id)
	require.ErrorIs(t, err, p2pconn.ErrTooManyConnections)
	_, err = others[2].m.Connect(ctx, full.id)
	require.ErrorIs(t, err, p2pconn.ErrRefused)
	require.Contains(t, err.Error(), "limit")
	require.Equal(t, 2, full.m.ConnectionCount())
	// Closing one frees a slot.
	require.NoError(t, full.m.Disconnect(others[0].id))
	_, err = others[2].m.Connect(ctx, full.id)
	require.NoError(t, err)
}

// TestDifferentMaxMessageSize: each side sends up to the smaller limit and the
// connection survives a too-large Send.
func TestDifferentMaxMessageSize(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	small, large := testConfig(), testConfig()
	small.MaxMessageSize, large.MaxMessageSize = 1<<10, 64<<10
	a, b := c.node(small), c.node(large)
	ctx := testkit.Context(t, 10*time.Second)
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx)
	require.NoError(t, err)
	require.ErrorIs(t, cb.Send(ctx, make([]byte, 1<<10+1)), p2pconn.ErrMessageTooLarge)
	require.ErrorIs(t, ca.Send(ctx, make([]byte, 1<<10+1)), p2pconn.ErrMessageTooLarge)
	require.NoError(t, cb.Send(ctx, make([]byte, 1<<10)))
	msg, err := ca.Next(ctx)
	require.NoError(t, err)
	require.Len(t, msg, 1<<10)
	require.True(t, ca.IsAlive())
	require.True(t, cb.IsAlive())
}

func TestNewManagerErrors(t *testing.T) {
	h := newHost(t, transports["tcp"])
	_, err := p2pconn.NewManager(nil, nil, testConfig())
	require.Error(t, err)
	_, err = p2pconn.NewManager(h, nil, p2pconn.Config{RetryAttempts: -1})
	require.ErrorIs(t, err, p2pconn.ErrInvalidConfig)

	key, _, err := crypto.GenerateECDSAKeyPair(cryptoRand{})
	require.NoError(t, err)
	eh, err := libp2p.New(libp2p.Identity(key), libp2p.NoListenAddrs)
	require.NoError(t, err)
	defer eh.Close()
	_, err = p2pconn.NewManager(eh, nil, testConfig())
	require.ErrorIs(t, err, identity.ErrNotEd25519)
}

type resolverFunc func(context.Context, identity.Identifier) (peer.AddrInfo, error)

func (f resolverFunc) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	return f(ctx, id)
}

// cryptoRand adapts math/rand/v2 for key generation in tests.
type cryptoRand struct{}

func (cryptoRand) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return len(b), nil
}

var _ = errors.Is

// TestConnectToClosedManagerIsFinal: right after a peer's manager closed
// (its host still up and known to serve the protocol, so negotiation is
// lazy), a Connect fails with ErrRefused at the first attempt, and the
// failure is not remembered as one that may pass.
func TestConnectToClosedManagerIsFinal(t *testing.T) {
	for range 10 {
		c := newCluster(t, transports["tcp"])
		ctx := testkit.Context(t, 10*time.Second)
		a, b := c.node(testConfig()), c.node(testConfig())
		ca, _ := connected(t, ctx, a, b)
		require.NoError(t, b.m.Close())
		<-ca.Done()
		_, err := a.m.Connect(ctx, b.id)
		require.ErrorIs(t, err, p2pconn.ErrRefused)
		require.NotContains(t, err.Error(), "attempt 2", "a refusal is not retried")
		_, err = a.m.Connect(ctx, b.id, p2pconn.WithRetryAttempts(0))
		require.NotErrorIs(t, err, p2pconn.ErrUnreachable, "a refusal is not remembered as a failure that may pass")
	}
}
