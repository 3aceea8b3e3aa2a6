package sg

import (
	"fmt"
	"math/bits"
	"math/rand/v2"

	"github.com/skipwire/skipwire/identity"
)

// Key is a node's place in the skip graph: nodes are ordered by key, and a
// search looks for a key. Keys are unique in a skip graph.
type Key uint64

// MembershipVector is a node's random bits. The level-i list of a skip
// graph links the nodes whose vectors share their first i bits (the most
// significant ones), in key order: level 0 holds every node, level 1 about
// half, level 2 about a quarter, and so on up to the level where a node is
// alone.
type MembershipVector uint64

// MaxLevels bounds the levels of a skip graph: a membership vector has 64
// bits, so two nodes share at most 64 levels above level 0.
const MaxLevels = 64

// RandomMembershipVector returns a membership vector drawn at random.
func RandomMembershipVector() MembershipVector { return MembershipVector(rand.Uint64()) }

// CommonPrefix returns how many leading bits v and w share: both belong to
// the lists of levels 0 to CommonPrefix(v, w).
func (v MembershipVector) CommonPrefix(w MembershipVector) int {
	return bits.LeadingZeros64(uint64(v ^ w))
}

// Bits returns the first n bits of v as a string of 0s and 1s, for logs and
// reports.
func (v MembershipVector) Bits(n int) string {
	n = min(max(n, 0), 64)
	b := make([]byte, n)
	for i := range n {
		b[i] = '0' + byte(uint64(v)>>(63-i)&1)
	}
	return string(b)
}

// Peer is what a node knows of another: its Identifier, by which the
// connection layer reaches it, its key and its membership vector. The zero
// Peer stands for "no node".
type Peer struct {
	ID  identity.Identifier
	Key Key
	MV  MembershipVector
}

// IsZero reports whether p is the zero Peer: no node.
func (p Peer) IsZero() bool { return p.ID == identity.Identifier{} }

// String returns the key and the short form of the Identifier.
func (p Peer) String() string {
	if p.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%d@%s", p.Key, p.ID.Short())
}

// SharesLevel reports whether p and q are in the same level-i list: their
// membership vectors share i bits.
func (p Peer) SharesLevel(q Peer, i int) bool { return p.MV.CommonPrefix(q.MV) >= i }

// Side is a direction in a list: toward smaller keys (Left) or larger ones
// (Right).
type Side int

const (
	// Left is toward smaller keys.
	Left Side = iota
	// Right is toward larger keys.
	Right
)

// Opposite returns the other side.
func (s Side) Opposite() Side { return 1 - s }

func (s Side) String() string {
	if s == Left {
		return "left"
	}
	return "right"
}

// toward reports whether key k lies on side s of key from.
func toward(s Side, from, k Key) bool {
	if s == Left {
		return k < from
	}
	return k > from
}

// closer reports whether a is closer than b to key from on side s; both are
// on that side.
func closer(s Side, a, b Key) bool {
	if s == Left {
		return a > b
	}
	return a < b
}
