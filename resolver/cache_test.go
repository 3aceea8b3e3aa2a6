package resolver

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

const (
	testTTL         = time.Minute
	testNegativeTTL = time.Second
)

// newTestCache returns a Cache in front of r whose clock the test moves.
func newTestCache(t testing.TB, r AddressResolver) (*Cache, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	c := NewCache(r, testTTL, testNegativeTTL)
	c.now = clock.Now
	return c, clock
}

// waiters returns how many callers wait for the lookup of id in progress.
func (c *Cache) waiters(id identity.Identifier) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[id]; f != nil {
		return f.waiters
	}
	return 0
}

func TestCacheHitAndExpiry(t *testing.T) {
	ctx := context.Background()
	id := newID(t)
	under := fixed(answer(t, id, "/ip4/10.0.0.1/tcp/1"), nil)
	c, clock := newTestCache(t, under)

	for range 3 {
		info, err := c.Resolve(ctx, id)
		require.NoError(t, err)
		require.Equal(t, answer(t, id, "/ip4/10.0.0.1/tcp/1"), info)
	}
	require.EqualValues(t, 1, under.calls.Load())

	// Callers get copies: changing one does not change the cache.
	info, _ := c.Resolve(ctx, id)
	info.Addrs[0] = mustAddr(t, "/ip4/6.6.6.6/tcp/6")
	info, _ = c.Resolve(ctx, id)
	require.Equal(t, []ma.Multiaddr{mustAddr(t, "/ip4/10.0.0.1/tcp/1")}, info.Addrs)

	clock.Advance(testTTL - time.Nanosecond)
	_, err := c.Resolve(ctx, id)
	require.NoError(t, err)
	require.EqualValues(t, 1, under.calls.Load(), "still fresh")

	clock.Advance(time.Nanosecond)
	_, err = c.Resolve(ctx, id)
	require.NoError(t, err)
	require.EqualValues(t, 2, under.calls.Load(), "expired after ttl")
}

func TestCacheNegative(t *testing.T) {
	ctx := context.Background()
	id := newID(t)
	nf := notFound(id, "under")
	under := fixed(peer.AddrInfo{}, nf)
	c, clock := newTestCache(t, under)

	for range 3 {
		_, err := c.Resolve(ctx, id)
		require.ErrorIs(t, err, ErrNotFound)
		require.ErrorIs(t, err, nf)
	}
	require.EqualValues(t, 1, under.calls.Load())

	clock.Advance(testNegativeTTL)
	_, err := c.Resolve(ctx, id)
	require.ErrorIs(t, err, ErrNotFound)
	require.EqualValues(t, 2, under.calls.Load(), "expired after negativeTTL")

	// An answer without addresses is a not-found too.
	empty := fixed(peer.AddrInfo{ID: id.PeerID()}, nil)
	c, _ = newTestCache(t, empty)
	for range 2 {
		_, err := c.Resolve(ctx, id)
		require.ErrorIs(t, err, ErrNotFound)
	}
	require.EqualValues(t, 1, empty.calls.Load())
}

func TestCacheKeepsOnlyNotFound(t *testing.T) {
	id := newID(t)
	for _, tc := range []struct {
		name string
		info peer.AddrInfo
		err  error
	}{
		{name: "network error", err: errors.New("no route")},
		{name: "ctx error", err: context.DeadlineExceeded},
		{name: "not found because ctx ended", err: errors.Join(context.Canceled, ErrNotFound)},
		{name: "chain with a network error", err: &ChainError{Errs: []error{notFound(id, "a"), errors.New("b: reset")}}},
		{name: "answer for another peer", info: answer(t, newID(t), "/ip4/10.0.0.1/tcp/1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			under := fixed(tc.info, tc.err)
			c, _ := newTestCache(t, under)
			for range 2 {
				_, err := c.Resolve(context.Background(), id)
				require.Error(t, err)
			}
			require.EqualValues(t, 2, under.calls.Load(), "must not be cached")
		})
	}
}

func TestCacheZeroTTLs(t *testing.T) {
	id := newID(t)
	good := fixed(answer(t, id, "/ip4/10.0.0.1/tcp/1"), nil)
	c := NewCache(good, 0, time.Hour)
	for range 2 {
		_, err := c.Resolve(context.Background(), id)
		require.NoError(t, err)
	}
	require.EqualValues(t, 2, good.calls.Load())

	bad := fixed(peer.AddrInfo{}, notFound(id, "bad"))
	c = NewCache(bad, time.Hour, 0)
	for range 2 {
		_, err := c.Resolve(context.Background(), id)
		require.ErrorIs(t, err, ErrNotFound)
	}
	require.EqualValues(t, 2, bad.calls.Load())
}

func TestCacheInvalidate(t *testing.T) {
	ctx := context.Background()
	id, other := newID(t), newID(t)
	under := &fakeResolver{fn: func(_ context.Context, id identity.Identifier) (peer.AddrInfo, error) {
		return answer(t, id, "/ip4/10.0.0.1/tcp/1"), nil
	}}
	c, _ := newTestCache(t, under)

	_, err := c.Resolve(ctx, id)
	require.NoError(t, err)
	_, err = c.Resolve(ctx, other)
	require.NoError(t, err)
	require.EqualValues(t, 2, under.calls.Load())

	c.Invalidate(id)
	c.Invalidate(newID(t)) // unknown: no-op
	_, err = c.Resolve(ctx, id)
	require.NoError(t, err)
	_, err = c.Resolve(ctx, other)
	require.NoError(t, err)
	require.EqualValues(t, 3, under.calls.Load(), "only id was forgotten")
}

// TestCacheInvalidateDuringLookup checks that an answer obtained before
// Invalidate is neither remembered nor shared with later callers.
func TestCacheInvalidateDuringLookup(t *testing.T) {
	ctx := context.Background()
	id := newID(t)
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	var mu sync.Mutex
	addr := "/ip4/10.0.0.1/tcp/1" // the stale address
	under := &fakeResolver{fn: func(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
		mu.Lock()
		a := addr
		mu.Unlock()
		started <- struct{}{}
		<-release
		return answer(t, id, a), nil
	}}
	c, _ := newTestCache(t, under)

	stale := make(chan peer.AddrInfo, 1)
	go func() {
		info, _ := c.Resolve(ctx, id)
		stale <- info
	}()
	<-started

	c.Invalidate(id)
	mu.Lock()
	addr = "/ip4/10.0.0.2/tcp/1" // the node moved
	mu.Unlock()
	close(release)

	require.Equal(t, answer(t, id, "/ip4/10.0.0.1/tcp/1"), <-stale, "the caller already waiting gets its answer")
	for range 2 {
		info, err := c.Resolve(ctx, id)
		require.NoError(t, err)
		require.Equal(t, answer(t, id, "/ip4/10.0.0.2/tcp/1"), info)
	}
	require.EqualValues(t, 2, under.calls.Load())
}

func TestCacheSharesOneLookup(t *testing.T) {
	const n = 50
	id := newID(t)
	release := make(chan struct{})
	under := &fakeResolver{fn: func(context.Context, identity.Identifier) (peer.AddrInfo, error) {
		<-release
		return answer(t, id, "/ip4/10.0.0.1/tcp/1"), nil
	}}
	c, _ := newTestCache(t, under)

	var wg sync.WaitGroup
	errs := make([]error, n)
	infos := make([]peer.AddrInfo, n)
	for i := range n {
		wg.Go(func() { infos[i], errs[i] = c.Resolve(context.Background(), id) })
	}
	require.Eventually(t, func() bool { return c.waiters(id) == n }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()

	require.EqualValues(t, 1, under.calls.Load())
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, answer(t, id, "/ip4/10.0.0.1/tcp/1"), infos[i])
	}
	// Each caller got its own copy of the addresses.
	infos[0].Addrs[0] = nil
	require.NotNil(t, infos[1].Addrs[0])
}

func TestCacheCallerGivesUp(t *testing.T) {
	id := newID(t)
	release := make(chan struct{})
	lookupEnded := make(chan error, 1)
	under := &fakeResolver{fn: func(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
		select {
		case <-release:
			return answer(t, id, "/ip4/10.0.0.1/tcp/1"), nil
		case <-ctx.Done():
			lookupEnded <- ctx.Err()
			return peer.AddrInfo{}, ctx.Err()
		}
	}}
	c, _ := newTestCache(t, under)

	// Two callers share a lookup; the impatient one leaves, the lookup goes on.
	impatient, cancelImpatient := context.WithCancel(context.Background())
	impatientErr := make(chan error, 1)
	go func() {
		_, err := c.Resolve(impatient, id)
		impatientErr <- err
	}()
	require.Eventually(t, func() bool { return c.waiters(id) == 1 }, 5*time.Second, time.Millisecond)
	patientDone := make(chan error, 1)
	go func() {
		_, err := c.Resolve(context.Background(), id)
		patientDone <- err
	}()
	require.Eventually(t, func() bool { return c.waiters(id) == 2 }, 5*time.Second, time.Millisecond)

	cancelImpatient()
	err := <-impatientErr
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrNotFound)
	require.Equal(t, 1, c.waiters(id))
	select {
	case err := <-lookupEnded:
		t.Fatalf("lookup cancelled while a caller still waits: %v", err)
	default:
	}
	close(release)
	require.NoError(t, <-patientDone)
	require.EqualValues(t, 1, under.calls.Load())

}

// TestCacheLastCallerGivesUp checks that the shared lookup is cancelled when
// its last caller leaves, and that its outcome is not remembered.
func TestCacheLastCallerGivesUp(t *testing.T) {
	id := newID(t)
	lookupEnded := make(chan error, 1)
	under := &fakeResolver{fn: func(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
		<-ctx.Done()
		lookupEnded <- ctx.Err()
		return peer.AddrInfo{}, notFound(id, "cut short") // as kad-dht does
	}}
	c, _ := newTestCache(t, under)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Resolve(ctx, id)
		errc <- err
	}()
	require.Eventually(t, func() bool { return c.waiters(id) == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	err := <-errc
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, <-lookupEnded, context.Canceled)

	// The next call starts a new lookup instead of using the cut-short one.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = c.Resolve(ctx, id)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	<-lookupEnded
	require.EqualValues(t, 2, under.calls.Load())
}

func TestCacheKeepsContextValues(t *testing.T) {
	type key struct{}
	id := newID(t)
	under := &fakeResolver{fn: func(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
		if ctx.Value(key{}) != "v" {
			return peer.AddrInfo{}, errors.New("ctx value lost")
		}
		if _, ok := ctx.Deadline(); ok {
			return peer.AddrInfo{}, errors.New("the caller's deadline leaked into the shared lookup")
		}
		return answer(t, id, "/ip4/10.0.0.1/tcp/1"), nil
	}}
	c, _ := newTestCache(t, under)
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), key{}, "v"), time.Minute)
	defer cancel()
	_, err := c.Resolve(ctx, id)
	require.NoError(t, err)
}

func TestCacheSweepsExpired(t *testing.T) {
	under := &fakeResolver{fn: func(_ context.Context, id identity.Identifier) (peer.AddrInfo, error) {
		return peer.AddrInfo{}, notFound(id, "under")
	}}
	c, clock := newTestCache(t, under)
	for range minSweep {
		_, err := c.Resolve(context.Background(), newID(t))
		require.ErrorIs(t, err, ErrNotFound)
	}
	require.Len(t, c.entries, minSweep)
	clock.Advance(testNegativeTTL)
	_, err := c.Resolve(context.Background(), newID(t))
	require.ErrorIs(t, err, ErrNotFound)
	require.Len(t, c.entries, 1, "expired entries are swept once the table is big")
}

func TestCacheCanceledContext(t *testing.T) {
	id := newID(t)
	under := fixed(answer(t, id, "/ip4/10.0.0.1/tcp/1"), nil)
	c, _ := newTestCache(t, under)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Resolve(ctx, id)
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, under.calls.Load())
}

// TestCacheResolveExcept: when the remembered addresses did not work, the
// Cache asks again, remembers the new answer, and says not found when the
// resolver behind it knows nothing new.
func TestCacheResolveExcept(t *testing.T) {
	id := newID(t)
	var mu sync.Mutex
	addr := "/ip4/10.0.0.1/tcp/1"
	under := &fakeResolver{fn: func(context.Context, identity.Identifier) (peer.AddrInfo, error) {
		mu.Lock()
		defer mu.Unlock()
		return answer(t, id, addr), nil
	}}
	c := NewCache(under, time.Hour, time.Hour)
	old, err := c.Resolve(context.Background(), id)
	require.NoError(t, err)

	_, err = c.ResolveExcept(context.Background(), id, old.Addrs)
	require.ErrorIs(t, err, ErrNotFound, "the resolver behind knows nothing new")
	require.EqualValues(t, 2, under.calls.Load())

	mu.Lock()
	addr = "/ip4/10.0.0.2/tcp/1"
	mu.Unlock()
	info, err := c.ResolveExcept(context.Background(), id, old.Addrs)
	require.NoError(t, err)
	require.Equal(t, answer(t, id, "/ip4/10.0.0.2/tcp/1"), info)
	info, err = c.Resolve(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, answer(t, id, "/ip4/10.0.0.2/tcp/1"), info, "the new answer is remembered")
	require.EqualValues(t, 3, under.calls.Load())

	// A remembered answer with addresses not tried yet is enough.
	info, err = c.ResolveExcept(context.Background(), id, old.Addrs)
	require.NoError(t, err)
	require.Equal(t, answer(t, id, "/ip4/10.0.0.2/tcp/1"), info)
	require.EqualValues(t, 3, under.calls.Load())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.ResolveExcept(ctx, id, nil)
	require.ErrorIs(t, err, context.Canceled)
}
