package p2pconn

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/identity"
)

// Duplicate libp2p connections.
//
// When two hosts dial each other at once, go-libp2p keeps both connections.
// Only the host with the smaller Identifier closes duplicates, so the two
// sides never close different ones; it keeps the connection that carries its
// skipwire stream (settled or being set up) and closes the others. For peers
// without a skipwire stream it keeps a direct connection rather than a
// relayed one, then the connection with the most streams. A direct
// connection is never closed as a relayed one's duplicate: a skipwire
// connection on a relayed one moves to it (migrate).

// dedupeWorker collects peers to check and wakes the dedupe loop.
type dedupeWorker struct {
	mu    sync.Mutex
	peers map[peer.ID]struct{}
	wake  chan struct{}
}

func (d *dedupeWorker) init() {
	d.peers = make(map[peer.ID]struct{})
	d.wake = make(chan struct{}, 1)
}

// connected is the network notifiee's hook for new libp2p connections.
func (m *Manager) connected(_ network.Network, c network.Conn) {
	m.forgetFailure(c.RemotePeer())
	m.dedupeSoon(c.RemotePeer())
	m.kickResumption(c.RemotePeer())
}

// dedupeSoon schedules a duplicate check of p if this side is the one that
// closes duplicates.
func (m *Manager) dedupeSoon(p peer.ID) {
	if !m.closesDuplicates(p) {
		return
	}
	m.dedupe.mu.Lock()
	m.dedupe.peers[p] = struct{}{}
	m.dedupe.mu.Unlock()
	select {
	case m.dedupe.wake <- struct{}{}:
	default:
	}
}

// closesDuplicates reports whether this side closes duplicate connections to
// p: it does when its Identifier is the smaller (for peers without one, when
// its peer ID is).
func (m *Manager) closesDuplicates(p peer.ID) bool {
	if id, err := identity.FromPeerID(p); err == nil {
		return m.self.Compare(id) < 0
	}
	return string(m.h.ID()) < string(p)
}

func (m *Manager) dedupeLoop() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.dedupe.wake:
		}
		m.dedupe.mu.Lock()
		batch := m.dedupe.peers
		m.dedupe.peers = make(map[peer.ID]struct{})
		m.dedupe.mu.Unlock()
		for p := range batch {
			m.closeDuplicates(p)
		}
	}
}

// newConnGrace is how long a libp2p connection opened after the skipwire
// connection settled is spared by the duplicate cleanup.
const newConnGrace = time.Second

// recheckDelay is when duplicates are looked at again after a connection
// was kept for a skipwire stream the manager does not hold (yet).
const recheckDelay = 100 * time.Millisecond

// closeDuplicates closes every libp2p connection to p but the ones that
// carry a skipwire stream, in any state (settled, being set up, or opened by
// the remote and not read yet). While streams on two connections are still
// settling, it closes neither; the settled stream triggers another check. A
// connection opened after the skipwire connection settled is spared until
// newConnGrace has passed: the peer may be opening a new skipwire stream on
// it (it lost the old connection, or restarted), which it does right after
// dialing; a check follows then.
func (m *Manager) closeDuplicates(p peer.ID) {
	conns := m.h.Network().ConnsToPeer(p)
	if len(conns) < 2 {
		return
	}
	if m.migrate(p, conns) {
		return // the resumed stream's settling looks again
	}
	keep, settled, wait := m.skipwireConns(p)
	unregistered := false
	for _, c := range conns {
		if keep[c.ID()] {
			continue
		}
		for _, s := range c.GetStreams() {
			if isSkipwireProtocol(s.Protocol()) {
				// A stream the manager has not registered yet, or is
				// ending (a rejected opening): look again soon.
				keep[c.ID()] = true
				unregistered = true
				break
			}
		}
	}
	if unregistered {
		time.AfterFunc(recheckDelay, func() { m.dedupeSoon(p) })
	}
	if len(keep) == 0 {
		if wait {
			// A Connect is choosing its connection; its stream triggers a new check.
			return
		}
		var best network.Conn
		for _, c := range conns {
			if best == nil || better(c, best) {
				best = c
			}
		}
		keep[best.ID()] = true
	}
	keepDirect(conns, keep)
	now := time.Now()
	for _, c := range conns {
		if keep[c.ID()] {
			continue
		}
		if opened := c.Stat().Opened; !settled.IsZero() && opened.After(settled) {
			if left := min(newConnGrace, m.cfg.ConnectTimeout) - now.Sub(opened); left > 0 {
				time.AfterFunc(left, func() { m.dedupeSoon(p) })
				continue
			}
		}
		log.Debugw("closing duplicate libp2p connection", "peer", p, "conn", c.ID())
		_ = c.Close()
	}
}

// better reports whether c is a better connection to keep than d: direct
// rather than relayed, then the one with more streams.
func better(c, d network.Conn) bool {
	if cl, dl := c.Stat().Limited, d.Stat().Limited; cl != dl {
		return dl
	}
	return len(c.GetStreams()) > len(d.GetStreams())
}

// keepDirect keeps the direct connections too if every connection kept is
// relayed: a direct connection is never a relayed one's duplicate. The
// skipwire connection moves to it once its stream on the relayed one has
// settled (migrate, on the check that settling triggers); then the relayed
// one is the duplicate. (A hole punch can complete while the skipwire
// handshake on the relayed connection is still under way: closing the
// direct connection then would leave the peers relayed for good.)
func keepDirect(conns []network.Conn, keep map[string]bool) {
	for _, c := range conns {
		if keep[c.ID()] && !c.Stat().Limited {
			return
		}
	}
	for _, c := range conns {
		if !c.Stat().Limited && !c.IsClosed() {
			keep[c.ID()] = true
		}
	}
}

// skipwireConns returns the IDs of the libp2p connections that carry a
// skipwire stream to p the manager knows of, settled or being set up, and
// when the live connection settled (zero if none); wait is true when a
// Connect to p is under way without a stream yet.
func (m *Manager) skipwireConns(p peer.ID) (keep map[string]bool, settled time.Time, wait bool) {
	keep = make(map[string]bool, 2)
	id, err := identity.FromPeerID(p)
	if err != nil {
		return keep, settled, false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := m.peers[id]
	if st == nil {
		return keep, settled, false
	}
	if st.conn != nil && !st.conn.dead.Load() {
		if w := st.conn.wire(); w != nil {
			keep[w.s.Conn().ID()] = true
			settled = w.born
		}
	}
	for _, s := range []*inStream{st.in, st.parked} {
		if s != nil {
			keep[s.s.Conn().ID()] = true
		}
	}
	if st.out != nil {
		keep[st.out.s.Conn().ID()] = true
	}
	return keep, settled, st.dial != nil
}
