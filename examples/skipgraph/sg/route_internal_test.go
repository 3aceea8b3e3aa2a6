package sg

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

func testPeer(k Key) Peer {
	var id identity.Identifier
	id[0], id[30], id[31] = 1, byte(k>>8), byte(k)
	return Peer{ID: id, Key: k}
}

func keys(ps []Peer) []Key {
	var out []Key
	for _, p := range ps {
		out = append(out, p.Key)
	}
	return out
}

// TestNextHops routes from node 50 whose table is
//
//	level 2: 10 <- 50 -> 90
//	level 1: 30 <- 50 -> 70
//	level 0: 40 <- 50 -> 60
//
// with backups 60, 65 on the right and 40, 35 on the left.
func TestNextHops(t *testing.T) {
	p := func(k Key) Peer { return testPeer(k) }
	tb := Table{Self: p(50), Levels: []Level{
		{Left: p(40), Right: p(60)},
		{Left: p(30), Right: p(70)},
		{Left: p(10), Right: p(90)},
	}}
	right := []Peer{p(60), p(65)}
	left := []Peer{p(40), p(35)}
	none := func(identity.Identifier) bool { return false }
	for _, tc := range []struct {
		name   string
		target Key
		near   []Peer
		gone   []Key
		want   []Key
	}{
		{"self", 50, right, nil, nil},
		{"right, highest level first", 95, right, nil, []Key{90, 70, 60, 65}},
		{"right, skipping neighbours past the target", 68, right, nil, []Key{60, 65}},
		{"right, the answer is here", 55, right, nil, nil},
		{"right, a gone neighbour is skipped", 95, right, []Key{90, 60}, []Key{70, 65}},
		{"left, while keys are >= target", 20, left, nil, []Key{30, 40, 35}},
		{"left, equal key", 30, left, nil, []Key{30, 40, 35}},
		{"left, the level-0 neighbour is the answer", 45, left, nil, []Key{40, 35}},
		{"left, below every key", 0, left, nil, []Key{10, 30, 40, 35}},
		{"left, gone level-0 neighbour: the next backup", 45, left, []Key{40}, []Key{35}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gone := none
			if tc.gone != nil {
				gone = func(id identity.Identifier) bool {
					for _, k := range tc.gone {
						if p(k).ID == id {
							return true
						}
					}
					return false
				}
			}
			require.Equal(t, tc.want, keys(nextHops(tb, tc.near, tc.target, gone)))
		})
	}

	// The smallest node answers targets below every key.
	first := Table{Self: p(10), Levels: []Level{{Right: p(20)}}}
	require.Empty(t, nextHops(first, nil, 3, none))
}

func TestNearSet(t *testing.T) {
	s := newNearSet(50, 3)
	for _, k := range []Key{70, 40, 60, 45, 80, 30, 55, 50, 20} {
		s.add(testPeer(k))
	}
	require.Equal(t, []Key{55, 60, 70}, keys(s.side(Right)))
	require.Equal(t, []Key{45, 40, 30}, keys(s.side(Left)))
	s.remove(testPeer(60).ID)
	require.Equal(t, []Key{55, 70}, keys(s.side(Right)))
	s.add(testPeer(65))
	s.add(testPeer(65))
	require.Equal(t, []Key{55, 65, 70}, keys(s.side(Right)))
	s.add(Peer{})
	require.Len(t, s.side(Right), 3)
}
