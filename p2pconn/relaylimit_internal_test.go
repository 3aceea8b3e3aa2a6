package p2pconn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

// TestOverLimit: a relayed stream refuses a write past its budget or its
// deadline with ErrRelayLimit; an unlimited one never does.
func TestOverLimit(t *testing.T) {
	c := &conn{id: identity.Identifier{7}}
	require.NoError(t, c.overLimit(&wire{}, 1<<30), "no limits")

	w := &wire{budget: 1000, written: 900, limits: "1 KiB per direction"}
	require.NoError(t, c.overLimit(w, 100), "up to the budget")
	err := c.overLimit(w, 101)
	require.ErrorIs(t, err, ErrRelayLimit)
	require.Contains(t, err.Error(), "900 of 1000 bytes written, 101 more")

	w = &wire{deadline: time.Now().Add(time.Hour)}
	require.NoError(t, c.overLimit(w, 1))
	w.deadline = time.Now().Add(-time.Millisecond)
	require.ErrorIs(t, c.overLimit(w, 1), ErrRelayLimit)
}
