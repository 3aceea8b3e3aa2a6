package p2pconn_test

import (
	"github.com/skipwire/skipwire/internal/testkit"

	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// scriptedResolver fails every call with a failure that may pass; calls
// listed in hold block until released or their ctx ends.
type scriptedResolver struct {
	mu       sync.Mutex
	calls    int
	hold     map[int]chan struct{} // call number (1-based) -> release
	blockAll bool                  // every call blocks until its ctx ends
}

var errTransient = errors.New("transient resolver failure")

func (r *scriptedResolver) Resolve(ctx context.Context, _ identity.Identifier) (peer.AddrInfo, error) {
	r.mu.Lock()
	r.calls++
	release := r.hold[r.calls]
	block := r.blockAll
	r.mu.Unlock()
	if block {
		<-ctx.Done()
		return peer.AddrInfo{}, ctx.Err()
	}
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
			return peer.AddrInfo{}, ctx.Err()
		}
	}
	return peer.AddrInfo{}, errTransient
}

func (r *scriptedResolver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// scriptedManager returns a manager on a loopback host resolving with r.
func scriptedManager(t *testing.T, r *scriptedResolver, cfg p2pconn.Config) *p2pconn.Manager {
	t.Helper()
	h := newHost(t, transports["tcp"])
	m, err := p2pconn.NewManager(h, r, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// connectResult is what a Connect run in the background returned.
type connectResult struct {
	err     error
	elapsed time.Duration
}

// connectAsync runs Connect in the background.
func connectAsync(ctx context.Context, m *p2pconn.Manager, opts ...p2pconn.ConnectOption) <-chan connectResult {
	out := make(chan connectResult, 1)
	go func() {
		start := time.Now()
		_, err := m.Connect(ctx, identity.Identifier{1}, opts...)
		out <- connectResult{err, time.Since(start)}
	}()
	return out
}

func result(t *testing.T, ch <-chan connectResult) connectResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		require.FailNow(t, "Connect did not return")
		return connectResult{}
	}
}

// TestConnectOptionsOverrideConfig: WithRetryAttempts sets the number of
// attempts of one call, above or below the Config's.
func TestConnectOptionsOverrideConfig(t *testing.T) {
	for _, tc := range []struct {
		config, option int
	}{{0, 2}, {4, 0}, {1, -3}} {
		r := &scriptedResolver{}
		cfg := testConfig()
		cfg.RetryAttempts = tc.config
		cfg.RetryDelay = time.Millisecond
		m := scriptedManager(t, r, cfg)
		_, err := m.Connect(testkit.Context(t, 10*time.Second), identity.Identifier{1}, p2pconn.WithRetryAttempts(tc.option))
		require.ErrorIs(t, err, errTransient)
		require.Equal(t, max(tc.option, 0)+1, r.count(), "Config %d, option %d", tc.config, tc.option)
	}
}

// TestConnectTimeoutOption: WithConnectTimeout bounds an attempt that
// hangs, instead of the Config's ConnectTimeout.
func TestConnectTimeoutOption(t *testing.T) {
	r := &scriptedResolver{blockAll: true}
	cfg := testConfig()
	cfg.ConnectTimeout = time.Minute
	cfg.RetryAttempts = 0
	m := scriptedManager(t, r, cfg)
	start := time.Now()
	_, err := m.Connect(testkit.Context(t, 30*time.Second), identity.Identifier{1}, p2pconn.WithConnectTimeout(100*time.Millisecond))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	require.Less(t, time.Since(start), 10*time.Second)
	require.Equal(t, 1, r.count())
}

// TestSharedDialFailFastJoiner: a fail-fast Connect joining a dial that
// retries returns at the dial's first failure; the dial goes on for the
// caller that retries.
func TestSharedDialFailFastJoiner(t *testing.T) {
	r := &scriptedResolver{}
	cfg := testConfig()
	cfg.RetryAttempts = 0
	cfg.RetryDelay = time.Second // the first retry waits at least 500 ms
	cfg.MaxRetryDelay = time.Second
	m := scriptedManager(t, r, cfg)
	ctx, cancel := context.WithCancel(testkit.Context(t, 30*time.Second))
	defer cancel()

	patient := connectAsync(ctx, m, p2pconn.WithRetryAttempts(100))
	require.Eventually(t, func() bool { return r.count() >= 1 }, 10*time.Second, time.Millisecond)
	fast := result(t, connectAsync(ctx, m, p2pconn.WithRetryAttempts(0)))
	require.ErrorIs(t, fast.err, errTransient)
	require.Less(t, fast.elapsed, cfg.RetryDelay/2, "the fail-fast Connect waited for a retry")

	// The shared dial retries for the patient caller, which still waits.
	require.Eventually(t, func() bool { return r.count() >= 2 }, 10*time.Second, time.Millisecond)
	select {
	case res := <-patient:
		require.FailNow(t, "the retrying Connect returned", "err: %v", res.err)
	default:
	}
	cancel()
	require.ErrorIs(t, result(t, patient).err, context.Canceled)
}

// TestSharedDialRetryingJoiner: a Connect with retries that joins a
// fail-fast dial gets its retries: the fail-fast caller returns at the first
// failure, the dial goes on.
func TestSharedDialRetryingJoiner(t *testing.T) {
	release := make(chan struct{})
	r := &scriptedResolver{hold: map[int]chan struct{}{1: release}}
	cfg := testConfig()
	cfg.RetryAttempts = 0
	cfg.RetryDelay = time.Millisecond
	m := scriptedManager(t, r, cfg)
	ctx := testkit.Context(t, 30*time.Second)

	fast := connectAsync(ctx, m, p2pconn.WithRetryAttempts(0))
	require.Eventually(t, func() bool { return r.count() == 1 }, 10*time.Second, time.Millisecond)
	patient := connectAsync(ctx, m, p2pconn.WithRetryAttempts(2))
	require.Eventually(t, func() bool { return m.DialWaiters(identity.Identifier{1}) == 2 }, 10*time.Second, time.Millisecond)
	close(release)
	require.ErrorIs(t, result(t, fast).err, errTransient)
	require.ErrorIs(t, result(t, patient).err, errTransient)
	require.Equal(t, 3, r.count(), "one shared dial: the first attempt, then the joiner's 2 retries")
}

// TestSharedDialJoinerTimeout: a caller with a short ConnectTimeout that
// joins a dial whose attempt hangs stops waiting after its own timeout; the
// dial goes on for the caller that started it.
func TestSharedDialJoinerTimeout(t *testing.T) {
	r := &scriptedResolver{blockAll: true}
	cfg := testConfig()
	cfg.RetryAttempts = 0
	m := scriptedManager(t, r, cfg)
	ctx, cancel := context.WithCancel(testkit.Context(t, 30*time.Second))
	defer cancel()

	patient := connectAsync(ctx, m, p2pconn.WithConnectTimeout(time.Minute))
	require.Eventually(t, func() bool { return r.count() == 1 }, 10*time.Second, time.Millisecond)
	short := result(t, connectAsync(ctx, m, p2pconn.WithConnectTimeout(100*time.Millisecond)))
	require.ErrorIs(t, short.err, context.DeadlineExceeded)
	require.GreaterOrEqual(t, short.elapsed, 100*time.Millisecond)
	require.Less(t, short.elapsed, 10*time.Second)
	select {
	case res := <-patient:
		require.FailNow(t, "the patient Connect returned", "err: %v", res.err)
	default:
	}
	require.Equal(t, 1, r.count(), "the joiner made no attempt of its own")
	cancel()
	require.ErrorIs(t, result(t, patient).err, context.Canceled)
}
