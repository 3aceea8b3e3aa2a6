package sg

import (
	"context"
	"errors"
	"math/bits"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// retryDelay is how soon the maintenance loop tries again when a repair
// could not finish (a node on the way was itself being repaired).
const retryDelay = 50 * time.Millisecond

// maintain is the node's maintenance loop. It acts on the manager's
// connection events (a neighbour that left or was lost), on the levels that
// handlers and routing marked for repair, and every StabilizeInterval on a
// check of the table. Repairs are serialized with Join and Leave (maintMu).
func (n *Node) maintain() {
	tick := time.NewTimer(n.jitter())
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev, ok := <-n.events:
			if !ok {
				n.events = nil
				continue
			}
			n.onEvent(ev)
		case <-n.kick:
		case <-retry.C:
		case <-tick.C:
			n.stabilize()
			tick.Reset(n.jitter())
		}
		if !n.repair() {
			retry.Reset(retryDelay)
		}
		n.syncProtection()
	}
}

// jitter returns StabilizeInterval give or take a quarter, so that the
// nodes' checks do not run in step.
func (n *Node) jitter() time.Duration {
	d := n.cfg.StabilizeInterval
	return d*3/4 + rand.N(d/2+1)
}

// onEvent acts on a connection event: a neighbour's connection that ended
// because the node left (p2pconn.ErrPeerLeft) drops the neighbour at once;
// any other end makes it a suspect, which repair confirms by connecting
// again (with retries) before dropping it.
func (n *Node) onEvent(ev p2pconn.Event) {
	if ev.Kind != p2pconn.EventDisconnected || n.connected(ev.Peer) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	inTable := n.table.Has(ev.Peer)
	if !inTable && !n.inNearLocked(ev.Peer) {
		return
	}
	switch {
	case errors.Is(ev.Err, p2pconn.ErrPeerLeft):
		n.markGoneLocked(ev.Peer, true)
	case inTable:
		n.suspects[ev.Peer] = ev.Err
	default:
		n.near.remove(ev.Peer) // a backup we no longer hear from
	}
}

func (n *Node) inNearLocked(id identity.Identifier) bool {
	for _, s := range []Side{Left, Right} {
		for _, p := range n.near.side(s) {
			if p.ID == id {
				return true
			}
		}
	}
	return false
}

// suspect records that a message to id failed: repair confirms it.
func (n *Node) suspect(id identity.Identifier, err error) {
	n.mu.Lock()
	if !n.isGoneLocked(id) {
		n.suspects[id] = err
	}
	n.mu.Unlock()
	n.wake()
}

// repair confirms suspects, reconnects neighbours and derives the dirty
// levels again. It reports false when work is left for a retry.
func (n *Node) repair() bool {
	n.maintMu.Lock()
	defer n.maintMu.Unlock()
	if !n.maintaining() {
		return true
	}
	n.confirmSuspects()
	n.ensureConnected()
	return n.fixDirty()
}

// maintaining reports whether the node is in the skip graph, joining or
// joined, and not closed.
func (n *Node) maintaining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ctx.Err() == nil && (n.state == stateJoining || n.state == stateJoined)
}

// confirmSuspects connects to each suspect, with the maintenance retries:
// one that cannot be reached is gone.
func (n *Node) confirmSuspects() {
	n.mu.Lock()
	var ids []identity.Identifier
	for id := range n.suspects {
		ids = append(ids, id)
	}
	clear(n.suspects)
	n.mu.Unlock()
	n.connectAll(ids)
}

// ensureConnected connects to every neighbour without a live connection, so
// that the manager reports its loss; one that cannot be reached is gone.
func (n *Node) ensureConnected() {
	var ids []identity.Identifier
	for _, p := range n.Table().Neighbours() {
		if !n.connected(p.ID) {
			ids = append(ids, p.ID)
		}
	}
	n.connectAll(ids)
}

// connectAll connects to ids at once; those that fail are marked gone.
func (n *Node) connectAll(ids []identity.Identifier) {
	var wg sync.WaitGroup
	for _, id := range ids {
		if n.connected(id) {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
			defer cancel()
			_, err := n.mgr.Connect(ctx, id, n.cfg.MaintenanceConnect...)
			if err == nil || n.ctx.Err() != nil {
				return
			}
			log.Debugw("peer unreachable: dropped", "self", n.self, "peer", id.Short(), "err", err)
			n.mu.Lock()
			n.markGoneLocked(id, errors.Is(err, p2pconn.ErrPeerLeft))
			n.mu.Unlock()
		})
	}
	wg.Wait()
}

// fixDirty derives the levels marked dirty again, lowest first: a level is
// derived from the one below it, and a change at one level marks the
// level above on the same side. It reports false if some are left for a
// retry.
func (n *Node) fixDirty() bool {
	for range 4 * MaxLevels {
		if n.ctx.Err() != nil {
			return true
		}
		n.mu.Lock()
		level, side, ok := n.lowestDirtyLocked()
		if ok {
			n.dirty[side] &^= 1 << level
		}
		n.mu.Unlock()
		if !ok {
			return true
		}
		changed, err := n.fixLevel(level, side)
		n.mu.Lock()
		if err != nil {
			n.dirty[side] |= 1 << level
			n.mu.Unlock()
			log.Debugw("repair postponed", "self", n.self, "level", level, "side", side, "err", err)
			return false
		}
		if changed && level+1 < MaxLevels {
			n.dirty[side] |= 1 << (level + 1)
		}
		n.mu.Unlock()
	}
	return false
}

// lowestDirtyLocked returns the lowest dirty level, left side first.
func (n *Node) lowestDirtyLocked() (int, Side, bool) {
	l, r := n.dirty[Left], n.dirty[Right]
	if l|r == 0 {
		return 0, Left, false
	}
	il, ir := bits.TrailingZeros64(l), bits.TrailingZeros64(r)
	if il <= ir {
		return il, Left, true
	}
	return ir, Right, true
}

// stabilize checks that the level-0 neighbours, and those of one other
// level in turn, point back at this node, and marks for repair the sides
// that do not; every FullCheckEvery rounds it marks every level. It also
// forgets the peers gone for longer than GoneFor.
func (n *Node) stabilize() {
	n.maintMu.Lock()
	defer n.maintMu.Unlock()
	if !n.maintaining() {
		return
	}
	n.mu.Lock()
	n.check++
	round := n.check
	height := n.table.Height()
	for id, g := range n.gone {
		if time.Since(g.at) > n.cfg.GoneFor {
			delete(n.gone, id)
		}
	}
	if round%n.cfg.FullCheckEvery == 0 {
		all := uint64(1)<<min(height+1, MaxLevels-1) - 1
		n.dirty[Left] |= all
		n.dirty[Right] |= all
	}
	n.mu.Unlock()

	levels := []int{0}
	if height > 1 {
		levels = append(levels, 1+round%(height-1))
	}
	for _, lv := range levels {
		for _, s := range []Side{Left, Right} {
			n.checkLevel(lv, s)
		}
	}
}

// checkLevel marks level lv on side s for repair unless the neighbour there
// points back at this node (or, with no neighbour, there is no sign that
// one is missing).
func (n *Node) checkLevel(lv int, s Side) {
	n.mu.Lock()
	p := n.table.At(lv).Get(s)
	missing := false
	if p.IsZero() {
		if lv == 0 {
			missing = len(n.near.side(s)) > 0
		} else {
			below := n.table.At(lv - 1).Get(s)
			missing = !below.IsZero() && below.SharesLevel(n.self, lv)
		}
	}
	if missing {
		n.dirty[s] |= 1 << lv
	}
	n.mu.Unlock()
	if p.IsZero() {
		return
	}
	t, err := n.getTable(p.ID)
	if err != nil {
		return // getTable dropped it
	}
	if t.table.At(lv).Get(s.Opposite()).ID != n.self.ID {
		n.mu.Lock()
		n.dirty[s] |= 1 << lv
		n.mu.Unlock()
	}
}
