package p2pconn_test

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// gather returns every sample of reg as "name{k=v,...}" -> value (histograms
// as their sample count).
func gather(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	out := make(map[string]float64)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := f.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	cfgA, cfgB := testConfig(), testConfig()
	cfgA.Metrics, cfgB.Metrics = regA, regB
	cfgA.RetryAttempts = 1
	a, b := c.node(cfgA), c.node(cfgB)
	ctx := testkit.Context(t, 10*time.Second)

	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx)
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, ca.Send(ctx, []byte("12345")))
		_, err := cb.Next(ctx)
		require.NoError(t, err)
	}
	_, err = a.m.Connect(ctx, identity.Identifier{7})
	require.ErrorIs(t, err, resolver.ErrNotFound)

	ma := gather(t, regA)
	require.Equal(t, 1.0, ma["skipwire_connections{direction=outbound}"])
	require.Equal(t, 1.0, ma["skipwire_connects_total{result=ok}"])
	require.Equal(t, 1.0, ma["skipwire_connects_total{result=not_found}"])
	require.Equal(t, 2.0, ma["skipwire_dial_attempts_total"])
	require.Equal(t, 0.0, ma["skipwire_dial_retries_total"], "not found is not retried")
	require.Equal(t, 3.0, ma["skipwire_messages_total{direction=out}"])
	require.Equal(t, 15.0, ma["skipwire_bytes_total{direction=out}"])
	require.Equal(t, 3.0, ma["skipwire_send_duration_seconds"])
	mb := gather(t, regB)
	require.Equal(t, 1.0, mb["skipwire_connections{direction=inbound}"])
	require.Equal(t, 3.0, mb["skipwire_messages_total{direction=in}"])
	require.Equal(t, 15.0, mb["skipwire_bytes_total{direction=in}"])
	require.Equal(t, 3.0, mb["skipwire_next_wait_seconds"])

	require.NoError(t, ca.Close())
	require.Eventually(t, func() bool {
		return gather(t, regB)["skipwire_disconnects_total{reason=closed_remote}"] == 1
	}, 5*time.Second, 5*time.Millisecond)
	ma = gather(t, regA)
	require.Equal(t, 1.0, ma["skipwire_disconnects_total{reason=closed_local}"])
	require.Equal(t, 0.0, ma["skipwire_connections{direction=outbound}"])

}

// TestMetricsSharedRegistry: a manager may register on a registry that
// already has skipwire's collectors (a previous manager's, or a live one's):
// it reuses them, and the figures add up.
func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.Metrics = reg
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 30*time.Second)
	first := c.node(cfg)
	_, err := first.m.Connect(ctx, identity.Identifier{7})
	require.ErrorIs(t, err, resolver.ErrNotFound)
	require.NoError(t, first.m.Close())

	// A second manager after the first closed, then a third beside it.
	second, third := c.node(cfg), c.node(cfg)
	conn, err := second.m.Connect(ctx, third.id)
	require.NoError(t, err)
	require.NoError(t, conn.Send(ctx, []byte("12345")))
	in, err := third.m.Accept(ctx)
	require.NoError(t, err)
	_, err = in.Next(ctx)
	require.NoError(t, err)

	got := gather(t, reg)
	require.Equal(t, 1.0, got["skipwire_connects_total{result=not_found}"], "the first manager's Connect")
	require.Equal(t, 1.0, got["skipwire_connects_total{result=ok}"])
	require.Equal(t, 2.0, got["skipwire_connections{direction=inbound}"]+got["skipwire_connections{direction=outbound}"], "one connection, seen from both ends")
	require.Equal(t, 1.0, got["skipwire_messages_total{direction=out}"])
	require.Equal(t, 1.0, got["skipwire_messages_total{direction=in}"])
}

// TestMetricsConflictingCollector: a collector of another shape under one of
// skipwire's names is a conflict, and NewManager fails rather than reuse it.
func TestMetricsConflictingCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "skipwire_connects_total", Help: "Something else."}))
	cfg := testConfig()
	cfg.Metrics = reg
	_, err := p2pconn.NewManager(newHost(t, transports["tcp"]), nil, cfg)
	require.Error(t, err)
	require.ErrorContains(t, err, "register metrics")
}

// TestPolicyMetrics: probes, idle closes, evictions, fast failures and
// departures are counted.
func TestPolicyMetrics(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	reg := prometheus.NewRegistry()
	cfg := idleConfig()
	cfg.Metrics = reg
	cfg.MaxConnections = 1
	cfg.EvictAtLimit = true
	a := c.node(cfg)
	b, d, e := c.node(testConfig()), c.node(testConfig()), c.node(testConfig())
	ctx := testkit.Context(t, 10*time.Second)

	ab, _ := connected(t, ctx, a, b)
	_, err := a.m.Probe(ctx, b.id)
	require.NoError(t, err)
	_, err = a.m.Probe(ctx, d.id)
	require.Error(t, err)
	_, err = a.m.Connect(ctx, d.id) // evicts b
	require.NoError(t, err)
	<-ab.Done()
	require.NoError(t, d.m.Close()) // d leaves
	require.Eventually(t, func() bool { return a.m.ConnectionCount() == 0 }, 5*time.Second, 10*time.Millisecond)

	ae, _ := connected(t, ctx, a, e)
	<-ae.Done() // closed idle

	gone := newHost(t, transports["tcp"]) // a node whose host is gone
	bad, err := identity.FromPeerID(gone.ID())
	require.NoError(t, err)
	c.table.Add(bad, gone.Addrs()...)
	require.NoError(t, gone.Close())
	_, err = a.m.Connect(ctx, bad, p2pconn.WithRetryAttempts(0))
	require.Error(t, err)
	_, err = a.m.Connect(ctx, bad, p2pconn.WithRetryAttempts(0))
	require.ErrorIs(t, err, p2pconn.ErrUnreachable)

	got := gather(t, reg)
	t.Log(got)
	require.Equal(t, 1.0, got["skipwire_probes_total{result=ok}"])
	require.Equal(t, 1.0, got["skipwire_probes_total{result=error}"])
	require.Equal(t, 1.0, got["skipwire_evictions_total"])
	require.Equal(t, 1.0, got["skipwire_idle_closes_total"])
	require.Equal(t, 1.0, got["skipwire_fast_failures_total"])
	require.Equal(t, 1.0, got["skipwire_disconnects_total{reason=left}"])
}
