package p2pconn_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// Handshake bytes from PROTOCOL.md: HELLO with a 4 MiB limit and a nonce,
// and CONFIRM.
var (
	helloBytes   = mustHex("0d 01 80 80 80 02 01 02 03 04 05 06 07 08")
	confirmBytes = mustHex("01 04")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// victim is a node under attack, with an honest peer to show it keeps serving.
type victim struct {
	*node
	reg    *prometheus.Registry
	honest *node
	c      *cluster
}

func newVictim(t testing.TB, cfg p2pconn.Config) *victim {
	c := newCluster(t, transports["tcp"])
	reg := prometheus.NewRegistry()
	cfg.Metrics = reg
	return &victim{node: c.node(cfg), reg: reg, honest: c.node(testConfig()), c: c}
}

// requireServes shows the victim still exchanges messages with an honest peer.
func (v *victim) requireServes(t testing.TB) {
	t.Helper()
	ctx := testkit.Context(t, 10*time.Second)
	ch, err := v.honest.m.Connect(ctx, v.id)
	require.NoError(t, err)
	cv, err := v.m.Connect(ctx, v.honest.id)
	require.NoError(t, err)
	require.NoError(t, ch.Send(ctx, []byte("still there?")))
	msg, err := cv.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "still there?", string(msg))
}

// attacker opens raw streams on ProtocolID to the victim. Its own host has
// no resource limits: only the victim's defences are under test.
func attacker(t testing.TB, v *victim) host.Host {
	h := testkit.NewHost(t, nil, transports["tcp"], libp2p.ResourceManager(&network.NullResourceManager{}))
	require.NoError(t, h.Connect(testkit.Context(t, 5*time.Second), peer.AddrInfo{ID: v.h.ID(), Addrs: v.h.Addrs()}))
	return h
}

// settledStream opens a stream and completes the handshake by hand.
func settledStream(t testing.TB, h host.Host, v *victim) network.Stream {
	t.Helper()
	s, err := h.NewStream(testkit.Context(t, 5*time.Second), v.h.ID(), p2pconn.ProtocolID)
	require.NoError(t, err)
	_, err = s.Write(helloBytes)
	require.NoError(t, err)
	accept := make([]byte, 14)
	_, err = io.ReadFull(s, accept)
	require.NoError(t, err)
	require.Equal(t, byte(0x02), accept[1], "ACCEPT")
	_, err = s.Write(confirmBytes)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return v.m.ConnectionCount() >= 1 }, 5*time.Second, 5*time.Millisecond)
	return s
}

// requireStreamEnds waits until the victim has ended s.
func requireStreamEnds(t testing.TB, s network.Stream, within time.Duration) {
	t.Helper()
	_ = s.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, s)
	var timeout interface{ Timeout() bool }
	require.False(t, errors.As(err, &timeout) && timeout.Timeout(), "the victim kept the stream open: %v", err)
}

func TestHostileFrames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes string
	}{
		{"length over the limit", "81 80 80 02"},                    // 4 MiB + 1
		{"length near 2^63", "ff ff ff ff ff ff ff ff 7f"},          // 2^63-1
		{"length beyond 2^63", "ff ff ff ff ff ff ff ff ff 01"},     // 10-byte varint
		{"non-minimal length", "85 00"},                             // 5, padded
		{"truncated frame, then the stream ends", "64 01 02 03 04"}, // 100 bytes announced
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVictim(t, testConfig())
			s := settledStream(t, attacker(t, v), v)
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := s.Write(mustHex(tc.bytes))
			require.NoError(t, err)
			if strings.HasPrefix(tc.name, "truncated") {
				require.NoError(t, s.CloseWrite())
			}
			requireStreamEnds(t, s, 5*time.Second)
			require.Eventually(t, func() bool { return v.m.ConnectionCount() == 0 }, 5*time.Second, 5*time.Millisecond)
			require.Equal(t, 1.0, gather(t, v.reg)["skipwire_frame_errors_total{kind=frame}"])
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "no allocation for the announced frame")
			v.requireServes(t)
		})
	}
}

// TestHostileStalledFrame: a peer that starts a frame and goes silent (while
// answering pings) is closed after KeepaliveInterval + KeepaliveTimeout.
func TestHostileStalledFrame(t *testing.T) {
	cfg := testConfig()
	cfg.KeepaliveInterval, cfg.KeepaliveTimeout = 300*time.Millisecond, 300*time.Millisecond
	v := newVictim(t, cfg)
	s := settledStream(t, attacker(t, v), v)
	_, err := s.Write(mustHex("64 01 02 03"))
	require.NoError(t, err)
	start := time.Now()
	requireStreamEnds(t, s, 5*time.Second)
	t.Logf("stalled frame closed after %s", time.Since(start))
	require.Eventually(t, func() bool { return v.m.ConnectionCount() == 0 }, 5*time.Second, 5*time.Millisecond)
	v.requireServes(t)
}

// TestHostileSlowloris: a peer opening streams and never writing holds at most
// a few handshake slots, each for at most ConnectTimeout.
func TestHostileSlowloris(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectTimeout = time.Second
	v := newVictim(t, cfg)
	h := attacker(t, v)
	var streams []network.Stream
	for range 20 {
		s, err := h.NewStream(testkit.Context(t, 5*time.Second), v.h.ID(), p2pconn.ProtocolID)
		require.NoError(t, err)
		_, err = s.Write(nil) // make the lazy protocol negotiation happen
		require.NoError(t, err)
		streams = append(streams, s)
	}
	start := time.Now()
	for _, s := range streams {
		requireStreamEnds(t, s, 5*time.Second)
	}
	t.Logf("20 silent streams all ended after %s (ConnectTimeout %s)", time.Since(start), cfg.ConnectTimeout)
	require.Less(t, time.Since(start), cfg.ConnectTimeout+2*time.Second)
	v.requireServes(t)
}

// TestHostileStreamFlood: a peer opening hundreds of complete skipwire streams
// ends with one connection at most; the victim's goroutines stay bounded.
func TestHostileStreamFlood(t *testing.T) {
	v := newVictim(t, testConfig())
	h := attacker(t, v)
	baseline := runtime.NumGoroutine()
	for i := range 200 {
		s, err := h.NewStream(testkit.Context(t, 5*time.Second), v.h.ID(), p2pconn.ProtocolID)
		require.NoError(t, err)
		_, _ = s.Write(helloBytes)
		if i%2 == 0 {
			_, _ = s.Write(confirmBytes) // may reach the victim before or after its ACCEPT
		}
	}
	require.Eventually(t, func() bool { return v.m.ConnectionCount() <= 1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return runtime.NumGoroutine() < baseline+50 }, 10*time.Second, 10*time.Millisecond,
		"goroutines: %d, baseline %d", runtime.NumGoroutine(), baseline)
	v.requireServes(t)
}

// TestHostileConnectionFlood: more peers than MaxConnections complete the
// handshake; the excess is refused and the existing connections keep working.
func TestHostileConnectionFlood(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 5
	v := newVictim(t, cfg)
	ctx := testkit.Context(t, 20*time.Second)
	ch, err := v.honest.m.Connect(ctx, v.id)
	require.NoError(t, err)
	accepted, refused := 0, 0
	for range 12 {
		h := attacker(t, v)
		s, err := h.NewStream(ctx, v.h.ID(), p2pconn.ProtocolID)
		require.NoError(t, err)
		_, err = s.Write(helloBytes)
		require.NoError(t, err)
		reply := make([]byte, 2)
		_, err = io.ReadFull(s, reply)
		require.NoError(t, err)
		switch reply[1] {
		case 0x02:
			accepted++
			rest := make([]byte, 12)
			_, err = io.ReadFull(s, rest)
			require.NoError(t, err)
			_, err = s.Write(confirmBytes)
			require.NoError(t, err)
		case 0x03:
			refused++
			reason := make([]byte, 1)
			_, err = io.ReadFull(s, reason)
			require.NoError(t, err)
			require.Equal(t, byte(0x02), reason[0], "refused for the limit")
		}
	}
	require.Equal(t, 4, accepted, "one slot is the honest peer's")
	require.Equal(t, 8, refused)
	require.Eventually(t, func() bool { return v.m.ConnectionCount() == 5 }, 5*time.Second, 5*time.Millisecond)
	cv, ok := v.m.GetConnection(v.honest.id)
	require.True(t, ok)
	require.NoError(t, ch.Send(ctx, []byte("hello")))
	msg, err := cv.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(msg))
}

// TestHostileNeverReads: a peer that completes the handshake and never reads.
// The victim's Sends block until their ctx ends, its memory stays bounded by
// the stream's flow-control window, and it keeps serving honest peers.
func TestHostileNeverReads(t *testing.T) {
	v := newVictim(t, testConfig())
	s := settledStream(t, attacker(t, v), v)
	defer s.Reset()
	conn, ok := v.m.GetConnection(identityOf(t, s))
	require.True(t, ok)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	msg := make([]byte, 64<<10)
	sent, blocked := 0, 0
	for range 400 { // 25 MiB offered
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := conn.Send(ctx, msg)
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			blocked++
			if blocked >= 20 {
				break
			}
			continue
		}
		sent++
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d Sends of 64 KiB went out before the window filled, then %d timed out; heap in use grew by %d KiB", sent, blocked, growth>>10)
	require.Equal(t, 20, blocked, "Sends must block once the peer stops reading")
	require.Less(t, growth, int64(8<<20))
	require.True(t, conn.IsAlive(), "backpressure alone does not kill the connection")
	v.requireServes(t)
}

func identityOf(t testing.TB, s network.Stream) identity.Identifier {
	t.Helper()
	id, err := identity.FromPeerID(s.Conn().LocalPeer())
	require.NoError(t, err)
	return id
}
