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

// retryDelay is how soon the maintenance loop first tries again when a
// repair could not finish (a node on the way was itself being repaired);
// each failure in a row doubles it, up to maxRetryDelay.
const (
	retryDelay    = 50 * time.Millisecond
	maxRetryDelay = 400 * time.Millisecond
)

// watch acts on the manager's connection events (a neighbour that left or
// was lost) as they come; what it starts wakes the maintenance loop.
func (n *Node) watch() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev, ok := <-n.events:
			if !ok {
				return
			}
			n.onEvent(ev)
		}
	}
}

// maintain is the node's maintenance loop. It repairs the levels that
// handlers, routing and lost neighbours marked, and every StabilizeInterval
// checks the table. Repairs are serialized with Join and Leave (maintMu).
func (n *Node) maintain() {
	tick := time.NewTimer(n.jitter())
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	wait := retryDelay
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.kick:
		case <-retry.C:
		case <-tick.C:
			n.stabilize()
			tick.Reset(n.jitter())
		}
		if n.repair() {
			wait = retryDelay
		} else {
			retry.Reset(wait)
			wait = min(2*wait, maxRetryDelay, n.cfg.StabilizeInterval)
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

// onEvent acts on a connection event. A neighbour (or backup) whose
// connection ended because the node left (p2pconn.ErrPeerLeft) is dropped
// for good. So is, for now, a neighbour whose connection was lost (a crash,
// a cut): the loss, not a later failure to reach it, is what the table
// acts on, and a check in the background takes the neighbour back if it
// can be reached after all. A neighbour whose connection was closed
// cleanly (idle closing on its side, a Disconnect) is connected again. With
// session resumption (p2pconn.Config.ResumeWindow), the loss is announced
// by EventResuming while the connection lives on: the table acts on that,
// not on the end of the window.
func (n *Node) onEvent(ev p2pconn.Event) {
	resuming := ev.Kind == p2pconn.EventResuming
	if !resuming && (ev.Kind != p2pconn.EventDisconnected || n.connected(ev.Peer)) {
		return
	}
	n.mu.Lock()
	inTable := n.table.Has(ev.Peer)
	known := inTable || n.inNearLocked(ev.Peer)
	n.mu.Unlock()
	switch {
	case !known:
	case resuming:
		n.drop(ev.Peer, ev.Err)
	case errors.Is(ev.Err, p2pconn.ErrPeerLeft):
		log.Debugw("neighbour left", "self", n.self, "peer", ev.Peer.Short())
		n.mu.Lock()
		n.markGoneLocked(ev.Peer, true)
		n.mu.Unlock()
		n.wake()
	case errors.Is(ev.Err, p2pconn.ErrConnectionLost):
		n.drop(ev.Peer, ev.Err)
	case inTable:
		n.reconnect(ev.Peer)
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

// drop marks id gone after its connection was lost or a message to it
// failed, and checks in the background whether it can be reached after
// all. A failure caused by this node closing says nothing about id, and
// neither does a timeout while the connection to id is alive (id is slow,
// or pushes back) or a clean close of the connection (idle closing).
func (n *Node) drop(id identity.Identifier, err error) {
	if n.ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	if errors.Is(err, context.DeadlineExceeded) && n.connected(id) {
		log.Debugw("peer slow to answer", "self", n.self, "peer", id.Short(), "err", err)
		return
	}
	if errors.Is(err, p2pconn.ErrConnectionClosed) && !lostOrLeft(err) {
		// A clean close (idle closing on its side) that a message crossed:
		// the peer is there; the next message opens a new connection.
		log.Debugw("connection closed under a message", "self", n.self, "peer", id.Short(), "err", err)
		return
	}
	n.mu.Lock()
	if n.isGoneLocked(id) {
		n.mu.Unlock()
		return
	}
	log.Debugw("peer dropped", "self", n.self, "peer", id.Short(), "err", err)
	left := errors.Is(err, p2pconn.ErrPeerLeft)
	n.markGoneLocked(id, left)
	n.mu.Unlock()
	n.wake()
	if !left {
		n.recheck(id)
	}
}

// reconnect connects to neighbour id again, with the maintenance retries,
// in the background; if it cannot, id is dropped.
func (n *Node) reconnect(id identity.Identifier) {
	n.reach(id, func(err error) {
		if err != nil {
			n.drop(id, err)
		}
	})
}

// recheck tries to reach a peer dropped as failed, with the maintenance
// retries, in the background; if it answers, it is no longer gone and every
// level is derived again, which links it back where it belongs.
func (n *Node) recheck(id identity.Identifier) {
	n.reach(id, func(err error) {
		if err != nil {
			return
		}
		n.mu.Lock()
		if g, ok := n.gone[id]; ok && !g.left {
			log.Debugw("dropped peer reachable again", "self", n.self, "peer", id.Short())
			delete(n.gone, id)
			n.near.add(g.peer)
			all := uint64(1)<<min(n.table.Height()+1, MaxLevels-1) - 1
			n.dirty[Left] |= all
			n.dirty[Right] |= all
		}
		n.mu.Unlock()
		n.wake()
	})
}

// reach connects to id with the maintenance retries on a goroutine of its
// own, one at a time per peer, and calls then with the outcome.
func (n *Node) reach(id identity.Identifier, then func(error)) {
	n.mu.Lock()
	if n.reaching[id] {
		n.mu.Unlock()
		return
	}
	n.reaching[id] = true
	n.mu.Unlock()
	started := n.spawn(func() {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
		defer cancel()
		_, err := n.mgr.Connect(ctx, id, n.cfg.MaintenanceConnect...)
		n.mu.Lock()
		delete(n.reaching, id)
		n.mu.Unlock()
		if n.ctx.Err() == nil {
			then(err)
		}
	})
	if !started {
		n.mu.Lock()
		delete(n.reaching, id)
		n.mu.Unlock()
	}
}

// repair reconnects neighbours and derives the dirty levels again. It
// reports false when work is left for a retry.
func (n *Node) repair() bool {
	n.maintMu.Lock()
	defer n.maintMu.Unlock()
	if !n.maintaining() {
		return true
	}
	for _, p := range n.Table().Neighbours() {
		if !n.connected(p.ID) {
			n.reconnect(p.ID)
		}
	}
	return n.fixDirty()
}

// maintaining reports whether the node is in the skip graph, joining or
// joined, and not closed.
func (n *Node) maintaining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ctx.Err() == nil && (n.state == stateJoining || n.state == stateJoined)
}

// fixDirty derives the levels marked dirty again, lowest first: a level is
// derived from the one below it, and a change at one level marks the
// level above on the same side. A level that cannot be derived now (the
// nodes on the way are being repaired) stays dirty, and so do the levels
// above it on that side. It reports false if some are left for a retry.
func (n *Node) fixDirty() bool {
	blocked := [2]int{MaxLevels, MaxLevels} // by side: levels from there on wait
	for range 4 * MaxLevels {
		if n.ctx.Err() != nil {
			return true
		}
		n.mu.Lock()
		level, side, ok := n.nextDirtyLocked(blocked)
		if ok {
			n.dirty[side] &^= 1 << level
			n.fixing[side] |= 1 << level
		}
		n.mu.Unlock()
		if !ok {
			break
		}
		changed, err := n.fixLevel(level, side)
		n.mu.Lock()
		n.fixing[side] &^= 1 << level
		switch {
		case err != nil:
			n.dirty[side] |= 1 << level
			blocked[side] = level
			log.Debugw("repair postponed", "self", n.self, "level", level, "side", side, "err", err)
		case changed && level+1 < MaxLevels:
			n.dirty[side] |= 1 << (level + 1)
		}
		n.mu.Unlock()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dirty[Left]|n.dirty[Right] == 0
}

// nextDirtyLocked returns the lowest dirty level below blocked on its
// side, left side first.
func (n *Node) nextDirtyLocked(blocked [2]int) (int, Side, bool) {
	var lv [2]int
	for _, s := range []Side{Left, Right} {
		lv[s] = MaxLevels
		if d := n.dirty[s] & (1<<blocked[s] - 1); d != 0 {
			lv[s] = bits.TrailingZeros64(d)
		}
	}
	switch {
	case lv[Left] == MaxLevels && lv[Right] == MaxLevels:
		return 0, Left, false
	case lv[Left] <= lv[Right]:
		return lv[Left], Left, true
	default:
		return lv[Right], Right, true
	}
}

// stabilize checks the table against the neighbours' own: every
// neighbour is asked once for its table, and a side of a level whose
// neighbour does not point back at this node is marked for repair, as is
// a side without a neighbour where the level below has one (a node there
// may share the level's bits). Every FullCheckEvery rounds every level is
// marked. It also forgets the peers gone for longer than GoneFor.
func (n *Node) stabilize() {
	n.maintMu.Lock()
	defer n.maintMu.Unlock()
	if !n.maintaining() {
		return
	}
	n.mu.Lock()
	n.check++
	t := n.table.Clone()
	for id, g := range n.gone {
		if time.Since(g.at) > n.cfg.GoneFor {
			delete(n.gone, id)
		}
	}
	var dirty [2]uint64
	if n.check%n.cfg.FullCheckEvery == 0 {
		all := uint64(1)<<min(t.Height()+1, MaxLevels-1) - 1
		dirty = [2]uint64{all, all}
	}
	for _, s := range []Side{Left, Right} {
		if t.At(0).Get(s).IsZero() && len(n.near.side(s)) > 0 {
			dirty[s] |= 1
		}
		for i := 1; i <= t.Height() && i < MaxLevels; i++ {
			if t.At(i).Get(s).IsZero() && !t.At(i-1).Get(s).IsZero() {
				dirty[s] |= 1 << i
			}
		}
	}
	n.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range t.Neighbours() {
		wg.Go(func() {
			r, err := n.getTable(p.ID)
			if err != nil {
				return // getTable dropped it
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			for i, l := range t.Levels {
				for _, s := range []Side{Left, Right} {
					if l.Get(s).ID == p.ID && r.table.At(i).Get(s.Opposite()).ID != n.self.ID {
						n.dirty[s] |= 1 << i
					}
				}
			}
		})
	}
	wg.Wait()
	n.mu.Lock()
	n.dirty[Left] |= dirty[Left]
	n.dirty[Right] |= dirty[Right]
	n.mu.Unlock()
}
