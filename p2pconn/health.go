package p2pconn

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

// healthLoop pings every connection that has received nothing for
// KeepaliveInterval and declares it lost if the ping fails or takes longer
// than KeepaliveTimeout. A frozen peer is thus detected within about
// KeepaliveInterval + KeepaliveTimeout; a closed or reset one at once, by its
// reader.
func (m *Manager) healthLoop() {
	tick := m.cfg.KeepaliveInterval / 20
	if m.cfg.IdleTimeout > 0 {
		tick = min(tick, m.cfg.IdleTimeout/4)
	}
	tick = max(tick, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-t.C:
			m.checkHealth(now)
		}
	}
}

func (m *Manager) checkHealth(now time.Time) {
	m.mu.RLock()
	conns := make([]*conn, 0, m.live)
	for _, st := range m.peers {
		if st.conn != nil && !st.conn.dead.Load() {
			conns = append(conns, st.conn)
		}
	}
	m.mu.RUnlock()
	m.checkIdle(now, conns)
	if m.cfg.UnreachableFor > 0 {
		m.failures.expire(now, m.cfg.UnreachableFor)
	}
	for _, c := range conns {
		c.memoryRound()
		if n := c.received.Load(); n != c.seen {
			c.seen, c.lastSeen = n, now
			continue
		}
		silence := now.Sub(c.lastSeen)
		if c.inFrame.Load() && silence >= m.cfg.KeepaliveInterval+m.cfg.KeepaliveTimeout {
			// The remote started a frame and stopped sending: it may
			// answer pings, but the stream is stuck. Or the link died
			// mid-frame: a session that can resume does, on a new stream.
			stalled := fmt.Errorf("no byte of a started frame for %s", silence.Round(time.Millisecond))
			if c.suspend("health check", stalled) {
				continue
			}
			log.Warnw("closing connection: frame stalled", "peer", c.id, "addr", c.addr, "for", silence)
			m.metrics.frameError("frame")
			c.fail("read", fmt.Errorf("%w: %w", errFraming, stalled))
			continue
		}
		if silence < m.cfg.KeepaliveInterval || !c.pinging.CompareAndSwap(false, true) {
			continue
		}
		m.goroutine(func() { m.ping(c) })
	}
}

// ping checks c's peer with libp2p's ping protocol.
func (m *Manager) ping(c *conn) {
	defer c.pinging.Store(false)
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.KeepaliveTimeout)
	defer cancel()
	res, ok := <-ping.Ping(network.WithNoDial(ctx, "skipwire health check"), m.h, c.id.PeerID())
	if m.ctx.Err() != nil || c.dead.Load() {
		return
	}
	if !ok {
		res.Error = ctx.Err()
	}
	if res.Error != nil {
		c.lose("health check", res.Error)
		return
	}
	if !c.inFrame.Load() {
		c.received.Add(1) // counts as a sign of life for the next check
	}
}
