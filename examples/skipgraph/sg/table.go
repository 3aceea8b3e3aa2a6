package sg

import (
	"fmt"
	"slices"
	"strings"

	"github.com/skipwire/skipwire/identity"
)

// Level is a node's two neighbours in one list: the nearest node on each
// side among those sharing the level's prefix. A zero Peer means there is
// none on that side.
type Level struct {
	Left, Right Peer
}

// Get returns the neighbour on side s.
func (l Level) Get(s Side) Peer {
	if s == Left {
		return l.Left
	}
	return l.Right
}

func (l *Level) set(s Side, p Peer) {
	if s == Left {
		l.Left = p
	} else {
		l.Right = p
	}
}

// empty reports whether the node is alone in the list.
func (l Level) empty() bool { return l.Left.IsZero() && l.Right.IsZero() }

// Table is a node's routing table: Levels[i] holds its neighbours in the
// level-i list. It has one Level per list the node shares with another node;
// above the last one the node is alone.
type Table struct {
	Self   Peer
	Levels []Level
}

// Height returns the number of levels at which the node has a neighbour.
func (t Table) Height() int { return len(t.Levels) }

// At returns level i, or an empty Level above the table.
func (t Table) At(i int) Level {
	if i < 0 || i >= len(t.Levels) {
		return Level{}
	}
	return t.Levels[i]
}

// Neighbours returns the distinct nodes of the table, in no particular
// order.
func (t Table) Neighbours() []Peer {
	var out []Peer
	seen := make(map[identity.Identifier]bool)
	for _, l := range t.Levels {
		for _, p := range []Peer{l.Left, l.Right} {
			if !p.IsZero() && !seen[p.ID] {
				seen[p.ID] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// Has reports whether id is a neighbour at some level.
func (t Table) Has(id identity.Identifier) bool {
	for _, l := range t.Levels {
		if l.Left.ID == id || l.Right.ID == id {
			return true
		}
	}
	return false
}

// Equal reports whether t and u name the same neighbours at every level.
func (t Table) Equal(u Table) bool {
	return t.Self == u.Self && slices.Equal(t.Levels, u.Levels)
}

// Clone returns a copy of t that shares nothing with it.
func (t Table) Clone() Table {
	return Table{Self: t.Self, Levels: slices.Clone(t.Levels)}
}

// trim drops the empty levels at the top.
func (t *Table) trim() {
	for len(t.Levels) > 0 && t.Levels[len(t.Levels)-1].empty() {
		t.Levels = t.Levels[:len(t.Levels)-1]
	}
}

// set puts p at level i on side s, growing the table as needed (p zero
// removes the neighbour), and returns the neighbour it replaced.
func (t *Table) set(i int, s Side, p Peer) (old Peer) {
	for len(t.Levels) <= i {
		if p.IsZero() {
			return Peer{}
		}
		t.Levels = append(t.Levels, Level{})
	}
	old = t.Levels[i].Get(s)
	t.Levels[i].set(s, p)
	t.trim()
	return old
}

// String lists the table, one level a line, top level first.
func (t Table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s, vector %s…\n", t.Self, t.Self.MV.Bits(len(t.Levels)+1))
	for i := len(t.Levels) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "  level %2d: %s <- * -> %s\n", i, t.Levels[i].Left, t.Levels[i].Right)
	}
	return b.String()
}

// Ideal returns the table every node of members has in a correct skip
// graph of exactly those nodes: at each level, its nearest neighbour on
// each side among the nodes sharing that many bits of membership vector.
// Keys must be unique. It is how a test or the demo knows that repair has
// converged.
func Ideal(members []Peer) map[identity.Identifier]Table {
	sorted := slices.Clone(members)
	slices.SortFunc(sorted, func(a, b Peer) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	tables := make(map[identity.Identifier]Table, len(sorted))
	for _, p := range sorted {
		tables[p.ID] = Table{Self: p}
	}
	for level := 0; level < MaxLevels; level++ {
		// The lists of this level: nodes grouped by their first level bits,
		// each group in key order.
		last := make(map[MembershipVector]Peer) // prefix -> last node seen
		linked := false
		for _, p := range sorted {
			prefix := p.MV
			if level == 0 {
				prefix = 0
			} else {
				prefix &^= (1<<(64-level) - 1)
			}
			if prev, ok := last[prefix]; ok {
				tp, tprev := tables[p.ID], tables[prev.ID]
				tp.set(level, Left, prev)
				tprev.set(level, Right, p)
				tables[p.ID], tables[prev.ID] = tp, tprev
				linked = true
			}
			last[prefix] = p
		}
		if !linked {
			break
		}
	}
	return tables
}

// Expected returns the answer a search for target must give among members:
// the node with the greatest key <= target, or the node with the smallest
// key when target is below every key. It returns false for no members.
func Expected(members []Peer, target Key) (Peer, bool) {
	var best, lowest Peer
	found := false
	for _, p := range members {
		if lowest.IsZero() || p.Key < lowest.Key {
			lowest = p
		}
		if p.Key <= target && (!found || p.Key > best.Key) {
			best, found = p, true
		}
	}
	if found {
		return best, true
	}
	return lowest, !lowest.IsZero()
}
