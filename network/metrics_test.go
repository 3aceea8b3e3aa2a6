package network_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/network"
)

// TestMetrics: messages, queue depth and Requests are counted; a Network
// started on a registerer an earlier one used reuses its collectors.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := memEnv.world(t)
	a := newNode(t, w, network.Config{Metrics: reg})
	b := newNode(t, w, network.Config{})
	newEcho(t, b, "echo")
	ctx := testContext(t, opTimeout)
	_, err := a.n.Conduit("echo").Request(ctx, b.id, []byte("x"))
	require.NoError(t, err)
	_, err = a.n.Conduit("none").Request(ctx, b.id, []byte("x"))
	require.ErrorIs(t, err, network.ErrNoProcessor)
	short, cancel := context.WithTimeout(ctx, quiet)
	defer cancel()
	register(t, b, "mute", newInbox(4))
	_, err = a.n.Conduit("mute").Request(short, b.id, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	require.Equal(t, 1.0, metric(t, reg, "skipwire_network_requests_total", "channel", "echo", "result", "ok"))
	require.Equal(t, 1.0, metric(t, reg, "skipwire_network_requests_total", "channel", "none", "result", "no_processor"))
	require.Equal(t, 1.0, metric(t, reg, "skipwire_network_requests_total", "channel", "mute", "result", "timeout"))
	require.Equal(t, 1.0, metric(t, reg, "skipwire_network_messages_total", "channel", "echo", "direction", "out"))

	// Messages queued for a processor that holds them.
	queued := func(ch string) float64 { return metric(t, reg, "skipwire_network_queued", "channel", ch) }
	self := holdThree(t, ctx, a, "hold")
	require.Equal(t, 2.0, queued("hold"))
	close(self.gate)
	require.Eventually(t, func() bool { return queued("hold") == 0 }, eventually, tick)

	// Messages still queued when a Network closes are dropped, and leave
	// the gauge.
	d := newNode(t, w, network.Config{Metrics: reg})
	held := holdThree(t, ctx, d, "held")
	require.Equal(t, 2.0, queued("held"))
	require.NoError(t, d.n.Close())
	require.Equal(t, 0.0, queued("held"))
	require.Len(t, held.got, 0, "nothing processed after Close")

	// A second Network on the same registerer shares the collectors.
	c := newNode(t, w, network.Config{Metrics: reg})
	require.NoError(t, c.n.Conduit("echo").Send(ctx, b.id, nil))
	require.Equal(t, 2.0, metric(t, reg, "skipwire_network_messages_total", "channel", "echo", "direction", "out"),
		"a's and c's Sends, on the same collector")
}

// holdThree registers on ch of nd a processor that holds nd's own messages,
// sends it three, and returns once it holds the first: two are queued.
func holdThree(t *testing.T, ctx context.Context, nd *node, ch network.Channel) *gated {
	t.Helper()
	g := &gated{hold: network.Message{From: nd.id}, gate: make(chan struct{}), got: make(chan network.Message, 8)}
	register(t, nd, ch, g)
	for range 3 {
		require.NoError(t, nd.n.Conduit(ch).Send(ctx, nd.id, nil))
	}
	<-g.got
	return g
}
