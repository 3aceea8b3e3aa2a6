package resolver

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
)

// minSweep is the table size below which the Cache does not bother removing
// expired entries.
const minSweep = 1024

// Cache remembers the answers of another resolver and shares lookups. Its
// methods are safe for concurrent use; the zero value is not usable, call
// NewCache.
//
// An answer is kept for ttl; an error wrapping ErrNotFound for negativeTTL
// (keep it short: a node that was not found may join at any moment). Other
// errors, a ctx that ended among them, are never kept. A ttl or negativeTTL
// of zero or less keeps nothing of that kind.
//
// Concurrent Resolve calls for one Identifier share one call of the
// underlying resolver. That call runs on its own goroutine with a context
// that keeps the values of the first caller's ctx, not its deadline, and is
// cancelled when every caller waiting for it has given up; so each caller
// returns when its own ctx ends, without cutting short the others' lookup.
// The Cache has nothing to close: that goroutine ends when the underlying
// Resolve returns.
//
// When the addresses of an answer turn out not to work, Invalidate forgets
// it, and ResolveExcept (Fallback) asks the resolver behind the Cache for
// other addresses; the connection manager does both.
type Cache struct {
	r           AddressResolver
	ttl         time.Duration
	negativeTTL time.Duration
	now         func() time.Time // time.Now; tests replace it

	mu        sync.Mutex
	entries   map[identity.Identifier]cacheEntry
	flights   map[identity.Identifier]*flight
	sweepSize int // sweep expired entries when len(entries) reaches this
}

var (
	_ AddressResolver = (*Cache)(nil)
	_ Invalidator     = (*Cache)(nil)
	_ Fallback        = (*Cache)(nil)
)

// cacheEntry is one remembered answer: info, or err wrapping ErrNotFound.
type cacheEntry struct {
	info    peer.AddrInfo
	err     error
	expires time.Time
}

// flight is one call of the underlying resolver, shared by its waiters.
type flight struct {
	done    chan struct{} // closed when info and err are set
	info    peer.AddrInfo
	err     error
	waiters int                // callers waiting; guarded by Cache.mu
	cancel  context.CancelFunc // cancels the call
}

// NewCache returns a Cache in front of r that keeps answers for ttl and
// not-found errors for negativeTTL.
func NewCache(r AddressResolver, ttl, negativeTTL time.Duration) *Cache {
	return &Cache{
		r:           r,
		ttl:         ttl,
		negativeTTL: negativeTTL,
		now:         time.Now,
		entries:     make(map[identity.Identifier]cacheEntry),
		flights:     make(map[identity.Identifier]*flight),
		sweepSize:   minSweep,
	}
}

// Resolve implements AddressResolver: it returns the remembered answer for id
// if it has not expired, else joins the lookup in progress for id or starts
// one. It blocks until the lookup ends or ctx ends.
func (c *Cache) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	if err := ctx.Err(); err != nil {
		return peer.AddrInfo{}, newError(id, "cache", err)
	}
	c.mu.Lock()
	if e, ok := c.entries[id]; ok {
		if c.now().Before(e.expires) {
			c.mu.Unlock()
			return e.answer()
		}
		delete(c.entries, id)
	}
	f := c.flights[id]
	if f == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		c.flights[id] = f
		go c.run(fctx, id, f)
	}
	f.waiters++
	c.mu.Unlock()

	select {
	case <-f.done:
		return cacheEntry{info: f.info, err: f.err}.answer()
	case <-ctx.Done():
		c.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Nobody wants the answer any more: stop the lookup, and let
			// the next caller start a fresh one.
			f.cancel()
			if c.flights[id] == f {
				delete(c.flights, id)
			}
		}
		c.mu.Unlock()
		return peer.AddrInfo{}, newError(id, "cache", ctx.Err())
	}
}

// run calls the underlying resolver for f and remembers what is worth it.
func (c *Cache) run(ctx context.Context, id identity.Identifier, f *flight) {
	defer f.cancel()
	info, err := c.r.Resolve(ctx, id)
	if err == nil {
		err = checkAnswer(id, info, "cache")
	}
	if err != nil {
		info = peer.AddrInfo{}
	}

	c.mu.Lock()
	f.info, f.err = info, err
	// A flight that is no longer current was invalidated or abandoned: its
	// waiters get its answer, but it is not remembered.
	if c.flights[id] == f {
		delete(c.flights, id)
		c.rememberLocked(id, info, err)
	}
	c.mu.Unlock()
	close(f.done)
}

// rememberLocked stores an answer or a not-found error, if the TTLs allow.
func (c *Cache) rememberLocked(id identity.Identifier, info peer.AddrInfo, err error) {
	var ttl time.Duration
	switch {
	case err == nil:
		ttl = c.ttl
	case errors.Is(err, ErrNotFound) && !isCtxErr(err):
		ttl = c.negativeTTL
	}
	if ttl <= 0 {
		return
	}
	now := c.now()
	if len(c.entries) >= c.sweepSize {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		c.sweepSize = max(minSweep, 2*len(c.entries))
	}
	c.entries[id] = cacheEntry{info: info, err: err, expires: now.Add(ttl)}
}

// Invalidate implements Invalidator: it forgets the answer remembered for id,
// and detaches a lookup in progress so that its answer is not remembered and
// later calls start a new one.
func (c *Cache) Invalidate(id identity.Identifier) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, id)
	delete(c.flights, id)
}

// ResolveExcept implements Fallback: it returns the remembered answer's
// addresses that are not in tried, if any; else it asks the resolver behind
// it for an answer with other addresses (through its ResolveExcept if it is a
// Fallback, else through Resolve), and remembers that answer in place of the
// old one. It shares no lookup with Resolve and remembers no error.
func (c *Cache) ResolveExcept(ctx context.Context, id identity.Identifier, tried []ma.Multiaddr) (peer.AddrInfo, error) {
	if err := ctx.Err(); err != nil {
		return peer.AddrInfo{}, newError(id, "cache", err)
	}
	c.mu.Lock()
	if e, ok := c.entries[id]; ok && e.err == nil && c.now().Before(e.expires) {
		if addrs := untried(e.info.Addrs, tried); len(addrs) > 0 {
			c.mu.Unlock()
			return peer.AddrInfo{ID: e.info.ID, Addrs: addrs}, nil
		}
	}
	c.mu.Unlock()

	info, err := ask(ctx, c.r, id, tried)
	if err == nil {
		err = checkAnswer(id, info, "cache")
	}
	if err == nil {
		if info.Addrs = untried(info.Addrs, tried); len(info.Addrs) == 0 {
			err = newError(id, "cache", errAllTried)
		}
	}
	if err != nil {
		return peer.AddrInfo{}, err
	}
	c.mu.Lock()
	c.rememberLocked(id, info, nil)
	c.mu.Unlock()
	return peer.AddrInfo{ID: info.ID, Addrs: slices.Clone(info.Addrs)}, nil
}

// answer returns the entry as Resolve's results, with a copy of the addresses
// so callers cannot change what the Cache holds.
func (e cacheEntry) answer() (peer.AddrInfo, error) {
	if e.err != nil {
		return peer.AddrInfo{}, e.err
	}
	return peer.AddrInfo{ID: e.info.ID, Addrs: slices.Clone(e.info.Addrs)}, nil
}
