package p2pconn_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// TestHandshakeRate: a peer that opens streams faster than HandshakeRate
// has the excess reset before its HELLO is read, each refusal counted; other
// peers are not affected.
func TestHandshakeRate(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeRate, cfg.HandshakeBurst = 0.1, 2 // a token per 10 s: none comes back during the test
	v := newVictim(t, cfg)
	h := attacker(t, v)
	const opened = 10
	var streams []network.Stream
	for range opened {
		s, err := h.NewStream(testkit.Context(t, 5*time.Second), v.h.ID(), p2pconn.ProtocolID)
		require.NoError(t, err)
		_, _ = s.Write(helloBytes)
		streams = append(streams, s)
	}
	require.Eventually(t, func() bool {
		return gather(t, v.reg)["skipwire_limited_total{limit=handshake_rate}"] == float64(opened-cfg.HandshakeBurst)
	}, 5*time.Second, 5*time.Millisecond, "refusals: %v", gather(t, v.reg)["skipwire_limited_total{limit=handshake_rate}"])
	reset := 0
	for _, s := range streams {
		_ = s.SetReadDeadline(time.Now().Add(time.Second))
		_, err := io.ReadFull(s, make([]byte, 14)) // an ACCEPT
		var se *network.StreamError
		if errors.As(err, &se) {
			reset++
		}
	}
	require.GreaterOrEqual(t, reset, opened-cfg.HandshakeBurst, "refused streams are reset")
	v.requireServes(t)
	require.Equal(t, float64(opened-cfg.HandshakeBurst), gather(t, v.reg)["skipwire_limited_total{limit=handshake_rate}"], "the honest peer was not refused")
}

// TestMessageRate: a connection reads no faster than MessageRate once its
// burst is used: the messages wait in the stream, none is dropped, and
// each pause is counted.
func TestMessageRate(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.MessageRate, cfg.MessageBurst, cfg.Metrics = 20, 2, reg
	a, b := c.node(testConfig()), c.node(cfg)
	ctx := testkit.Context(t, 10*time.Second)
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx)
	require.NoError(t, err)

	const n = 14
	start := time.Now()
	for i := range n {
		require.NoError(t, ca.Send(ctx, payload(i, 100)))
	}
	read := gather(t, reg)["skipwire_messages_total{direction=in}"]
	maxRead := float64(cfg.MessageBurst) + time.Since(start).Seconds()*cfg.MessageRate + 1
	require.LessOrEqual(t, read, maxRead, "the receiver read faster than its rate")
	for i := range n {
		msg, err := cb.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, payload(i, 100), msg, "message %d", i)
	}
	elapsed := time.Since(start)
	// The reader takes a token per message it reads and waits for the
	// next one before it reads on.
	want := time.Duration(float64(n-1-cfg.MessageBurst) / cfg.MessageRate * float64(time.Second))
	pauses := gather(t, reg)["skipwire_limited_total{limit=message_rate}"]
	t.Logf("%d messages read in %s (rate %v/s, burst %d: at least %s), %v pauses", n, elapsed, cfg.MessageRate, cfg.MessageBurst, want, pauses)
	require.GreaterOrEqual(t, elapsed, want)
	// A pause per message that came before its token, which depends on how
	// fast the Sends went.
	require.GreaterOrEqual(t, pauses, 1.0)

	require.NoError(t, ca.Close())
	_, err = cb.Next(ctx)
	require.ErrorIs(t, err, io.EOF)
}
