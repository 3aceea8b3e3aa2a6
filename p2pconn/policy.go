package p2pconn

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/skipwire/skipwire/identity"
)

// Protect implements ConnectionManager.
func (m *Manager) Protect(id identity.Identifier) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.protected[id] = struct{}{}
}

// Unprotect implements ConnectionManager.
func (m *Manager) Unprotect(id identity.Identifier) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.protected, id)
}

// isProtectedLocked reports whether idle closing and eviction must spare id.
// The caller holds m.mu.
func (m *Manager) isProtectedLocked(id identity.Identifier) bool {
	_, p := m.protected[id]
	_, k := m.persistent[id]
	return p || k
}

// Probe implements ConnectionManager with one libp2p ping over the libp2p
// connection that carries the skipwire stream.
func (m *Manager) Probe(ctx context.Context, id identity.Identifier) (time.Duration, error) {
	m.mu.RLock()
	c := m.liveConn(id)
	m.mu.RUnlock()
	if c == nil {
		err := fmt.Errorf("probe %s: no live connection: %w", id.Short(), ErrConnectionClosed)
		m.metrics.probe(err)
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res, ok := <-ping.Ping(network.WithNoDial(ctx, "skipwire probe"), m.h, id.PeerID())
	if !ok {
		res.Error = ctx.Err()
	}
	m.metrics.probe(res.Error)
	if res.Error != nil {
		return 0, fmt.Errorf("probe %s: %w", id.Short(), res.Error)
	}
	return res.RTT, nil
}

// failure is a Connect that failed for a reason that may pass.
type failure struct {
	at    time.Time
	cause error
}

// failures remembers the peers whose last Connect failed, for
// Config.UnreachableFor.
type failures struct {
	mu sync.Mutex
	m  map[identity.Identifier]failure
}

// record remembers that a Connect to id failed with err.
func (f *failures) record(id identity.Identifier, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = make(map[identity.Identifier]failure)
	}
	f.m[id] = failure{at: time.Now(), cause: err}
}

// recent returns the failure of id if it happened within window.
func (f *failures) recent(id identity.Identifier, window time.Duration) (failure, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, ok := f.m[id]
	if ok && time.Since(x.at) >= window {
		delete(f.m, id)
		ok = false
	}
	return x, ok
}

// forget clears id: it proved reachable.
func (f *failures) forget(id identity.Identifier) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, id)
}

// expire drops the failures older than window.
func (f *failures) expire(now time.Time, window time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, x := range f.m {
		if now.Sub(x.at) >= window {
			delete(f.m, id)
		}
	}
}

// recentFailure returns the failure that a Connect to id with settings s
// must reckon with (Config.UnreachableFor), if any.
func (m *Manager) recentFailure(id identity.Identifier, s ConnectSettings) (failure, bool) {
	if m.cfg.UnreachableFor < 0 || s.IgnoreRecentFailure {
		return failure{}, false
	}
	return m.failures.recent(id, m.cfg.UnreachableFor)
}

// waitOutFailure handles a Connect to a peer that failed recently (f): one
// that would not retry fails at once; one with retries counts f as its
// first failed attempt and waits until the window ends (or the peer
// reconnects, changed), then goes on with one retry less.
func (m *Manager) waitOutFailure(ctx context.Context, id identity.Identifier, s ConnectSettings, f failure, changed <-chan struct{}) (ConnectSettings, error) {
	if s.RetryAttempts == 0 {
		m.metrics.fastFailure()
		return s, &UnreachableError{Peer: id, LastTried: f.at, Cause: f.cause}
	}
	t := time.NewTimer(time.Until(f.at.Add(m.cfg.UnreachableFor)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-changed:
	case <-ctx.Done():
		return s, fmt.Errorf("connect %s: %w (failed %s ago: %w)", id.Short(), ctx.Err(), time.Since(f.at).Round(time.Millisecond), f.cause)
	case <-m.ctx.Done():
		return s, fmt.Errorf("connect %s: %w", id.Short(), ErrManagerClosed)
	}
	s.RetryAttempts--
	s.IgnoreRecentFailure = true
	return s, nil
}

// forgetFailure clears the failure of the peer behind a libp2p event.
func (m *Manager) forgetFailure(p peer.ID) {
	if id, err := identity.FromPeerID(p); err == nil {
		m.failures.forget(id)
	}
}

// checkIdle closes, in the background, the connections among conns that
// carried no message for IdleTimeout.
func (m *Manager) checkIdle(now time.Time, conns []*conn) {
	if m.cfg.IdleTimeout == 0 {
		return
	}
	for _, c := range conns {
		if time.Duration(monoTime(now)-c.lastUsed.Load()) < m.cfg.IdleTimeout || !m.retirable(c) {
			continue
		}
		m.goroutine(func() {
			if c.retire(closeIdle, true) {
				m.metrics.idleClose()
			}
		})
	}
}

// retirable reports whether idle closing and eviction may close c: not a
// protected or persistent peer, and a peer that takes part in the close
// exchange (a version-1 peer cannot).
func (m *Manager) retirable(c *conn) bool {
	if c.caps&capClose == 0 || c.dead.Load() {
		return false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return !m.isProtectedLocked(c.id)
}

// makeRoom closes the least recently used connection that may go, for a new
// connection to id at MaxConnections (Config.EvictAtLimit). It reports
// whether one was closed.
func (m *Manager) makeRoom(id identity.Identifier) bool {
	for range 3 {
		m.mu.RLock()
		if m.live+m.pending < m.cfg.MaxConnections || m.liveConn(id) != nil {
			m.mu.RUnlock()
			return true
		}
		var victim *conn
		var vused int64
		for pid, st := range m.peers {
			c := st.conn
			if c == nil || c.dead.Load() || c.caps&capClose == 0 || m.isProtectedLocked(pid) {
				continue
			}
			if used := c.lastUsed.Load(); victim == nil || used < vused {
				victim, vused = c, used
			}
		}
		m.mu.RUnlock()
		if victim == nil {
			return false
		}
		if victim.retire(closeEvicted, false) {
			log.Debugw("evicted a connection to make room", "peer", victim.id, "for", id)
			m.metrics.eviction()
			return true
		}
	}
	return false
}
