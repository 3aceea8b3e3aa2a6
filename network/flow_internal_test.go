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
	a := s.opened(y, 0, window, capGrow)
	require.True(t, a.sendOpen)
	require.True(t, a.newRemote)
	s.openWritten(y)
	a = s.opened(y, epochX, window, capGrow)
	require.False(t, a.sendOpen, "y's epoch is already acknowledged")
	require.False(t, a.newRemote)
}

func TestLinkStateSend(t *testing.T) {
	st := newLinkState(epochX, 8, 8, capGrow)
	s := &st
	require.False(t, s.sendable("c"), "no Send before the remote's OPEN")
	a := s.opened(epochY, 0, 3, 0)
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
	s.opened(epochY, epochX, 3, 0)
	require.True(t, s.credited("c", 2))
	require.True(t, s.sendable("c"))
	s.untake("c") // a Send that failed gives its credit back
	require.Equal(t, 0, s.out["c"].inflight)
	require.False(t, s.credited("c", 1), "credits for nothing sent")
}

func TestLinkStateReceive(t *testing.T) {
	st := newLinkState(epochX, 4, 4, capGrow)
	s := &st
	require.Equal(t, rejectStale, s.received("c", 0), "DATA before y acknowledged x")
	open(t, s, epochY, 8)
	for range 4 {
		require.Empty(t, s.received("c", 0))
	}
	require.Equal(t, rejectOverWindow, s.received("c", 0))
	require.Empty(t, s.received("d", 0))
	// Room goes back in batches of half the window.
	require.Equal(t, 0, s.consumed("c", epochY))
	require.Equal(t, 2, s.consumed("c", epochY))
	require.Empty(t, s.received("c", 0))
	require.Empty(t, s.received("c", 0))
	require.Equal(t, rejectOverWindow, s.received("c", 0))
	require.Equal(t, 0, s.consumed("c", epochY))
	require.Equal(t, 2, s.consumed("c", epochY))
	require.Equal(t, 0, s.consumed("c", epochY))
	require.Equal(t, 2, s.consumed("c", epochY))
	require.Equal(t, 0, s.consumed("c", epochY), "nothing queued: nothing owed")
}

func TestLinkStateRestart(t *testing.T) {
	st := newLinkState(epochX, 2, 2, capGrow) // credits go back one by one
	s := &st
	open(t, s, epochY, 2)
	s.take("c")
	s.take("c")
	require.Empty(t, s.received("c", 0))

	require.False(t, s.closed(epochY2), "CLOSED of a Network this side does not know")
	require.True(t, s.closed(epochY))
	require.False(t, s.closed(epochY), "said once")
	require.False(t, s.sendable("c"))
	require.True(t, s.remoteClosed)
	require.Equal(t, rejectStale, s.received("c", 0), "y's Network is gone")
	require.Equal(t, 0, s.consumed("c", epochY), "no room goes back to a closed Network")

	open(t, s, epochY2, 2)
	require.False(t, s.remoteClosed)
	require.True(t, s.sendable("c"), "the new Network grants a fresh window")
	require.Empty(t, s.received("c", 0))
	require.Equal(t, 0, s.consumed("c", epochY), "a message of the old Network owes the new one nothing")
	require.Equal(t, 1, s.consumed("c", epochY2))

	// A restart without CLOSED (the remote crashed and came back on the
	// same connection is impossible, but a new OPEN is enough).
	s.take("c")
	a := s.opened(0x4444, epochX, 2, capGrow)
	require.True(t, a.newRemote)
	require.Nil(t, s.out["c"], "nothing in flight to the new Network")
	require.True(t, s.ackedUs)
}

func TestLinkStateGrowReceiver(t *testing.T) {
	st := newLinkState(epochX, 4, 16, capGrow)
	s := &st
	idle := uint64(7) // times the processor of c ran out of messages
	require.Zero(t, s.grow("c", idle, 1<<20), "BLOCKED before y acknowledged x")
	open(t, s, epochY, 8)
	require.Zero(t, s.grow("c", idle, 1<<20), "no DATA on c yet")

	// blockedRound: y uses up its room, says BLOCKED, x gives the room back;
	// the processor runs out of messages runsOut times before y's next DATA.
	blockedRound := func(runsOut uint64) int {
		t.Helper()
		for s.in["c"] == nil || s.in["c"].queued < s.in["c"].window {
			require.Empty(t, s.received("c", idle))
		}
		require.Equal(t, rejectOverWindow, s.received("c", idle))
		granted := s.grow("c", idle, 1<<20)
		for range s.in["c"].queued {
			s.consumed("c", epochY)
		}
		require.Zero(t, s.in["c"].queued)
		idle += runsOut
		return granted
	}
	require.Zero(t, blockedRound(1), "y's first BLOCKED on c")
	require.Equal(t, 4, blockedRound(0), "the processor ran out while y waited: the window doubles")
	require.Equal(t, 8, s.in["c"].window)
	require.Zero(t, blockedRound(1), "it did not run out since")
	require.Equal(t, 8, blockedRound(1), "up to the limit")
	require.Equal(t, 16, s.in["c"].window)
	require.Zero(t, blockedRound(1), "at the limit")

	// The processor runs out of messages while y sends, not while it
	// waits: the window is not what holds y back.
	st = newLinkState(epochX, 4, 16, capGrow)
	open(t, s, epochY, 8)
	require.Zero(t, blockedRound(0))
	require.Empty(t, s.received("c", idle), "y's first DATA after its BLOCKED")
	idle++
	require.Zero(t, blockedRound(0), "ran out after y's DATA came, not before")

	// Another channel grows on its own.
	require.Zero(t, blockedRound(1))
	require.Empty(t, s.received("d", idle))
	require.Zero(t, s.grow("d", idle, 1<<20), "y's first BLOCKED on d")
	require.Empty(t, s.received("d", idle+1))
	require.Equal(t, 4, s.grow("d", idle+1, 1<<20))
	require.Equal(t, 4, s.in["c"].window, "c did not grow")

	// A new Network of y starts from the window of the OPEN.
	open(t, s, epochY2, 8)
	require.Nil(t, s.in["c"])
	for range 4 {
		require.Empty(t, s.received("c", idle))
	}
	require.Equal(t, rejectOverWindow, s.received("c", idle))
	require.Zero(t, s.grow("c", idle+5, 1<<20), "its first BLOCKED")
}

func TestLinkStateGrowNeedsBoth(t *testing.T) {
	for _, tc := range []struct {
		name       string
		local, rem uint64
	}{
		{"remote predates growing", capGrow, 0},
		{"this side predates growing", 0, capGrow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newLinkState(epochX, 2, 16, capGrow)
			s := &st
			s.caps = tc.local
			s.opened(epochY, 0, 2, tc.rem)
			s.openWritten(epochY)
			s.opened(epochY, epochX, 2, tc.rem)
			s.take("c")
			s.take("c")
			require.False(t, s.wantRoom("c"), "no BLOCKED")
			require.False(t, s.credited("c", 3), "a CREDIT for more than was sent is a violation")
			require.Zero(t, s.grow("c", 1, 1<<20)+s.grow("c", 2, 1<<20), "no room granted")
		})
	}
}

func TestLinkStateGrowSender(t *testing.T) {
	st := newLinkState(epochX, 8, 8, capGrow)
	s := &st
	open(t, s, epochY, 2)
	require.False(t, s.wantRoom("c"), "room left")
	s.take("c")
	s.take("c")
	require.True(t, s.wantRoom("c"), "room used up: say BLOCKED")
	require.False(t, s.wantRoom("c"), "once until the next CREDIT")
	require.True(t, s.credited("c", 1))
	s.take("c")
	require.True(t, s.wantRoom("c"), "blocked again after a CREDIT")
	require.True(t, s.credited("c", 4), "2 sent, 2 granted")
	for range 4 {
		require.True(t, s.sendable("c"))
		s.take("c")
	}
	require.False(t, s.sendable("c"), "the window of 2 grew to 4")
	require.False(t, s.credited("c", 5+MaxWindow), "no more room than any window")
	require.False(t, s.credited("never", 1), "a CREDIT for a channel never sent on")
	require.NotContains(t, s.out, "never", "leaves no state")
}

func TestLinkStateGrowAllowance(t *testing.T) {
	st := newLinkState(epochX, 4, 64, capGrow)
	s := &st
	open(t, s, epochY, 8)
	require.Empty(t, s.received("c", 0))
	require.Zero(t, s.grow("c", 0, 100), "the first BLOCKED")
	require.Empty(t, s.received("c", 1), "the processor ran out while y waited")
	require.Equal(t, 3, s.grow("c", 1, 6), "half of what the channel's allowance has left")
	require.Equal(t, 7, s.in["c"].window)
	s.ungrow("c", 1) // the allowance had less by the time it was taken
	require.Equal(t, 6, s.in["c"].window)
	require.Equal(t, map[string]int{"c": 2}, s.grants())
	require.Empty(t, s.received("c", 1))
	require.Zero(t, s.grow("c", 1, 0), "nothing left")
	require.Nil(t, s.takeFreed())

	require.True(t, s.closed(epochY))
	require.Equal(t, map[string]int{"c": 2}, s.takeFreed(), "y's Network is gone: its room goes back")
	require.Nil(t, s.takeFreed(), "once")
}
