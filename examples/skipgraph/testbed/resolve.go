package testbed

import (
	"context"
	"errors"
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

// Where a resolution was answered, in Resolutions.add.
const (
	viaPeerstore = "peerstore"
	viaDHT       = "dht"
)

// resolverFor returns the resolver of one node: its peerstore, then its
// DHT; each resolution is reported to report (where, how long it took,
// whether it found the peer).
//
// It is not a resolver.NewChain: when the addresses a chain's first member
// gave do not answer, the manager asks the chain for other addresses
// (resolver.Fallback), which means a DHT lookup; for a node that crashed
// that lookup finds nothing, after hundreds of milliseconds, and every
// dial to a crashed node pays it. Here the DHT is asked only for the
// Identifiers the peerstore has no address for, so a node whose known
// address refuses is gone. (A network whose nodes move to new addresses
// wants the chain.)
func resolverFor(h host.Host, kad *dht.IpfsDHT, report func(how string, took time.Duration, ok bool)) resolver.AddressResolver {
	return knownFirst{
		known: counted{r: resolver.NewPeerstore(h.Peerstore()), done: func(d time.Duration, err error) { report(viaPeerstore, d, err == nil) }},
		dht:   counted{r: resolver.NewDHT(kad), done: func(d time.Duration, err error) { report(viaDHT, d, err == nil) }},
	}
}

// knownFirst resolves through known, or through dht when known has no
// address.
type knownFirst struct {
	known, dht resolver.AddressResolver
}

func (k knownFirst) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	info, err := k.known.Resolve(ctx, id)
	if err == nil || !errors.Is(err, resolver.ErrNotFound) {
		return info, err
	}
	return k.dht.Resolve(ctx, id)
}

// add counts one resolution: how (viaPeerstore or viaDHT), how long it
// took and whether it found the peer. A peerstore without the address is
// not counted: the DHT is asked next.
func (r *Resolutions) add(how string, took time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case how == viaPeerstore:
		if ok {
			r.peerstore++
		}
	case ok:
		r.lookups = append(r.lookups, took)
	default:
		r.failed++
	}
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
