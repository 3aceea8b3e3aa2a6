package sg

import (
	"errors"
	"fmt"
	"slices"

	"github.com/skipwire/skipwire/identity"
)

// Bounds of the walks along lists during a repair; beyond them the tables
// on the way are in flux, and the repair is retried.
const (
	maxWalk = 32
	maxLink = 8
)

// errInFlux is why a repair is retried: the nodes it asked were themselves
// being repaired.
var errInFlux = errors.New("skipgraph: tables in flux")

// fixLevel derives this node's neighbour at level i on side s again, links
// it (so that it points back), and reports whether the neighbour changed.
//
// Level 0 is searched among the nodes this node knows on that side: the
// nearest that answers, then back toward this node as long as its own
// neighbour lies between (the stabilization of Chord). Each level above is
// derived from the one below: the first node along the level-(i-1) list on
// side s that shares i bits of membership vector with this node.
func (n *Node) fixLevel(i int, s Side) (changed bool, err error) {
	n.mu.Lock()
	old := n.table.At(i).Get(s)
	n.mu.Unlock()

	var found Peer
	if i == 0 {
		found = n.findNearest(s)
	} else if found, err = n.findAbove(i, s); err != nil {
		return false, err
	}
	if !found.IsZero() {
		if found, err = n.linkTo(i, s, found); err != nil {
			return false, err
		}
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	cur := n.table.At(i).Get(s)
	if cur.ID != old.ID {
		// A link arrived meanwhile: look again.
		n.dirty[s] |= 1 << i
		return false, nil
	}
	if !found.IsZero() && n.isGoneLocked(found.ID) {
		return false, fmt.Errorf("level %d %s: %s dropped meanwhile: %w", i, s, found, errInFlux)
	}
	n.table.set(i, s, found)
	n.near.add(found)
	if found.ID == old.ID {
		return false, nil
	}
	n.stats.repairs.Add(1)
	log.Debugw("neighbour changed", "self", n.self, "level", i, "side", s, "old", old, "new", found)
	return true, nil
}

// findNearest returns the nearest live node on side s at level 0, or zero
// if there is none that this node knows of.
func (n *Node) findNearest(s Side) Peer {
	n.mu.Lock()
	var cands []Peer
	seen := make(map[identity.Identifier]bool)
	add := func(p Peer) {
		if !p.IsZero() && !seen[p.ID] && !n.isGoneLocked(p.ID) && toward(s, n.self.Key, p.Key) {
			seen[p.ID] = true
			cands = append(cands, p)
		}
	}
	for _, l := range n.table.Levels {
		add(l.Get(s))
	}
	for _, p := range n.near.side(s) {
		add(p)
	}
	n.mu.Unlock()
	slices.SortFunc(cands, func(a, b Peer) int {
		if closer(s, a.Key, b.Key) {
			return -1
		}
		return 1
	})

	for _, c := range cands {
		// Candidates may have failed unnoticed: ask each with one dial;
		// those that do not answer are dropped (and checked again in the
		// background).
		t, err := n.probeTable(c.ID)
		if err != nil {
			continue
		}
		c = t.table.Self
		// Back toward this node while c's neighbour lies between.
		for range maxWalk {
			b := t.table.At(0).Get(s.Opposite())
			if b.IsZero() || b.ID == n.self.ID || !toward(s, n.self.Key, b.Key) || !closer(s, b.Key, c.Key) || n.isGone(b.ID) {
				break
			}
			tb, err := n.getTable(b.ID)
			if err != nil {
				break
			}
			c, t = tb.table.Self, tb
		}
		return c
	}
	return Peer{}
}

// findAbove returns the first node on side s along this node's level-(i-1)
// list that shares i bits with it, or zero if there is none.
func (n *Node) findAbove(i int, s Side) (Peer, error) {
	n.mu.Lock()
	cur := n.table.At(i - 1).Get(s)
	n.mu.Unlock()
	prev := n.self.Key
	for range maxWalk {
		if cur.IsZero() {
			return Peer{}, nil
		}
		if !toward(s, prev, cur.Key) || n.isGone(cur.ID) {
			return Peer{}, fmt.Errorf("level %d %s: list goes back at %s: %w", i, s, cur, errInFlux)
		}
		if cur.SharesLevel(n.self, i) {
			return cur, nil
		}
		t, err := n.getTable(cur.ID)
		if err != nil {
			return Peer{}, err
		}
		if t.dirty[s]&(1<<(i-1)) != 0 {
			return Peer{}, fmt.Errorf("level %d %s: %s is repairing its level %d: %w", i, s, cur, i-1, errInFlux)
		}
		prev = cur.Key
		cur = t.table.At(i - 1).Get(s)
	}
	return Peer{}, fmt.Errorf("level %d %s: no end after %d nodes: %w", i, s, maxWalk, errInFlux)
}

// linkTo asks target, on side s of this node at level i, to take this node
// as its neighbour on the other side. When target keeps a nearer neighbour,
// that one lies between them and is asked instead. It returns the node that
// accepted.
func (n *Node) linkTo(i int, s Side, target Peer) (Peer, error) {
	for range maxLink {
		m := message{kind: kindLink, level: i, side: s.Opposite(), peer: n.self}
		r, err := n.request(n.ctx, target.ID, m)
		if err != nil {
			n.drop(target.ID, err)
			return Peer{}, fmt.Errorf("level %d %s: link %s: %w", i, s, target, err)
		}
		switch r.status {
		case statusOK:
			return target, nil
		case statusCloser:
			p := r.peer
			if p.IsZero() || !toward(s, n.self.Key, p.Key) || !closer(s, p.Key, target.Key) || !p.SharesLevel(n.self, i) {
				return Peer{}, fmt.Errorf("level %d %s: %s keeps %s: %w", i, s, target, p, errInFlux)
			}
			if n.isGone(p.ID) {
				// target has not yet seen p go.
				return Peer{}, fmt.Errorf("level %d %s: %s keeps %s, which is gone: %w", i, s, target, p, errInFlux)
			}
			target = p
		case statusLeaving:
			n.mu.Lock()
			n.markGoneLocked(target.ID, true)
			n.mu.Unlock()
			return Peer{}, fmt.Errorf("level %d %s: %s is leaving: %w", i, s, target, errInFlux)
		default:
			return Peer{}, fmt.Errorf("level %d %s: %s refused the link (status %d): %w", i, s, target, r.status, errInFlux)
		}
	}
	return Peer{}, fmt.Errorf("level %d %s: no link after %d tries: %w", i, s, maxLink, errInFlux)
}

// getTable reads node id's table. A node that cannot be asked (with the
// maintenance retries), or is leaving, is dropped; what the table names is
// learned as backups.
func (n *Node) getTable(id identity.Identifier) (message, error) {
	return n.readTable(id, false)
}

// probeTable is getTable with one dial (the routing Connect options).
func (n *Node) probeTable(id identity.Identifier) (message, error) {
	return n.readTable(id, true)
}

func (n *Node) readTable(id identity.Identifier, probe bool) (message, error) {
	opts := n.cfg.MaintenanceConnect
	if probe {
		opts = n.cfg.RoutingConnect
	}
	r, err := n.requestWith(n.ctx, id, message{kind: kindGetTable}, n.cfg.RequestTimeout, opts)
	if err == nil && r.kind != kindTable {
		err = fmt.Errorf("getTable %s: unexpected %s", id.Short(), r.kind)
	}
	if err == nil && r.table.Self.ID != id {
		err = fmt.Errorf("getTable %s: answered for %s", id.Short(), r.table.Self)
	}
	if err != nil {
		n.drop(id, err)
		return message{}, err
	}
	if r.state == stateLeaving {
		n.mu.Lock()
		n.markGoneLocked(id, true)
		n.mu.Unlock()
		return message{}, fmt.Errorf("getTable %s: leaving: %w", id.Short(), errInFlux)
	}
	n.learn(r)
	return r, nil
}

// learn records the nodes a table message names as level-0 backups.
func (n *Node) learn(m message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range append([]Peer{m.table.Self, m.table.At(0).Left, m.table.At(0).Right}, m.near...) {
		if !p.IsZero() && p.ID != n.self.ID && !n.isGoneLocked(p.ID) {
			n.near.add(p)
		}
	}
}
