package sg_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
)

// peer returns a Peer with key k, vector v (its first bits, most significant
// first, as a string of 0s and 1s, the rest zero) and an Identifier made
// from k.
func peer(k sg.Key, bits string) sg.Peer {
	var v sg.MembershipVector
	for i, b := range bits {
		if b == '1' {
			v |= 1 << (63 - i)
		}
	}
	var id identity.Identifier
	id[0], id[31] = 1, byte(k)
	return sg.Peer{ID: id, Key: k, MV: v}
}

func TestMembershipVector(t *testing.T) {
	a, b := peer(1, "1011"), peer(2, "1001")
	require.Equal(t, 2, a.MV.CommonPrefix(b.MV))
	require.True(t, a.SharesLevel(b, 2))
	require.False(t, a.SharesLevel(b, 3))
	require.True(t, a.SharesLevel(b, 0))
	require.Equal(t, "1011", a.MV.Bits(4))
	require.Equal(t, 64, a.MV.CommonPrefix(a.MV))
}

// TestIdeal checks the tables of a small skip graph drawn by hand (keys,
// with the first bits of their vectors; from level 3 on, every node is
// alone):
//
//	level 2:  5(100) ---- 20(101)       and  10(110) ----------- 40(111)
//	level 1:  5(100) 10(110) 20(101) --------------- 40(111)  and  30(01)
//	level 0:  5     10     20     30     40
func TestIdeal(t *testing.T) {
	p5, p10, p20, p30, p40 := peer(5, "100"), peer(10, "110"), peer(20, "101"), peer(30, "01"), peer(40, "111")
	got := sg.Ideal([]sg.Peer{p40, p5, p30, p10, p20}) // any order
	want := map[sg.Key][]sg.Level{
		5:  {{Right: p10}, {Right: p10}, {Right: p20}},
		10: {{Left: p5, Right: p20}, {Left: p5, Right: p20}, {Right: p40}},
		20: {{Left: p10, Right: p30}, {Left: p10, Right: p40}, {Left: p5}},
		30: {{Left: p20, Right: p40}},
		40: {{Left: p30}, {Left: p20}, {Left: p10}},
	}
	require.Len(t, got, 5)
	for _, p := range []sg.Peer{p5, p10, p20, p30, p40} {
		require.Equal(t, sg.Table{Self: p, Levels: want[p.Key]}, got[p.ID], "node %d", p.Key)
	}
	require.Empty(t, sg.Ideal(nil))
	alone := sg.Ideal([]sg.Peer{p5})
	require.Equal(t, sg.Table{Self: p5}, alone[p5.ID])
}

// TestIdealRandom checks Ideal against its definition on random graphs:
// a node's level-i neighbour on each side is the nearest node in key order
// sharing i bits, and the table ends where the node is alone.
func TestIdealRandom(t *testing.T) {
	for range 20 {
		var members []sg.Peer
		keys := rand.Perm(1000)[:1+rand.N(60)]
		for _, k := range keys {
			p := peer(sg.Key(k), "")
			p.MV = sg.RandomMembershipVector()
			p.ID[30] = byte(k >> 8)
			members = append(members, p)
		}
		tables := sg.Ideal(members)
		for _, p := range members {
			tb := tables[p.ID]
			for level := 0; level <= tb.Height(); level++ {
				var left, right sg.Peer
				for _, q := range members {
					if q.ID == p.ID || !q.SharesLevel(p, level) {
						continue
					}
					if q.Key < p.Key && (left.IsZero() || q.Key > left.Key) {
						left = q
					}
					if q.Key > p.Key && (right.IsZero() || q.Key < right.Key) {
						right = q
					}
				}
				require.Equal(t, sg.Level{Left: left, Right: right}, tb.At(level), "node %d level %d", p.Key, level)
			}
			if tb.Height() > 0 {
				require.NotEqual(t, sg.Level{}, tb.At(tb.Height()-1))
			}
		}
	}
}

func TestExpected(t *testing.T) {
	members := []sg.Peer{peer(30, ""), peer(10, ""), peer(20, "")}
	for _, tc := range []struct {
		target sg.Key
		want   sg.Key
	}{
		{0, 10},  // below every key: the smallest
		{9, 10},  // idem
		{10, 10}, // equal
		{15, 10}, // greatest key <= target
		{29, 20},
		{30, 30},
		{1 << 40, 30},
	} {
		got, ok := sg.Expected(members, tc.target)
		require.True(t, ok)
		require.Equal(t, tc.want, got.Key, "target %d", tc.target)
	}
	_, ok := sg.Expected(nil, 5)
	require.False(t, ok)
}

func TestTable(t *testing.T) {
	p5, p10, p20 := peer(5, "1"), peer(10, "1"), peer(20, "0")
	tb := sg.Table{Self: p10, Levels: []sg.Level{{Left: p5, Right: p20}, {Left: p5}}}
	require.Equal(t, 2, tb.Height())
	require.True(t, tb.Has(p20.ID))
	require.False(t, tb.Has(p10.ID))
	ns := tb.Neighbours()
	slices.SortFunc(ns, func(a, b sg.Peer) int { return int(a.Key) - int(b.Key) })
	require.Equal(t, []sg.Peer{p5, p20}, ns)
	require.Equal(t, sg.Level{}, tb.At(5))
	c := tb.Clone()
	c.Levels[0].Left = p20
	require.Equal(t, p5, tb.Levels[0].Left, "Clone shares nothing")
	require.False(t, tb.Equal(c))
	require.Contains(t, tb.String(), "level  1: 5@")
}
