package memnet

import (
	"context"
	"fmt"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Protect keeps idle closing and eviction away from the connection to id,
// until Unprotect; it holds for a peer not connected yet too. It does not
// block.
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
// (there is no wire to ping across); without a live connection it fails at
// once with an error matching p2pconn.ErrConnectionClosed. It never connects.
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
	return max(time.Since(start), time.Nanosecond), nil
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
	if m.closed || !n.cutLocked(m.id, id) || m.conns[id] != nil {
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
