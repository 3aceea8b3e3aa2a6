package memnet

import (
	"context"
	"fmt"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Protect keeps idle closing (Config.IdleTimeout) and eviction
// (Config.EvictAtLimit) away from the connection to id, until Unprotect; it
// holds for a peer not connected yet too, and across reconnections and
// Disconnect. It does not block.
func (m *Manager) Protect(id identity.Identifier) {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	m.protected[id] = struct{}{}
}

// Unprotect undoes Protect. It does not block.
func (m *Manager) Unprotect(id identity.Identifier) {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	delete(m.protected, id)
}

// Probe returns the time it took to check that the connection to id is live
// (there is no wire to ping across); without a live connection, or while its
// session is resuming (there is no link to ping across), it fails at once
// with an error matching p2pconn.ErrConnectionClosed. It never connects.
func (m *Manager) Probe(ctx context.Context, id identity.Identifier) (time.Duration, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("probe %s: %w", id.Short(), err)
	}
	m.net.mu.Lock()
	c := m.conns[id]
	m.net.mu.Unlock()
	if c == nil || !c.IsAlive() {
		return 0, fmt.Errorf("probe %s: no live connection: %w", id.Short(), p2pconn.ErrConnectionClosed)
	}
	if c.resuming() {
		return 0, fmt.Errorf("probe %s: no live link, the session is resuming: %w", id.Short(), p2pconn.ErrConnectionClosed)
	}
	return max(time.Since(start), time.Nanosecond), nil
}

// victimLocked returns the connection that EvictAtLimit closes to make room:
// the least recently used one whose peer is not protected and whose session
// is not resuming. It returns nil without EvictAtLimit, or when no
// connection can go.
func (m *Manager) victimLocked() *Conn {
	if !m.cfg.EvictAtLimit {
		return nil
	}
	var lru *Conn
	var lruSeq uint64
	for id, c := range m.conns {
		if _, ok := m.protected[id]; ok {
			continue
		}
		c.p.mu.Lock()
		seq, resuming := c.p.useSeq, c.susp != nil
		c.p.mu.Unlock()
		if resuming {
			continue
		}
		if lru == nil || seq < lruSeq {
			lru, lruSeq = c, seq
		}
	}
	return lru
}

// closeIdle is the one goroutine of idle closing (Config.IdleTimeout), from
// NewManager until Close or Crash: it sleeps until the next connection may
// have become idle, then closes those that have.
func (m *Manager) closeIdle() {
	defer close(m.idleDone)
	t := time.NewTimer(m.cfg.IdleTimeout)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			t.Reset(m.sweepIdle())
		case <-m.quit:
			return
		}
	}
}

// sweepIdle closes, without loss, every connection of the pool that carried
// no message for IdleTimeout, has nothing waiting for Next on this side and
// no Send in progress, whose session is not resuming, and whose peer is not
// protected. It returns how long
// until the next sweep: until the first connection left may become idle, at
// most IdleTimeout (a connection busy or protected now is looked at again
// then).
func (m *Manager) sweepIdle() time.Duration {
	n := m.net
	n.mu.Lock()
	defer n.mu.Unlock()
	next := m.cfg.IdleTimeout
	if m.closed {
		return next
	}
	now := time.Now()
	for id, c := range m.conns {
		if _, ok := m.protected[id]; ok {
			continue
		}
		p := c.p
		p.mu.Lock()
		busy := len(c.queue) > 0 || c.sending > 0 || c.peer().sending > 0 || c.susp != nil
		left := p.usedAt.Add(m.cfg.IdleTimeout).Sub(now)
		switch {
		case busy:
		case left <= 0:
			c.retireLocked(fmt.Sprintf("idle for %s", now.Sub(p.usedAt).Round(time.Millisecond)))
		default:
			next = min(next, left)
		}
		p.mu.Unlock()
	}
	return max(next, time.Millisecond)
}

// waitIdleCloser waits until closeIdle, if it runs, has returned. The
// manager is closed already; the caller holds no lock.
func (m *Manager) waitIdleCloser() {
	if m.idleDone != nil {
		<-m.idleDone
	}
}

// remember records that the last attempt of a Connect to id failed at at
// with cause, a failure that may pass, for Config.UnreachableFor. It records
// nothing if the failure has passed already (the pair was healed, or id
// opened a connection meanwhile), and forgets the failures that have
// expired.
func (m *Manager) remember(id identity.Identifier, at time.Time, cause error) {
	if m.cfg.UnreachableFor < 0 {
		return
	}
	n := m.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if m.closed || !n.cutLocked(m.id, id) {
		return
	}
	if c := m.conns[id]; c != nil && !c.resuming() {
		return
	}
	for p, f := range m.unreachable {
		if time.Since(f.at) >= m.cfg.UnreachableFor {
			delete(m.unreachable, p)
		}
	}
	m.unreachable[id] = failure{at: at, cause: cause}
}

// recentFailureLocked returns the *p2pconn.UnreachableError of a Connect to
// id while a failure to reach it is remembered, else nil.
func (m *Manager) recentFailureLocked(id identity.Identifier) error {
	f, ok := m.unreachable[id]
	if !ok {
		return nil
	}
	if time.Since(f.at) >= m.cfg.UnreachableFor {
		delete(m.unreachable, id)
		return nil
	}
	return &p2pconn.UnreachableError{Peer: id, LastTried: f.at, Cause: f.cause}
}
