package sg

import "github.com/skipwire/skipwire/identity"

// nextHops returns where a search for target goes next from the node whose
// table is t, best first, or nothing when the node is the answer: the node
// with the greatest key <= target, or the smallest key when target is below
// every key. near are the node's level-0 backups on the side of target,
// nearest first; gone reports nodes known to have left or failed, which are
// skipped. The later entries are fallbacks for when the earlier ones cannot
// be reached.
//
// Toward larger keys, the search takes at the highest level the right
// neighbour whose key does not pass target, then lower levels; the node
// itself is the answer when its level-0 right neighbour passes target.
// Toward smaller keys, it moves left at each level while the neighbour's
// key is >= target; then the level-0 left neighbour, whose key is below
// target, is the answer, unless there is none.
func nextHops(t Table, near []Peer, target Key, gone func(identity.Identifier) bool) []Peer {
	self := t.Self.Key
	if target == self {
		return nil
	}
	side := Right
	if target < self {
		side = Left
	}
	var hops []Peer
	seen := make(map[identity.Identifier]bool)
	add := func(p Peer) {
		if p.IsZero() || seen[p.ID] || gone(p.ID) {
			return
		}
		seen[p.ID] = true
		hops = append(hops, p)
	}
	// within: p does not pass target, so it is a step toward the answer.
	within := func(p Peer) bool {
		if side == Right {
			return p.Key <= target
		}
		return p.Key >= target
	}
	for i := len(t.Levels) - 1; i >= 0; i-- {
		if p := t.Levels[i].Get(side); !p.IsZero() && within(p) {
			add(p)
		}
	}
	for _, p := range near {
		if within(p) {
			add(p)
		}
	}
	if side == Left {
		// Below the level-0 left neighbour's key and above target: the
		// nearest live node to the left is the answer.
		add(t.At(0).Left)
		for _, p := range near {
			add(p)
		}
	}
	return hops
}
