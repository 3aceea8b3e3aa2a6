package sg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/skipwire/skipwire/identity"
)

// Join makes the node part of the skip graph that introducer belongs to,
// or starts a new skip graph when introducer is the zero Identifier or the
// node itself. It returns once the node is linked at every level:
//
//  1. the introducer searches for the node's key and answers with the node
//     that will be its level-0 neighbour;
//  2. level 0: the node links to that neighbour and to the neighbour's
//     neighbour on the other side, each of which takes it in place of the
//     other (a link is refused, naming the closer node, if another node
//     joined in between: the joining node then links to that one);
//  3. level i+1 from level i, until the node is alone: walking along its
//     level-i list on each side to the first node that shares i+1 bits of
//     membership vector, and linking to it.
//
// Join retries the search until ctx ends; the links are retried as a
// repair is. It fails with ErrKeyTaken if a node of the skip graph has the
// node's key.
func (n *Node) Join(ctx context.Context, introducer identity.Identifier) error {
	n.maintMu.Lock()
	defer n.maintMu.Unlock()
	if err := n.closed(); err != nil {
		return err
	}
	n.mu.Lock()
	if n.state != 0 {
		n.mu.Unlock()
		return fmt.Errorf("skipgraph: join: already joined or joining")
	}
	n.state = stateJoining
	n.mu.Unlock()
	fail := func(err error) error {
		n.mu.Lock()
		n.state = 0
		n.table = Table{Self: n.self}
		n.mu.Unlock()
		return fmt.Errorf("skipgraph: join %s: %w", n.self, err)
	}

	if introducer == (identity.Identifier{}) || introducer == n.self.ID {
		n.mu.Lock()
		n.state = stateJoined
		n.mu.Unlock()
		log.Debugw("started a skip graph", "self", n.self)
		return nil
	}

	// Find the place (the introducer searches: the answer comes back to
	// it, a node every member can reach, and it passes the answer on), then
	// link level 0 and every level above. If level 0 cannot be linked (the
	// node found failed meanwhile), search again.
	pause := func(wait time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrClosed
		case <-time.After(wait):
			return nil
		}
	}
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		found, err := n.findPlace(ctx, introducer)
		if err != nil {
			log.Debugw("join: search failed, retrying", "self", n.self, "introducer", introducer.Short(), "err", err)
			if perr := pause(wait); perr != nil {
				return fail(fmt.Errorf("search for its place: %w (%w)", perr, err))
			}
			continue
		}
		if found.Key == n.self.Key {
			return fail(fmt.Errorf("%s has key %d: %w", found, n.self.Key, ErrKeyTaken))
		}
		if n.linkAll(found) {
			break
		}
		if err := pause(wait); err != nil {
			return fail(fmt.Errorf("link: %w", err))
		}
	}
	n.mu.Lock()
	n.state = stateJoined
	height := n.table.Height()
	n.mu.Unlock()
	n.syncProtection()
	n.wake()
	log.Debugw("joined", "self", n.self, "via", introducer.Short(), "levels", height)
	return nil
}

// findPlace asks introducer to search for this node's key.
func (n *Node) findPlace(ctx context.Context, introducer identity.Identifier) (Peer, error) {
	r, err := n.requestWith(ctx, introducer, message{kind: kindFind, target: n.self.Key}, n.cfg.SearchTimeout+n.cfg.RequestTimeout, n.cfg.MaintenanceConnect)
	switch {
	case err != nil:
		return Peer{}, err
	case r.kind != kindFound || r.status != statusOK || r.peer.IsZero():
		return Peer{}, fmt.Errorf("introducer %s found no place (%s, status %d): %w", introducer.Short(), r.kind, r.status, ErrNoRoute)
	}
	return r.peer, nil
}

// linkAll links level 0 from found, a node that has just answered, and
// then every level above, retrying what is in flux for a while; what is
// still in flux then is left to the maintenance loop. It reports whether
// the node has a level-0 neighbour.
func (n *Node) linkAll(found Peer) bool {
	n.mu.Lock()
	if g, ok := n.gone[found.ID]; ok && !g.left {
		delete(n.gone, found.ID)
	}
	n.near.add(found)
	n.dirty[Left] |= 1
	n.dirty[Right] |= 1
	n.mu.Unlock()
	for try := range 20 {
		done := n.fixDirty()
		n.mu.Lock()
		linked := !n.table.At(0).empty()
		n.mu.Unlock()
		if !linked || done {
			return linked
		}
		select {
		case <-n.ctx.Done():
			return false
		case <-time.After(retryDelay << min(try, 3)):
		}
	}
	return true
}

// Leave takes the node out of the skip graph gracefully: it tells each
// neighbour, with its whole table, so that each one splices it out at every
// level (its neighbour on the far side takes its place). It returns once
// every neighbour acknowledged, or ctx ended; the node stops routing new
// links and repairs. Then Close the node, its Network and its manager: the
// manager's Close tells the peers that the node left (p2pconn.ErrPeerLeft),
// which is how neighbours that missed the goodbye learn of it.
func (n *Node) Leave(ctx context.Context) error {
	n.maintMu.Lock()
	defer n.maintMu.Unlock()
	if err := n.closed(); err != nil {
		return err
	}
	n.mu.Lock()
	if n.state != stateJoined && n.state != stateJoining {
		n.mu.Unlock()
		return fmt.Errorf("skipgraph: leave: %w", ErrNotJoined)
	}
	n.state = stateLeaving
	t := n.table.Clone()
	n.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, 0, len(t.Neighbours()))
	var mu sync.Mutex
	for _, p := range t.Neighbours() {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
			defer cancel()
			if _, err := n.request(rctx, p.ID, message{kind: kindLeave, table: t}); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("tell %s: %w", p, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("skipgraph: leave %s: %w", n.self, err)
	}
	log.Debugw("left", "self", n.self, "neighbours told", len(t.Neighbours()))
	return nil
}
