package p2pconn

import (
	"context"
	"fmt"
	"time"

	"github.com/skipwire/skipwire/identity"
)

// AddPersistentPeer asks the manager to keep a connection to id up: it
// connects now, in the background, and again whenever the connection dies,
// waiting between failed rounds with jittered exponential backoff from
// RetryDelay up to MaxRetryDelay. It returns at once; adding a peer twice is a
// no-op. Subscribe reports the connections it makes.
func (m *Manager) AddPersistentPeer(id identity.Identifier) error {
	if id == m.self {
		return fmt.Errorf("persistent peer %s: %w", id.Short(), ErrSelfConnect)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("persistent peer %s: %w", id.Short(), ErrManagerClosed)
	}
	if _, ok := m.persistent[id]; ok {
		return nil
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.persistent[id] = cancel
	m.goroutine(func() { m.keep(ctx, id) })
	return nil
}

// RemovePersistentPeer stops keeping a connection to id up. The current
// connection, if any, stays open.
func (m *Manager) RemovePersistentPeer(id identity.Identifier) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cancel, ok := m.persistent[id]; ok {
		cancel()
		delete(m.persistent, id)
	}
}

// PersistentPeers returns the peers the manager keeps connected.
func (m *Manager) PersistentPeers() []identity.Identifier {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := make([]identity.Identifier, 0, len(m.persistent))
	for id := range m.persistent {
		ids = append(ids, id)
	}
	return ids
}

// keep connects to id and reconnects whenever the connection dies, until ctx ends.
func (m *Manager) keep(ctx context.Context, id identity.Identifier) {
	failures, connected := 0, false
	for {
		c, err := m.Connect(ctx, id, IgnoreRecentFailure())
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			delay := m.backoff(failures)
			log.Debugw("persistent peer unreachable", "peer", id, "failures", failures, "retry in", delay, "err", err)
			if !sleep(ctx, delay) {
				return
			}
			continue
		}
		failures = 0
		if connected {
			m.metrics.reconnect()
		}
		connected = true
		select {
		case <-c.Done():
		case <-ctx.Done():
			return
		}
		log.Debugw("persistent peer disconnected, reconnecting", "peer", id, "err", c.Err())
		// A short pause, so a peer that closes every connection at once is not
		// redialed in a tight loop.
		if !sleep(ctx, m.backoff(1)) {
			return
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
