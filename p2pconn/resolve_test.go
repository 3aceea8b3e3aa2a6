package p2pconn_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// movingPeer is a node that can restart on a new port with its key, as a
// peer whose address changed.
type movingPeer struct {
	t   testing.TB
	key crypto.PrivKey
	id  identity.Identifier
	h   host.Host
	m   *p2pconn.Manager
}

func newMovingPeer(t testing.TB) *movingPeer {
	t.Helper()
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	id, err := identity.FromPrivateKey(key)
	require.NoError(t, err)
	p := &movingPeer{t: t, key: key, id: id}
	p.start()
	return p
}

func (p *movingPeer) start() {
	p.t.Helper()
	p.h = testkit.NewHost(p.t, p.key, transports["tcp"], p2pconn.HostOptions(testConfig())...)
	m, err := p2pconn.NewManager(p.h, nil, testConfig())
	require.NoError(p.t, err)
	p.t.Cleanup(func() { _ = m.Close() })
	p.m = m
}

// move restarts the peer on a new port and returns its new addresses; the
// old port is closed.
func (p *movingPeer) move() {
	p.t.Helper()
	old := p.h.Addrs()
	require.NoError(p.t, p.m.Close())
	require.NoError(p.t, p.h.Close())
	p.start()
	require.NotEqual(p.t, old, p.h.Addrs())
}

// snapshotResolver remembers the first answer of its table for each
// Identifier until Invalidate, as any caching resolver does; it counts
// lookups and invalidations.
type snapshotResolver struct {
	table *resolver.Static

	mu          sync.Mutex
	snap        map[identity.Identifier]peer.AddrInfo
	resolves    int
	invalidated int
}

func newSnapshotResolver(table *resolver.Static) *snapshotResolver {
	return &snapshotResolver{table: table, snap: make(map[identity.Identifier]peer.AddrInfo)}
}

func (r *snapshotResolver) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resolves++
	if info, ok := r.snap[id]; ok {
		return info, nil
	}
	info, err := r.table.Resolve(ctx, id)
	if err == nil {
		r.snap[id] = info
	}
	return info, err
}

func (r *snapshotResolver) Invalidate(id identity.Identifier) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.invalidated++
	delete(r.snap, id)
}

func (r *snapshotResolver) counts() (resolves, invalidated int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resolves, r.invalidated
}

// managerWith starts a manager with cfg resolving through r.
func managerWith(t testing.TB, r resolver.AddressResolver, cfg p2pconn.Config) (*p2pconn.Manager, host.Host) {
	t.Helper()
	h := newHost(t, transports["tcp"])
	m, err := p2pconn.NewManager(h, r, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m, h
}

// TestConnectInvalidatesCachingResolver: a peer restarts on a new port and
// the table is updated; the caching resolver still has the old address. The
// attempt that fails there invalidates it, and the next attempt resolves
// afresh and connects.
func TestConnectInvalidatesCachingResolver(t *testing.T) {
	ctx := testkit.Context(t, time.Minute)
	table := resolver.NewStatic()
	r := newSnapshotResolver(table)
	cfg := testConfig()
	cfg.RetryAttempts = 1
	m, _ := managerWith(t, r, cfg)
	b := newMovingPeer(t)
	table.Add(b.id, b.h.Addrs()...)
	old, err := m.Connect(ctx, b.id)
	require.NoError(t, err)

	b.move()
	table.Remove(b.id)
	table.Add(b.id, b.h.Addrs()...)
	<-old.Done()
	resolves, invalidated := r.counts()
	require.Zero(t, invalidated)
	conn, err := m.Connect(ctx, b.id)
	require.NoError(t, err, "the second attempt resolves afresh")
	require.Contains(t, conn.RemoteAddr(), b.h.Addrs()[0].String())
	r2, inv := r.counts()
	require.Equal(t, 1, inv, "invalidated once, after the failed dial")
	require.Equal(t, resolves+2, r2, "resolved for each attempt")
}

// TestConnectKeepsCacheOnRefusalOrMismatch: a dial that reached the peer
// the resolver named, which refused, or that found another peer at the
// address, does not invalidate the resolver.
func TestConnectKeepsCacheOnRefusalOrMismatch(t *testing.T) {
	ctx := testkit.Context(t, time.Minute)
	cfg := testConfig()
	cfg.RetryAttempts = 3

	t.Run("refused", func(t *testing.T) {
		table := resolver.NewStatic()
		r := newSnapshotResolver(table)
		m, _ := managerWith(t, r, cfg)
		bare := testkit.NewHost(t, nil, transports["tcp"]) // no skipwire manager
		id, err := identity.FromPeerID(bare.ID())
		require.NoError(t, err)
		table.Add(id, bare.Addrs()...)
		_, err = m.Connect(ctx, id)
		require.ErrorIs(t, err, p2pconn.ErrRefused)
		t.Log(err)
		requireReadable(t, err, 1)
		resolves, invalidated := r.counts()
		require.Equal(t, 1, resolves, "a refusal is not retried")
		require.Zero(t, invalidated)
	})
	t.Run("another peer at the address", func(t *testing.T) {
		table := resolver.NewStatic()
		r := newSnapshotResolver(table)
		m, _ := managerWith(t, r, cfg)
		other := newMovingPeer(t)
		id := newMovingPeer(t).id
		table.Add(id, other.h.Addrs()...)
		_, err := m.Connect(ctx, id)
		require.ErrorIs(t, err, p2pconn.ErrPeerMismatch)
		t.Log(err)
		requireReadable(t, err, 1)
		resolves, invalidated := r.counts()
		require.Equal(t, 1, resolves, "a mismatch is not retried")
		require.Zero(t, invalidated)
	})
}

// TestConnectAfterMoveWithCache: the documented setup, a Cache with a long
// TTL in front of the table, reaches a peer that moved at the next Connect,
// and every one after it.
func TestConnectAfterMoveWithCache(t *testing.T) {
	ctx := testkit.Context(t, time.Minute)
	table := resolver.NewStatic()
	m, _ := managerWith(t, resolver.NewCache(table, 10*time.Minute, 5*time.Second), testConfig())
	b := newMovingPeer(t)
	table.Add(b.id, b.h.Addrs()...)
	old, err := m.Connect(ctx, b.id)
	require.NoError(t, err)

	b.move()
	table.Remove(b.id)
	table.Add(b.id, b.h.Addrs()...)
	<-old.Done()
	for i := range 5 {
		conn, err := m.Connect(ctx, b.id)
		require.NoError(t, err, "Connect %d after the move", i+1)
		require.NoError(t, m.Disconnect(b.id))
		<-conn.Done()
	}
}

// TestChainFallsBackWithinOneAttempt: in Chain(peerstore, table), the
// peerstore still holds the address of a peer that moved. With no retry at
// all, the same attempt dials the table's answer once the peerstore's fails,
// with or without a Cache in front.
func TestChainFallsBackWithinOneAttempt(t *testing.T) {
	for _, cached := range []bool{false, true} {
		name := map[bool]string{false: "chain", true: "cache of chain"}[cached]
		t.Run(name, func(t *testing.T) {
			ctx := testkit.Context(t, time.Minute)
			table := resolver.NewStatic()
			h := newHost(t, transports["tcp"])
			var r resolver.AddressResolver = resolver.NewChain(resolver.NewPeerstore(h.Peerstore()), table)
			if cached {
				r = resolver.NewCache(r, 10*time.Minute, 5*time.Second)
			}
			cfg := testConfig()
			cfg.RetryAttempts = 0
			m, err := p2pconn.NewManager(h, r, cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = m.Close() })
			b := newMovingPeer(t)
			table.Add(b.id, b.h.Addrs()...)
			old, err := m.Connect(ctx, b.id)
			require.NoError(t, err)

			b.move()
			table.Remove(b.id)
			table.Add(b.id, b.h.Addrs()...)
			<-old.Done()
			// With no retry, a Connect that found the old libp2p connection
			// before the host noticed it closed would fail on it: this test
			// is about addresses, so it waits for the host to notice.
			require.Eventually(t, func() bool { return len(h.Network().ConnsToPeer(b.id.PeerID())) == 0 }, 10*time.Second, time.Millisecond)
			require.NotEmpty(t, h.Peerstore().Addrs(b.id.PeerID()), "the peerstore remembers the old address")
			for i := range 3 {
				conn, err := m.Connect(ctx, b.id)
				require.NoError(t, err, "Connect %d after the move", i+1)
				require.Contains(t, conn.RemoteAddr(), b.h.Addrs()[0].String())
				require.NoError(t, m.Disconnect(b.id))
				<-conn.Done()
			}
		})
	}
}

// TestPeerMismatchBehindAnyResolver: a resolver answering for another peer
// fails Connect with ErrPeerMismatch at once, never retried, whatever wraps
// it.
func TestPeerMismatchBehindAnyResolver(t *testing.T) {
	ctx := testkit.Context(t, time.Minute)
	other := newMovingPeer(t)
	target := newMovingPeer(t).id
	for name, wrap := range map[string]func(resolver.AddressResolver) resolver.AddressResolver{
		"bare": func(r resolver.AddressResolver) resolver.AddressResolver { return r },
		"cache": func(r resolver.AddressResolver) resolver.AddressResolver {
			return resolver.NewCache(r, time.Minute, time.Second)
		},
		"chain": func(r resolver.AddressResolver) resolver.AddressResolver { return resolver.NewChain(r) },
		"cache of chain": func(r resolver.AddressResolver) resolver.AddressResolver {
			return resolver.NewCache(resolver.NewChain(r), time.Minute, time.Second)
		},
	} {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			calls := 0
			liar := resolverFunc(func(context.Context, identity.Identifier) (peer.AddrInfo, error) {
				mu.Lock()
				defer mu.Unlock()
				calls++
				return peer.AddrInfo{ID: other.h.ID(), Addrs: other.h.Addrs()}, nil
			})
			cfg := testConfig()
			cfg.RetryAttempts = 4
			m, _ := managerWith(t, wrap(liar), cfg)
			_, err := m.Connect(ctx, target)
			require.ErrorIs(t, err, p2pconn.ErrPeerMismatch)
			require.ErrorIs(t, err, resolver.ErrPeerMismatch)
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, 1, calls, "not retried: %v", err)
			requireReadable(t, err, 1)
		})
	}
}

// TestConnectErrorsRead checks the text of Connect's errors: one line per
// attempt, the peer named, no word said twice in a row and no "resolve ...
// resolver" stutter.
func TestConnectErrorsRead(t *testing.T) {
	ctx := testkit.Context(t, time.Minute)
	h := newHost(t, transports["tcp"])
	table := resolver.NewStatic()
	unknown := newMovingPeer(t).id

	t.Run("not found by a chain", func(t *testing.T) {
		m, _ := managerWith(t, resolver.NewCache(resolver.NewChain(table, resolver.NewPeerstore(h.Peerstore())), time.Minute, time.Second), testConfig())
		_, err := m.Connect(ctx, unknown)
		require.ErrorIs(t, err, resolver.ErrNotFound)
		t.Log(err)
		requireReadable(t, err, 1)
	})
	t.Run("dial refused, retried", func(t *testing.T) {
		gone := newMovingPeer(t)
		table.Add(gone.id, gone.h.Addrs()...)
		require.NoError(t, gone.m.Close())
		require.NoError(t, gone.h.Close())
		cfg := testConfig()
		cfg.RetryAttempts = 2
		m, _ := managerWith(t, table, cfg)
		_, err := m.Connect(ctx, gone.id)
		require.Error(t, err)
		t.Log(err)
		requireReadable(t, err, 3)
	})
}

// requireReadable checks that err reads as lines lines, one per attempt,
// each naming the attempt, without stutter.
func requireReadable(t testing.TB, err error, lines int) {
	t.Helper()
	text := err.Error()
	require.Len(t, strings.Split(text, "\n"), lines, "one line per attempt:\n%s", text)
	for _, line := range strings.Split(text, "\n") {
		require.Contains(t, line, "attempt ", "each line names its attempt:\n%s", text)
		words := strings.Fields(line)
		for i := range words {
			words[i] = strings.Trim(words[i], ":;,")
		}
		for i := 1; i < len(words); i++ {
			require.NotEqual(t, words[i-1], words[i], "word said twice in a row in %q", line)
		}
		require.NotRegexp(t, `resolve .*resolver`, line)
	}
}
