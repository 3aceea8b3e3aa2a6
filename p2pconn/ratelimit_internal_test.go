package p2pconn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

// TestHandshakeLimiter: each peer has its own bucket; a refusal says
// whether it is the peer's first; buckets that filled up again are
// forgotten; no rate means no limit.
func TestHandshakeLimiter(t *testing.T) {
	var off handshakeLimiter
	off.init(Config{})
	for range 100 {
		ok, _ := off.allow(identity.Identifier{1}, time.Now())
		require.True(t, ok)
	}

	var l handshakeLimiter
	l.init(Config{HandshakeRate: 2, HandshakeBurst: 3})
	now := time.Unix(1000, 0)
	a, b := identity.Identifier{1}, identity.Identifier{2}
	for i := range 3 {
		ok, _ := l.allow(a, now)
		require.True(t, ok, "burst, handshake %d", i)
	}
	ok, first := l.allow(a, now)
	require.False(t, ok)
	require.True(t, first, "the first refusal is logged")
	ok, first = l.allow(a, now)
	require.False(t, ok)
	require.False(t, first, "later ones are not")
	ok, _ = l.allow(b, now)
	require.True(t, ok, "another peer has its own bucket")
	ok, _ = l.allow(a, now.Add(500*time.Millisecond))
	require.True(t, ok, "refilled at 2 per second")

	// Many peers, each once: the map keeps only buckets still in use.
	for i := range 1000 {
		l.allow(identity.Identifier{byte(i), byte(i >> 8), 9}, now.Add(time.Duration(i)*10*time.Second))
	}
	require.Less(t, len(l.peers), 200)
}
