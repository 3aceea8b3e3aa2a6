package network

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Two Networks, x (this side) and y (the remote), meet on a connection.
const (
	epochX  = 0x1111
	epochY  = 0x2222
	epochY2 = 0x3333 // y's Network restarted
)

// open runs the OPEN exchange on x's side: y's OPEN, x's acknowledging OPEN
// written, y's OPEN acknowledging x.
func open(t *testing.T, s *linkState, y uint64, window int) {
	t.Helper()
	a := s.opened(y, 0, window)
	require.True(t, a.sendOpen)
	require.True(t, a.newRemote)
	s.openWritten(y)
	a = s.opened(y, epochX, window)
	require.False(t, a.sendOpen, "y's epoch is already acknowledged")
	require.False(t, a.newRemote)
}

func TestLinkStateSend(t *testing.T) {
	st := newLinkState(epochX, 8)
	s := &st
	require.False(t, s.sendable("c"), "no Send before the remote's OPEN")
	a := s.opened(epochY, 0, 3)
	require.Equal(t, openAction{sendOpen: true, newRemote: true}, a)
	require.False(t, s.sendable("c"), "no Send before this side's OPEN acknowledging y is written")
	s.openWritten(epochY)
	for range 3 {
		require.True(t, s.sendable("c"))
		s.take("c")
	}
	require.False(t, s.sendable("c"), "window used up")
	require.True(t, s.sendable("other"), "another channel has its own window")

	// Credits before y acknowledged x are stale.
	require.True(t, s.credited("c", 2))
	require.False(t, s.sendable("c"))
	s.opened(epochY, epochX, 3)
	require.True(t, s.credited("c", 2))
	require.True(t, s.sendable("c"))
	s.untake("c") // a Send that failed gives its credit back
	require.Equal(t, 0, s.inflight["c"])
	require.False(t, s.credited("c", 1), "credits for nothing sent")
}

func TestLinkStateReceive(t *testing.T) {
	st := newLinkState(epochX, 4)
	s := &st
	require.Equal(t, rejectStale, s.received("c"), "DATA before y acknowledged x")
	open(t, s, epochY, 8)
	for range 4 {
		require.Empty(t, s.received("c"))
	}
	require.Equal(t, rejectOverWindow, s.received("c"))
	require.Empty(t, s.received("d"))
	// Room goes back in batches of half the window.
	require.Equal(t, 0, s.consumed("c", epochY))
	require.Equal(t, 2, s.consumed("c", epochY))
	require.Empty(t, s.received("c"))
	require.Empty(t, s.received("c"))
	require.Equal(t, rejectOverWindow, s.received("c"))
	require.Equal(t, 0, s.consumed("c", epochY))
	require.Equal(t, 2, s.consumed("c", epochY))
	require.Equal(t, 0, s.consumed("c", epochY))
	require.Equal(t, 2, s.consumed("c", epochY))
	require.Equal(t, 0, s.consumed("c", epochY), "nothing queued: nothing owed")
}

func TestLinkStateRestart(t *testing.T) {
	st := newLinkState(epochX, 2) // credits go back one by one
	s := &st
	open(t, s, epochY, 2)
	s.take("c")
	s.take("c")
	require.Empty(t, s.received("c"))

	require.False(t, s.closed(epochY2), "CLOSED of a Network this side does not know")
	require.True(t, s.closed(epochY))
	require.False(t, s.closed(epochY), "said once")
	require.False(t, s.sendable("c"))
	require.True(t, s.remoteClosed)
	require.Equal(t, rejectStale, s.received("c"), "y's Network is gone")
	require.Equal(t, 0, s.consumed("c", epochY), "no room goes back to a closed Network")

	open(t, s, epochY2, 2)
	require.False(t, s.remoteClosed)
	require.True(t, s.sendable("c"), "the new Network grants a fresh window")
	require.Empty(t, s.received("c"))
	require.Equal(t, 0, s.consumed("c", epochY), "a message of the old Network owes the new one nothing")
	require.Equal(t, 1, s.consumed("c", epochY2))

	// A restart without CLOSED (the remote crashed and came back on the
	// same connection is impossible, but a new OPEN is enough).
	s.take("c")
	a := s.opened(0x4444, epochX, 2)
	require.True(t, a.newRemote)
	require.Zero(t, s.inflight["c"])
	require.True(t, s.ackedUs)
}
