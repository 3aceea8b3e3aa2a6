package session_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/session"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestAckPolicyDefaults(t *testing.T) {
	r := session.NewIn(session.AckPolicy{})
	require.Equal(t, session.DefaultAckPolicy(), r.Policy())
	require.Equal(t, session.AckPolicy{Count: 128, Bytes: 64 << 10, Delay: 2 * time.Millisecond}, session.DefaultAckPolicy())

	p := session.AckPolicy{Count: 1, Bytes: 2, Delay: 3, RemoteLimit: 4}
	require.Equal(t, p, session.NewIn(p).Policy(), "set fields are kept")

	for _, bad := range []session.AckPolicy{{Count: -1}, {Bytes: -1}, {Delay: -1}, {RemoteLimit: -1}} {
		require.Error(t, bad.Validate(), "%+v", bad)
		require.Panics(t, func() { session.NewIn(bad) })
	}
	require.NoError(t, session.AckPolicy{}.Validate())
}

// event is a message of size bytes received at t0+at.
type event struct {
	size int
	at   time.Duration
}

func TestAckThresholds(t *testing.T) {
	const hour = time.Hour // a Delay that never comes in these cases
	for _, tc := range []struct {
		name   string
		policy session.AckPolicy
		events []event
		want   []bool // Received's answer per event
	}{
		{
			name:   "count",
			policy: session.AckPolicy{Count: 3, Delay: hour},
			events: []event{{1, 0}, {1, 0}, {1, 0}, {1, 0}},
			want:   []bool{false, false, true, true}, // not taken: still due
		},
		{
			name:   "default count",
			policy: session.AckPolicy{Delay: hour},
			events: repeat(event{0, 0}, 128),
			want:   append(make([]bool, 127), true),
		},
		{
			name:   "bytes, counting the overhead",
			policy: session.AckPolicy{Bytes: 2 * session.Cost(100), Delay: hour},
			events: []event{{100, 0}, {99, 0}, {1, 0}},
			want:   []bool{false, false, true},
		},
		{
			name:   "one message over the bytes",
			policy: session.AckPolicy{Bytes: 100, Delay: hour},
			events: []event{{1000, 0}},
			want:   []bool{true},
		},
		{
			name:   "half the remote limit",
			policy: session.AckPolicy{RemoteLimit: 4 * session.Cost(10), Delay: hour},
			events: []event{{10, 0}, {10, 0}},
			want:   []bool{false, true},
		},
		{
			name:   "remote limit below one message",
			policy: session.AckPolicy{RemoteLimit: 10, Delay: hour},
			events: []event{{0, 0}},
			want:   []bool{true},
		},
		{
			name:   "delay, from the oldest message",
			policy: session.AckPolicy{Delay: 10 * time.Millisecond},
			events: []event{{1, 0}, {1, 9 * time.Millisecond}, {1, 10 * time.Millisecond}},
			want:   []bool{false, false, true},
		},
		{
			name:   "delay, a late message",
			policy: session.AckPolicy{Delay: 10 * time.Millisecond},
			events: []event{{1, 0}, {1, time.Second}},
			want:   []bool{false, true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := session.NewIn(tc.policy)
			for i, e := range tc.events {
				require.Equal(t, tc.want[i], r.Received(e.size, t0.Add(e.at)), "message %d", i+1)
			}
			require.Equal(t, uint64(len(tc.events)), r.Count())
		})
	}
}

func repeat(e event, n int) []event {
	out := make([]event, n)
	for i := range out {
		out[i] = e
	}
	return out
}

func TestTakeResetsThresholds(t *testing.T) {
	r := session.NewIn(session.AckPolicy{Count: 2, Delay: time.Hour})
	_, ok := r.Take()
	require.False(t, ok, "nothing received")
	require.False(t, r.Received(1, t0))
	require.True(t, r.Received(1, t0))
	n, ok := r.Take()
	require.True(t, ok)
	require.Equal(t, uint64(2), n)
	require.Zero(t, r.Unacked())
	_, ok = r.Take()
	require.False(t, ok, "nothing new")

	require.False(t, r.Received(1, t0), "counting starts again after a take")
	require.Equal(t, 1, r.Unacked())
	require.True(t, r.Received(1, t0))
	n, ok = r.Take()
	require.True(t, ok)
	require.Equal(t, uint64(4), n, "cumulative")
}

func TestReceivedWithoutClock(t *testing.T) {
	const delay = 5 * time.Millisecond
	r := session.NewIn(session.AckPolicy{Count: 3, Delay: delay})
	require.False(t, r.Received(1, t0), "the first starts the delay")
	require.False(t, r.Received(1, time.Time{}), "a later one without the clock: no delay check")
	d, ok := r.Deadline()
	require.True(t, ok)
	require.Equal(t, t0.Add(delay), d, "the zero time does not move the deadline")
	require.True(t, r.Due(d), "the timer's check")
	require.True(t, r.Received(1, time.Time{}), "the count threshold still applies")
	_, ok = r.Take()
	require.True(t, ok)

	r.Received(1, t0.Add(time.Second))
	d, ok = r.Deadline()
	require.True(t, ok)
	require.Equal(t, t0.Add(time.Second+delay), d, "after a take, the next first message sets it")
}

func TestDeadline(t *testing.T) {
	const delay = 5 * time.Millisecond
	r := session.NewIn(session.AckPolicy{Delay: delay})
	_, ok := r.Deadline()
	require.False(t, ok, "nothing received")
	require.False(t, r.Due(t0.Add(time.Hour)))

	r.Received(1, t0)
	d, ok := r.Deadline()
	require.True(t, ok)
	require.Equal(t, t0.Add(delay), d)
	require.False(t, r.Due(d.Add(-1)))
	require.True(t, r.Due(d))

	r.Received(1, t0.Add(3*time.Millisecond))
	d, ok = r.Deadline()
	require.True(t, ok)
	require.Equal(t, t0.Add(delay), d, "the oldest unacknowledged message sets it")

	_, ok = r.Take()
	require.True(t, ok)
	_, ok = r.Deadline()
	require.False(t, ok, "everything acknowledged")
	require.False(t, r.Due(d), "a timer firing after a take finds nothing due")

	t1 := t0.Add(time.Second)
	r.Received(1, t1)
	d, ok = r.Deadline()
	require.True(t, ok)
	require.Equal(t, t1.Add(delay), d)
}

func TestAnnounce(t *testing.T) {
	r := session.NewIn(session.AckPolicy{})
	require.Zero(t, r.Announce(), "a fresh receiver has nothing")
	for range 5 {
		r.Received(10, t0)
	}
	require.Equal(t, uint64(5), r.Announce())
	require.Zero(t, r.Unacked(), "the announcement acknowledges")
	_, ok := r.Deadline()
	require.False(t, ok)
	_, ok = r.Take()
	require.False(t, ok)
	require.Equal(t, uint64(5), r.Announce(), "announced again on another stream")
	r.Received(10, t0)
	n, ok := r.Take()
	require.True(t, ok)
	require.Equal(t, uint64(6), n, "counting goes on across streams")
}

func TestSetRemoteLimit(t *testing.T) {
	r := session.NewIn(session.AckPolicy{Delay: time.Hour})
	require.False(t, r.Received(100, t0))
	r.SetRemoteLimit(2 * session.Cost(100))
	require.Equal(t, 2*session.Cost(100), r.Policy().RemoteLimit)
	require.True(t, r.Due(t0), "half of the limit is reached")
	r.SetRemoteLimit(-5)
	require.Zero(t, r.Policy().RemoteLimit)
	require.False(t, r.Due(t0))
}
