package p2pconntest

import (
	"github.com/skipwire/skipwire/internal/testkit"

	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/p2pconn"
)

// unreachable makes b unreachable from a for a failure that may pass: a
// partition if net can make one, else b's crash.
func unreachable(t testing.TB, net Network, a, b Node) {
	t.Helper()
	if p, ok := net.(Partitioner); ok {
		p.Partition(a, b)
		return
	}
	net.Crash(t, b)
}

// testConnectFailFast: WithRetryAttempts(0) makes a Connect to an
// unreachable peer fail at its first failure, although the Config retries
// after a long backoff, and WithConnectTimeout bounds that attempt.
func testConnectFailFast(t *testing.T, net Network) {
	cfg := config()
	cfg.RetryAttempts = 5
	cfg.RetryDelay = 20 * time.Second // the first retry would wait at least 10 s
	cfg.MaxRetryDelay = cfg.RetryDelay
	cfg.ConnectTimeout = time.Minute
	ns := nodes(t, net, 2, cfg)
	a, b := ns[0], ns[1]
	unreachable(t, net, a, b)

	start := time.Now()
	c, err := a.Manager.Connect(testkit.Context(t, opTimeout), b.ID,
		p2pconn.WithRetryAttempts(0), p2pconn.WithConnectTimeout(time.Second))
	elapsed := time.Since(start)
	require.Error(t, err, "connect to an unreachable peer")
	require.Nil(t, c)
	require.Less(t, elapsed, cfg.RetryDelay/2, "a fail-fast Connect waited for a retry: %v", err)
	require.Zero(t, a.Manager.ConnectionCount())
}

// testConnectRetries: WithRetryAttempts(n) retries n times although the
// Config does not retry, each retry after its backoff.
func testConnectRetries(t *testing.T, net Network) {
	cfg := config()
	cfg.RetryAttempts = 0
	cfg.RetryDelay = 40 * time.Millisecond
	cfg.MaxRetryDelay = cfg.RetryDelay
	cfg.ConnectTimeout = 300 * time.Millisecond // a dial into silence (QUIC) gives up soon
	ns := nodes(t, net, 2, cfg)
	a, b := ns[0], ns[1]
	unreachable(t, net, a, b)

	const retries = 3
	start := time.Now()
	_, err := a.Manager.Connect(testkit.Context(t, opTimeout), b.ID, p2pconn.WithRetryAttempts(retries))
	elapsed := time.Since(start)
	require.Error(t, err)
	// Each retry waits at least half of RetryDelay.
	require.GreaterOrEqual(t, elapsed, retries*cfg.RetryDelay/2, "the retries did not happen: %v", err)
}

// testConnectRetriesAcrossHeal: on a Network that can partition, a Connect
// with retries succeeds once the partition heals while it retries. It
// ignores the failure of the Connect before it (Config.UnreachableFor), as
// maintenance that must find out for itself does.
func testConnectRetriesAcrossHeal(t *testing.T, net Network) {
	p, ok := net.(Partitioner)
	if !ok {
		t.Skip("the Network cannot partition")
	}
	cfg := config()
	cfg.RetryAttempts = 0
	cfg.RetryDelay = 20 * time.Millisecond
	cfg.MaxRetryDelay = 50 * time.Millisecond
	ns := nodes(t, net, 2, cfg)
	a, b := ns[0], ns[1]
	p.Partition(a, b)

	_, err := a.Manager.Connect(testkit.Context(t, opTimeout), b.ID)
	require.Error(t, err, "connect across a partition without retries")

	healed := make(chan struct{})
	heal := time.AfterFunc(150*time.Millisecond, func() {
		p.Heal(a, b)
		close(healed)
	})
	defer heal.Stop()
	c, err := a.Manager.Connect(testkit.Context(t, opTimeout), b.ID, p2pconn.WithRetryAttempts(1000), p2pconn.IgnoreRecentFailure())
	require.NoError(t, err, "connect retrying until the partition heals")
	<-healed
	cb := accept(t, b)
	send(t, c, []byte("healed"))
	recvString(t, cb, "healed")
}
