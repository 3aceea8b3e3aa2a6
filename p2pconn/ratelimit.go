package p2pconn

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/skipwire/skipwire/identity"
)

// Per-peer rate limits (Config.HandshakeRate, Config.MessageRate): token
// buckets from golang.org/x/time/rate. A handshake beyond its peer's rate
// is refused; a message beyond its connection's rate is read later, so the
// stream's flow control holds the sender back and nothing is dropped.

// handshakeLimiter keeps a token bucket per peer for the skipwire streams
// it opens to this node. A bucket that has filled up again is forgotten
// (it would allow as much as a new one), so the map holds only the peers
// that opened streams recently.
type handshakeLimiter struct {
	every rate.Limit // 0: no limit
	burst int

	mu        sync.Mutex
	peers     map[identity.Identifier]*peerBucket
	nextPrune int // prune when the map reaches this size
}

type peerBucket struct {
	lim    *rate.Limiter
	logged bool // the first refusal was logged
}

func (l *handshakeLimiter) init(cfg Config) {
	if cfg.HandshakeRate > 0 {
		l.every, l.burst = rate.Limit(cfg.HandshakeRate), cfg.HandshakeBurst
		l.peers = make(map[identity.Identifier]*peerBucket)
		l.nextPrune = 64
	}
}

// allow takes a token from id's bucket. It reports whether there was one,
// and, for a refusal, whether it is the first since the peer's bucket was
// made (to log once per peer).
func (l *handshakeLimiter) allow(id identity.Identifier, now time.Time) (ok, first bool) {
	if l.every == 0 {
		return true, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.peers[id]
	if b == nil {
		if len(l.peers) >= l.nextPrune {
			l.pruneLocked(now)
			l.nextPrune = max(64, 2*len(l.peers))
		}
		b = &peerBucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.peers[id] = b
	}
	if b.lim.AllowN(now, 1) {
		return true, false
	}
	first = !b.logged
	b.logged = true
	return false, first
}

// pruneLocked forgets the buckets that are full again. The caller holds
// l.mu.
func (l *handshakeLimiter) pruneLocked(now time.Time) {
	for id, b := range l.peers {
		if b.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.peers, id)
		}
	}
}

// readLimits is a connection's MessageRate bucket, shared by the readers
// of its successive streams.
type readLimits struct {
	messages *rate.Limiter // nil: no limit
	logged   atomic.Bool   // the first pause was logged
}

func (r *readLimits) init(cfg Config) {
	if cfg.MessageRate > 0 {
		r.messages = rate.NewLimiter(rate.Limit(cfg.MessageRate), cfg.MessageBurst)
	}
}

// pace takes a token for a message just read from w and, when the remote
// sends faster than MessageRate, stops reading until the bucket has it: the
// messages wait in the stream, whose flow control holds the remote's
// Sends back. It returns early when the connection is closed, dies or
// leaves w.
func (c *conn) pace(w *wire) {
	lim := c.limits.messages
	if lim == nil || c.dead.Load() {
		return
	}
	now := time.Now()
	d := lim.ReserveN(now, 1).DelayFrom(now)
	if d <= 0 {
		return
	}
	c.m.metrics.limited(limitMessage)
	if c.limits.logged.CompareAndSwap(false, true) {
		log.Infow("peer exceeds MessageRate: reading paused", "peer", c.id, "rate", c.m.cfg.MessageRate, "burst", c.m.cfg.MessageBurst)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.closing:
	case <-c.done:
	case <-w.gone:
	}
}

// allowHandshake applies HandshakeRate to a stream remote opened; a
// refusal is counted and, once per peer, logged.
func (m *Manager) allowHandshake(remote identity.Identifier) bool {
	ok, first := m.hsLimit.allow(remote, time.Now())
	if ok {
		return true
	}
	m.metrics.limited(limitHandshake)
	if first {
		log.Infow("refusing streams from peer: over HandshakeRate", "peer", remote, "rate", m.cfg.HandshakeRate, "burst", m.cfg.HandshakeBurst)
	}
	return false
}
