package main

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// cachedConnects times Connect to every connected peer, in random order:
// each call on its own (p50, p99; a clock read costs tens of ns), then one
// untimed pass for the mean and the allocations. Raw libp2p's counterpart
// is host.Connect to a connected peer, which returns at once (it hands out
// no stream).
func (c *central) cachedConnects(ctx context.Context, res *centralResult) {
	// The peers with a connection: skipwire's managed ones, raw libp2p's
	// libp2p connections.
	var ids []identity.Identifier
	var peers []peer.ID
	if c.m != nil {
		ids = c.m.ConnectedPeers()
		for _, id := range ids {
			peers = append(peers, id.PeerID())
		}
	} else {
		peers = c.h.Network().Peers()
		ids = make([]identity.Identifier, len(peers))
	}
	rand.Shuffle(len(peers), func(i, j int) {
		peers[i], peers[j] = peers[j], peers[i]
		ids[i], ids[j] = ids[j], ids[i]
	})
	// pass connects to each of peers (ids) once; with took, it times each
	// call.
	pass := func(took []time.Duration, peers []peer.ID, ids []identity.Identifier) {
		for i := range peers {
			var t0 time.Time
			if took != nil {
				t0 = time.Now()
			}
			var err error
			if c.m != nil {
				_, err = c.m.Connect(ctx, ids[i])
			} else {
				err = c.h.Connect(ctx, peer.AddrInfo{ID: peers[i]})
			}
			if took != nil && err == nil {
				took[i] = time.Since(t0)
			}
		}
	}
	took := make([]time.Duration, len(peers))
	pass(took, peers, ids)
	took = slices.DeleteFunc(took, func(d time.Duration) bool { return d == 0 }) // failed
	res.CachedP50Ns = float64(testkit.Percentile(took, 50).Nanoseconds())
	res.CachedP99Ns = float64(testkit.Percentile(took, 99).Nanoseconds())

	// Untimed passes of up to 1,000 calls, at least 5, over every peer in
	// turn: the median pass gives the mean, the pass with the fewest
	// allocations the allocations (the node's other goroutines allocate
	// meanwhile, never less).
	const chunk = 1000
	var means []time.Duration
	allocs := math.MaxFloat64
	for pass0, lo := 0, 0; len(peers) > 0 && (pass0 < 5 || lo != 0); pass0++ {
		hi := min(lo+chunk, len(peers))
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		t0 := time.Now()
		pass(nil, peers[lo:hi], ids[lo:hi])
		d := time.Since(t0)
		runtime.ReadMemStats(&ms1)
		means = append(means, d/time.Duration(hi-lo))
		allocs = min(allocs, float64(ms1.Mallocs-ms0.Mallocs)/float64(hi-lo))
		if lo = hi; lo == len(peers) {
			lo = 0
		}
	}
	if len(means) > 0 {
		res.CachedMeanNs = float64(testkit.Percentile(means, 50).Nanoseconds())
		res.CachedAllocs = allocs
	}
}

// coldConnects connects to each fresh peer once, one at a time: skipwire's
// Manager.Connect (resolve, dial, secure channel, yamux, stream, handshake
// round trip) or raw host.Connect + NewStream + a one-byte round trip.
func (c *central) coldConnects(ctx context.Context, res *centralResult) {
	var took []time.Duration
	for _, a := range c.spec.Fresh {
		info, err := peer.AddrInfoFromString(a)
		if err != nil {
			res.ColdErrors = append(res.ColdErrors, err.Error())
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		t0 := time.Now()
		if c.m != nil {
			var conn p2pconn.Connection
			id, _ := identity.FromPeerID(info.ID)
			if conn, err = c.m.Connect(cctx, id); err == nil {
				c.readers.Go(func() { readSkipwire(c.ctx, conn) })
			}
		} else {
			var s network.Stream
			if s, err = openRaw(cctx, c.h, *info); err == nil {
				c.readers.Go(func() { readRaw(s) })
			}
		}
		d := time.Since(t0)
		cancel()
		if err != nil {
			if len(res.ColdErrors) < 3 {
				res.ColdErrors = append(res.ColdErrors, cli.OneLine(err))
			}
			continue
		}
		took = append(took, d)
		res.ColdUs = append(res.ColdUs, float64(d.Nanoseconds())/1000)
	}
	res.ColdP50Us = float64(testkit.Percentile(took, 50).Nanoseconds()) / 1000
	res.ColdP99Us = float64(testkit.Percentile(took, 99).Nanoseconds()) / 1000
}
