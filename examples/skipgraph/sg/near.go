package sg

import (
	"slices"

	"github.com/skipwire/skipwire/identity"
)

// nearSet holds the nodes a node knows of that are nearest to it in key
// order, up to size on each side: the level-0 backups. When a level-0
// neighbour fails, search routing skips to the next one, and repair looks
// for the new neighbour among them first. It is not safe for concurrent
// use.
type nearSet struct {
	self Key
	size int
	// sides[Left] in decreasing key order, sides[Right] in increasing: the
	// nearest first.
	sides [2][]Peer
}

func newNearSet(self Key, size int) nearSet { return nearSet{self: self, size: size} }

// add records p, if it is among the nearest on its side. It replaces an
// entry with the same Identifier.
func (s *nearSet) add(p Peer) {
	if p.IsZero() || p.Key == s.self {
		return
	}
	s.remove(p.ID)
	side := Right
	if p.Key < s.self {
		side = Left
	}
	l := s.sides[side]
	i, _ := slices.BinarySearchFunc(l, p, func(e, t Peer) int {
		switch {
		case e.Key == t.Key:
			return 0
		case closer(side, e.Key, t.Key):
			return -1
		}
		return 1
	})
	if i >= s.size {
		return
	}
	l = slices.Insert(l, i, p)
	if len(l) > s.size {
		l = l[:s.size]
	}
	s.sides[side] = l
}

// remove forgets id.
func (s *nearSet) remove(id identity.Identifier) {
	for side := range s.sides {
		s.sides[side] = slices.DeleteFunc(s.sides[side], func(p Peer) bool { return p.ID == id })
	}
}

// side returns the entries on side, nearest first. The slice is the set's
// own: copy it before the set changes.
func (s *nearSet) side(side Side) []Peer { return s.sides[side] }
