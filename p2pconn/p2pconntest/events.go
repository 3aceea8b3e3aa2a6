package p2pconntest

import (
	"github.com/skipwire/skipwire/internal/testkit"

	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// nextEvent returns the next event of events, failing if none comes.
func nextEvent(t testing.TB, events <-chan p2pconn.Event) p2pconn.Event {
	t.Helper()
	select {
	case ev, ok := <-events:
		require.True(t, ok, "subscription closed")
		return ev
	case <-testkit.Context(t, opTimeout).Done():
		require.FailNow(t, "no event")
		return p2pconn.Event{}
	}
}

// requireEvent reads the next event of events and checks it.
func requireEvent(t testing.TB, events <-chan p2pconn.Event, kind p2pconn.EventKind, peer identity.Identifier, inbound bool, c p2pconn.Connection) p2pconn.Event {
	t.Helper()
	ev := nextEvent(t, events)
	require.Equal(t, kind, ev.Kind, "event kind")
	require.Equal(t, peer, ev.Peer, "event peer")
	require.Equal(t, inbound, ev.Inbound, "event direction")
	requireSameConn(t, c, ev.Conn, "event connection")
	if kind == p2pconn.EventConnected {
		require.NoError(t, ev.Err)
	}
	return ev
}

// requireClosedEvents waits until events is closed, discarding what it still holds.
func requireClosedEvents(t testing.TB, events <-chan p2pconn.Event) {
	t.Helper()
	done := testkit.Context(t, opTimeout).Done()
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-done:
			require.FailNow(t, "subscription not closed")
		}
	}
}

// testSubscribe: both sides see a connection come and go, in order, with
// the connection object and the direction; a clean close and a loss are told
// apart (a loss is announced at once by EventResuming, and the connection
// ends when the resume window passes); cancel and the manager's Close end
// subscriptions.
func testSubscribe(t *testing.T, net Network) {
	cfg := config()
	cfg.ResumeWindow = 300 * time.Millisecond
	ns := nodes(t, net, 3, cfg)
	a, b, c := ns[0], ns[1], ns[2]
	aEvents, cancelA := a.Manager.Subscribe()
	defer cancelA()
	bEvents, cancelB := b.Manager.Subscribe()
	defer cancelB()
	require.Equal(t, a.ID, a.Manager.ID())

	cab, cba := pair(t, a, b)
	requireEvent(t, aEvents, p2pconn.EventConnected, b.ID, false, cab)
	requireEvent(t, bEvents, p2pconn.EventConnected, a.ID, true, cba)

	require.NoError(t, a.Manager.Disconnect(b.ID))
	ev := requireEvent(t, aEvents, p2pconn.EventDisconnected, b.ID, false, cab)
	require.ErrorIs(t, ev.Err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, ev.Err, p2pconn.ErrConnectionLost)
	ev = requireEvent(t, bEvents, p2pconn.EventDisconnected, a.ID, true, cba)
	requireGoodbye(t, ev.Err)

	// A connection a did not open, then lost.
	_, cac := pair(t, c, a)
	requireEvent(t, aEvents, p2pconn.EventConnected, c.ID, true, cac)
	net.Crash(t, c)
	ev = requireEvent(t, aEvents, p2pconn.EventResuming, c.ID, true, cac)
	requireLost(t, ev.Err)
	ev = requireEvent(t, aEvents, p2pconn.EventDisconnected, c.ID, true, cac)
	requireLost(t, ev.Err)

	cancelB()
	cancelB()
	requireClosedEvents(t, bEvents)

	require.NoError(t, a.Manager.Close())
	requireClosedEvents(t, aEvents)
	late, cancelLate := a.Manager.Subscribe()
	defer cancelLate()
	requireClosedEvents(t, late)
}
