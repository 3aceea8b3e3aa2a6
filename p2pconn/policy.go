package p2pconn

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
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
		return 0, fmt.Errorf("probe %s: no live connection: %w", id.Short(), ErrConnectionClosed)
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
