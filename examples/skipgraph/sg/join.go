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
//  1. a search for the node's own key, started at the introducer, finds the
//     node that will be its level-0 neighbour;
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

	var found Result
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		var err error
		if found, err = n.searchFrom(ctx, introducer, n.self.Key); err == nil {
			break
		}
		log.Debugw("join: search failed, retrying", "self", n.self, "introducer", introducer.Short(), "err", err)
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("search for its place: %w", err))
		case <-time.After(wait):
		}
	}
	if found.Node.Key == n.self.Key {
		return fail(fmt.Errorf("%s has key %d: %w", found.Node, n.self.Key, ErrKeyTaken))
	}

	n.mu.Lock()
	n.near.add(found.Node)
	n.dirty[Left] |= 1
	n.dirty[Right] |= 1
	n.mu.Unlock()
	for !n.fixDirty() {
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("link: %w", ctx.Err()))
		case <-n.ctx.Done():
			return fail(ErrClosed)
		case <-time.After(retryDelay):
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
