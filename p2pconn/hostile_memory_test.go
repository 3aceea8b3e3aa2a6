package p2pconn_test

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// frameHeader returns the header of a frame of n bytes.
func frameHeader(n int) []byte {
	var b []byte
	for ; n >= 0x80; n >>= 7 {
		b = append(b, byte(n)|0x80)
	}
	return append(b, byte(n))
}

// heapInUse returns the heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestHostileStalledHugeFrame: a peer that announces a frame of
// MaxMessageSize and sends a little of it makes the victim hold memory in
// proportion to what it sent, not to what it announced; the frame, once
// complete, is delivered intact.
func TestHostileStalledHugeFrame(t *testing.T) {
	v := newVictim(t, testConfig())
	s := settledStream(t, attacker(t, v), v)
	const announced, sent = 4 << 20, 100 << 10
	body := payload(1, announced)

	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := s.Write(append(frameHeader(announced), body[:sent]...))
	require.NoError(t, err)
	// The reader reserves each part of the frame's buffer before it
	// allocates it: past the first 64 KiB, the buffer has grown once.
	require.Eventually(t, func() bool { return serviceStat(t, v.h).Memory >= sent }, 5*time.Second, 5*time.Millisecond)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	reserved := serviceStat(t, v.h).Memory
	t.Logf("%d KiB of a %d MiB frame sent: %d KiB reserved, %d KiB allocated", sent>>10, announced>>20, reserved>>10, (after.TotalAlloc-before.TotalAlloc)>>10)
	require.LessOrEqual(t, reserved, int64(2*sent+256<<10), "at most twice what arrived, and a step")
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "no allocation for the announced length")

	_, err = s.Write(body[sent:])
	require.NoError(t, err)
	ctx := testkit.Context(t, 10*time.Second)
	conn, err := v.m.Accept(ctx)
	require.NoError(t, err)
	msg, err := conn.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, body, msg)
	v.requireServes(t)
}

// TestHostileMemoryBound: peers that announce huge frames and stall, and
// peers that flood messages the application does not read, make the victim
// hold no more than its resource manager allows, a figure computed from its
// limits: each peer's memory (its messages and the muxer's windows) within
// the per-peer limit. The skipwire service's share stays within the
// per-peer service limit of each peer, and the victim keeps serving an
// honest peer.
func TestHostileMemoryBound(t *testing.T) {
	const (
		attackers    = 6
		peerLimit    = 2 << 20   // per peer: skipwire's messages, the muxer's windows, other protocols
		svcPeerLimit = 512 << 10 // per peer: skipwire's messages
		svcLimit     = 4 << 20   // skipwire's messages, all peers together
		stallSent    = 256 << 10 // what a staller sends of its 4 MiB frame
		flood        = 4 << 20   // what a flooder tries to send, in 64 KiB messages
	)
	c := newCluster(t, transports["tcp"])
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.Metrics = reg
	h := limitedHost(t, transports["tcp"], func(p *rcmgr.PartialLimitConfig) {
		p.PeerDefault.Memory = peerLimit
		p.Service = map[string]rcmgr.ResourceLimits{p2pconn.ServiceName: {Memory: svcLimit}}
		p.ServicePeer = map[string]rcmgr.ResourceLimits{p2pconn.ServiceName: {Memory: svcPeerLimit}}
	})
	v := &victim{node: c.nodeOn(h, cfg), reg: reg, honest: c.node(testConfig()), c: c}

	var streams []network.Stream
	for range attackers {
		streams = append(streams, settledStream(t, attacker(t, v), v))
	}
	require.Eventually(t, func() bool { return v.m.ConnectionCount() == attackers }, 5*time.Second, 5*time.Millisecond)
	base := heapInUse()

	var wg sync.WaitGroup
	written := make([]int, attackers)
	errs := make([]error, attackers)
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 { // a staller
				n, _ := s.Write(append(frameHeader(4<<20), make([]byte, stallSent)...))
				written[i] = n
				return
			}
			frame := append(frameHeader(64<<10), make([]byte, 64<<10)...)
			for written[i] < flood {
				// A write that waits this long is held back by flow control.
				_ = s.SetWriteDeadline(time.Now().Add(time.Second))
				n, err := s.Write(frame)
				written[i] += n
				if err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		var timeout interface{ Timeout() bool }
		require.True(t, err == nil || errors.As(err, &timeout) && timeout.Timeout(), "attacker %d: %v", i, err)
	}
	held := heapInUse() - base
	svc := serviceStat(t, v.h)
	bound := int64(attackers*peerLimit + 2<<20) // every peer at its limit, and 2 MiB for the heap's own slack
	t.Logf("attackers wrote %v bytes; victim: heap in use grew by %d KiB (bound %d KiB), skipwire service holds %d KiB, refusals %v",
		written, held>>10, bound>>10, svc.Memory>>10, gather(t, reg)["skipwire_limited_total{limit=memory}"])
	require.LessOrEqual(t, held, bound, "the victim holds more than its resource manager allows")
	require.LessOrEqual(t, svc.Memory, int64(min(svcLimit, attackers*svcPeerLimit)))
	for i := 1; i < attackers; i += 2 {
		require.Less(t, written[i], flood, "flooder %d was never held back", i)
	}
	v.requireServes(t)
}
