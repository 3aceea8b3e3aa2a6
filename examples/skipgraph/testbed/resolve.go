package testbed

import (
	"context"
	"slices"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/resolver"
)

// Resolutions counts how the nodes' managers resolved Identifiers: from the
// host's peerstore (addresses the host already knows: peers met through
// the DHT or connected before), or by a Kademlia DHT lookup. It is safe for
// concurrent use.
type Resolutions struct {
	mu        sync.Mutex
	peerstore int
	lookups   []time.Duration
	failed    int
}

// wrap returns the resolver of one node: its peerstore, then its DHT,
// both counted.
func (r *Resolutions) wrap(h host.Host, kad *dht.IpfsDHT) resolver.AddressResolver {
	return resolver.NewChain(
		counted{r: resolver.NewPeerstore(h.Peerstore()), done: r.fromPeerstore},
		counted{r: resolver.NewDHT(kad), done: r.fromDHT},
	)
}

func (r *Resolutions) fromPeerstore(_ time.Duration, err error) {
	if err == nil {
		r.mu.Lock()
		r.peerstore++
		r.mu.Unlock()
	}
}

func (r *Resolutions) fromDHT(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failed++
		return
	}
	r.lookups = append(r.lookups, d)
}

// Counts returns the resolutions answered by peerstores, the DHT lookups
// that found the peer (with their durations) and those that failed.
func (r *Resolutions) Counts() (peerstore int, lookups []time.Duration, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peerstore, slices.Clone(r.lookups), r.failed
}

// counted is a resolver that reports each resolution's outcome.
type counted struct {
	r    resolver.AddressResolver
	done func(time.Duration, error)
}

func (c counted) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	t0 := time.Now()
	info, err := c.r.Resolve(ctx, id)
	c.done(time.Since(t0), err)
	return info, err
}
