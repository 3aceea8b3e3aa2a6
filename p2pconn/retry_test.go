package p2pconn_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// recordingResolver fails every call with err and records when it was called.
type recordingResolver struct {
	mu    sync.Mutex
	err   error
	calls []time.Time
}

func (r *recordingResolver) Resolve(context.Context, identity.Identifier) (peer.AddrInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, time.Now())
	return peer.AddrInfo{}, r.err
}

// TestRetryAttemptsAndBackoff counts the attempts Connect makes for a failure
// that may pass, and checks the waits between them: never shorter than the
// low end of the jittered backoff (the bounds themselves are checked exactly
// in TestBackoffBounds).
func TestRetryAttemptsAndBackoff(t *testing.T) {
	for _, attempts := range []int{0, 1, 3} {
		r := &recordingResolver{err: errors.New("transient resolver failure")}
		cfg := testConfig()
		cfg.RetryAttempts = attempts
		cfg.RetryDelay = 20 * time.Millisecond
		h := newHost(t, transports["tcp"])
		m, err := p2pconn.NewManager(h, r, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = m.Close() })

		_, err = m.Connect(testkit.Context(t, 10*time.Second), identity.Identifier{1})
		require.Error(t, err)
		require.Len(t, r.calls, attempts+1, "RetryAttempts %d", attempts)
		require.Contains(t, err.Error(), "transient resolver failure")
		d := cfg.RetryDelay
		for i := 1; i < len(r.calls); i++ {
			gap := r.calls[i].Sub(r.calls[i-1])
			t.Logf("RetryAttempts %d: retry %d after %s (backoff range [%s, %s])", attempts, i, gap, d/2, d)
			require.GreaterOrEqual(t, gap, d/2)
			d *= 2
		}
	}
}

// TestNoRetryForPermanentFailures: not found is not retried.
func TestNoRetryForPermanentFailures(t *testing.T) {
	r := &recordingResolver{err: resolver.ErrNotFound}
	cfg := testConfig()
	cfg.RetryAttempts = 5
	h := newHost(t, transports["tcp"])
	m, err := p2pconn.NewManager(h, r, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	_, err = m.Connect(testkit.Context(t, 10*time.Second), identity.Identifier{1})
	require.ErrorIs(t, err, resolver.ErrNotFound)
	require.Len(t, r.calls, 1)
}

// TestConnectHonoursCtxDuringBackoff: a Connect waiting between attempts
// returns when its ctx ends.
func TestConnectHonoursCtxDuringBackoff(t *testing.T) {
	r := &recordingResolver{err: errors.New("transient")}
	cfg := testConfig()
	cfg.RetryAttempts = 10
	cfg.RetryDelay = time.Hour
	h := newHost(t, transports["tcp"])
	m, err := p2pconn.NewManager(h, r, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = m.Connect(ctx, identity.Identifier{1})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
