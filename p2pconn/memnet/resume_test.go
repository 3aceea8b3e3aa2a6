package memnet_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
	"github.com/skipwire/skipwire/resolver"
)

// resumeConfig resumes sessions for window.
func resumeConfig(window time.Duration) p2pconn.Config {
	return p2pconn.Config{ResumeWindow: window}
}

// requireNotDelivered checks that err is a *p2pconn.NotDeliveredError of a
// loss that lists exactly want.
func requireNotDelivered(t testing.TB, err error, want ...string) {
	t.Helper()
	var nd *p2pconn.NotDeliveredError
	require.ErrorAs(t, err, &nd)
	require.ErrorIs(t, err, p2pconn.ErrNotDelivered)
	require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
	got := make([]string, len(nd.Messages))
	for i, m := range nd.Messages {
		got[i] = string(m)
	}
	require.Equal(t, want, got)
}

// nextKind returns the kind of the next event on events.
func nextKind(t testing.TB, events <-chan p2pconn.Event) p2pconn.EventKind {
	t.Helper()
	select {
	case ev := <-events:
		return ev.Kind
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no event")
		return 0
	}
}

// A message in the receiver's queue when the link goes down is delivered
// there; a Send blocked on that full queue commits to the resend buffer, as
// do Sends meanwhile; they arrive after it, in order, once the link heals.
// Meanwhile the connection is the peer's, but cannot be probed, and a
// Connect across the cut fails without replacing it.
func TestResumeDeliversQueuedThenResent(t *testing.T) {
	cfg := resumeConfig(10 * time.Second)
	cfg.ReceiveBuffer = 1
	net, ms := newNetwork(t, 2, cfg)
	a, b := ms[0], ms[1]
	ctx := testkit.Context(t, 10*time.Second)
	events, cancel := a.Subscribe()
	defer cancel()
	ab, ba := connected(t, a, b)
	require.Equal(t, p2pconn.EventConnected, nextKind(t, events))
	require.NoError(t, ab.Send(ctx, []byte("queued")))
	blocked := make(chan error, 1)
	go func() { blocked <- ab.Send(ctx, []byte("blocked")) }()

	net.Partition(a.ID(), b.ID())
	require.Equal(t, p2pconn.EventResuming, nextKind(t, events))
	require.NoError(t, <-blocked, "a Send blocked on the full queue commits to the resend buffer")
	require.NoError(t, ab.Send(ctx, []byte("during")))
	msg, err := ba.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "queued", string(msg))
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = ba.Next(short)
	cancelShort()
	require.ErrorIs(t, err, context.DeadlineExceeded, "Next waits while the session resumes")

	_, err = a.Probe(ctx, b.ID())
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed, "no link to probe")
	_, err = a.Connect(ctx, b.ID(), p2pconn.WithRetryAttempts(0))
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	got, ok := a.GetConnection(b.ID())
	require.True(t, ok)
	require.True(t, got == ab, "the resuming connection stays the peer's")
	require.True(t, ab.IsAlive())
	require.NoError(t, ab.Err())

	net.Heal(a.ID(), b.ID())
	require.Equal(t, p2pconn.EventResumed, nextKind(t, events))
	for _, want := range []string{"blocked", "during"} {
		msg, err := ba.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, want, string(msg))
	}
	require.NoError(t, ba.Send(ctx, []byte("after")))
	msg, err = ab.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "after", string(msg))
	_, err = a.Probe(ctx, b.ID())
	require.NoError(t, err)
}

// Only a side with a positive ResumeWindow resumes, and only when the
// other side does not turn acknowledgements off. A side that resumes alone
// ends when the link heals, since the remote holds no session; a loss
// without resumption reports nothing undelivered, as before resumption.
func TestResumeNeedsBothSides(t *testing.T) {
	for _, tc := range []struct {
		name       string
		a, b       time.Duration // ResumeWindow
		aResumes   bool
		bothLosses bool
	}{
		{"remote's window ends first", 10 * time.Second, time.Millisecond, true, false},
		{"remote without acknowledgements", 10 * time.Second, -1, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			net := memnet.NewNetwork()
			a := newManager(t, net, randomID(t), resumeConfig(tc.a))
			b := newManager(t, net, randomID(t), resumeConfig(tc.b))
			ctx := testkit.Context(t, 10*time.Second)
			ab, ba := connected(t, a, b)
			net.Partition(a.ID(), b.ID())

			require.Eventually(t, func() bool { return !ba.IsAlive() }, 5*time.Second, time.Millisecond)
			require.ErrorIs(t, ba.Err(), p2pconn.ErrConnectionLost)
			require.NotErrorIs(t, ba.Err(), p2pconn.ErrNotDelivered)
			require.Equal(t, tc.aResumes, ab.IsAlive())
			if !tc.aResumes {
				require.ErrorIs(t, ab.Err(), p2pconn.ErrConnectionLost)
				require.NotErrorIs(t, ab.Err(), p2pconn.ErrNotDelivered)
				return
			}
			require.NoError(t, ab.Send(ctx, []byte("lost")))
			net.Heal(a.ID(), b.ID())
			require.False(t, ab.IsAlive(), "b holds no session: a's ends")
			requireNotDelivered(t, ab.Err(), "lost")
			require.Zero(t, a.ConnectionCount())
			c, err := a.Connect(ctx, b.ID())
			require.NoError(t, err)
			require.False(t, c == ab)
		})
	}
}

// A crashed peer that does not come back: the survivor's session resumes
// for ResumeWindow, then ends with what it could not deliver. A Connect
// meanwhile fails (nobody under that Identifier) and leaves it be.
func TestResumeWindowAfterCrash(t *testing.T) {
	const window = 200 * time.Millisecond
	net, ms := newNetwork(t, 2, resumeConfig(window))
	a, b := ms[0], ms[1]
	ctx := testkit.Context(t, 10*time.Second)
	ab, _ := connected(t, a, b)
	start := time.Now()
	net.Crash(b.ID())
	require.True(t, ab.IsAlive(), "a crash looks like any loss")
	require.NoError(t, ab.Send(ctx, []byte("one")))
	require.NoError(t, ab.Send(ctx, []byte("two")))
	_, err := a.Connect(ctx, b.ID())
	require.ErrorIs(t, err, resolver.ErrNotFound)
	require.Equal(t, 1, a.ConnectionCount())

	<-ab.Done()
	require.GreaterOrEqual(t, time.Since(start), window)
	requireNotDelivered(t, ab.Err(), "one", "two")
	_, err = ab.Next(ctx)
	requireNotDelivered(t, err, "one", "two")
	require.Zero(t, a.ConnectionCount())
}

// A peer restarts while the pair is cut: the survivor's session waits for
// the link, then ends on healing, since the new process holds no session.
func TestRestartWhilePartitioned(t *testing.T) {
	cfg := resumeConfig(10 * time.Second)
	net, ms := newNetwork(t, 2, cfg)
	a, b := ms[0], ms[1]
	ctx := testkit.Context(t, 10*time.Second)
	ab, _ := connected(t, a, b)
	net.Partition(a.ID(), b.ID())
	net.Crash(b.ID())
	b2 := newManager(t, net, b.ID(), cfg)
	require.NoError(t, ab.Send(ctx, []byte("for the old process")))
	require.True(t, ab.IsAlive(), "the new process is out of reach")

	net.Heal(a.ID(), b.ID())
	requireNotDelivered(t, ab.Err(), "for the old process")
	_, ok := b2.GetConnection(a.ID())
	require.False(t, ok)
	c, err := a.Connect(ctx, b.ID())
	require.NoError(t, err)
	require.False(t, c == ab)
	require.NoError(t, c.Send(ctx, []byte("for the new one")))
	in, err := b2.Accept(ctx)
	require.NoError(t, err)
	msg, err := in.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "for the new one", string(msg))
}

// A resuming connection is neither closed idle nor evicted, and still
// counts against MaxConnections; once resumed, idle closing takes it again.
func TestResumingNeitherIdleNorEvicted(t *testing.T) {
	cfg := resumeConfig(10 * time.Second)
	cfg.IdleTimeout = 20 * time.Millisecond
	cfg.EvictAtLimit = true
	cfg.MaxConnections = 1
	net, ms := newNetwork(t, 3, cfg)
	a, b, c := ms[0], ms[1], ms[2]
	ctx := testkit.Context(t, 10*time.Second)
	ab, _ := connected(t, a, b)
	net.Partition(a.ID(), b.ID())

	_, err := a.Connect(ctx, c.ID())
	require.ErrorIs(t, err, p2pconn.ErrTooManyConnections, "the resuming connection cannot be evicted")
	require.Never(t, func() bool { return !ab.IsAlive() }, 10*cfg.IdleTimeout, cfg.IdleTimeout/4, "closed idle while resuming")

	net.Heal(a.ID(), b.ID())
	require.Eventually(t, func() bool { return !ab.IsAlive() }, 5*time.Second, time.Millisecond, "idle once resumed")
	require.ErrorIs(t, ab.Err(), p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, ab.Err(), p2pconn.ErrConnectionLost)
}

// A manager that closes while its sessions resume ends them on its side
// only, with what they could not deliver; its peer, which cannot know, is
// not told that the node left: its session waits until its window passes.
func TestManagerCloseWhileResuming(t *testing.T) {
	net := memnet.NewNetwork()
	a, err := net.NewManager(randomID(t), resumeConfig(10*time.Second))
	require.NoError(t, err)
	b := newManager(t, net, randomID(t), resumeConfig(100*time.Millisecond))
	ctx := testkit.Context(t, 10*time.Second)
	ab, ba := connected(t, a, b)
	net.Partition(a.ID(), b.ID())
	require.NoError(t, ab.Send(ctx, []byte("from a")))
	require.NoError(t, ba.Send(ctx, []byte("from b")))

	require.NoError(t, a.Close())
	requireNotDelivered(t, ab.Err(), "from a")
	require.True(t, ba.IsAlive(), "b cannot know")
	net.Heal(a.ID(), b.ID())
	require.True(t, ba.IsAlive(), "nobody under a's Identifier to reach")

	_, err = ba.Next(ctx)
	requireNotDelivered(t, err, "from b")
	require.NotErrorIs(t, err, p2pconn.ErrPeerLeft)
}

// Disconnect of a resuming connection returns what Close does.
func TestDisconnectWhileResuming(t *testing.T) {
	net, ms := newNetwork(t, 2, resumeConfig(10*time.Second))
	a, b := ms[0], ms[1]
	ctx := testkit.Context(t, 10*time.Second)
	ab, ba := connected(t, a, b)
	net.Partition(a.ID(), b.ID())
	require.NoError(t, a.Disconnect(b.ID()), "nothing to report")
	require.False(t, ab.IsAlive())
	require.NoError(t, ba.Send(ctx, []byte("x")))
	require.True(t, ba.IsAlive())
	net.Heal(a.ID(), b.ID())
	requireNotDelivered(t, ba.Err(), "x")
}
