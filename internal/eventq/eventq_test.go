package eventq_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/internal/eventq"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// next returns the next event of ch, failing if none comes within a while.
func next(t *testing.T, ch <-chan int) (int, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no event")
		return 0, false
	}
}

func TestOrderAndFanOut(t *testing.T) {
	var h eventq.Hub[int]
	a, cancelA := h.Subscribe()
	b, cancelB := h.Subscribe()
	defer cancelB()
	for i := range 100 {
		h.Publish(i) // nobody reads yet: Publish must not block
	}
	for i := range 100 {
		ev, ok := next(t, a)
		require.True(t, ok)
		require.Equal(t, i, ev)
		ev, ok = next(t, b)
		require.True(t, ok)
		require.Equal(t, i, ev)
	}
	cancelA()
	cancelA() // idempotent
	_, ok := next(t, a)
	require.False(t, ok, "cancel closes the channel")
	h.Publish(100)
	ev, ok := next(t, b)
	require.True(t, ok)
	require.Equal(t, 100, ev, "the other subscription goes on")
	h.Close()
}

func TestDropOldest(t *testing.T) {
	var drops atomic.Int64
	h := eventq.Hub[int]{OnDrop: func() { drops.Add(1) }}
	ch, cancel := h.Subscribe()
	defer cancel()
	const extra = 10
	for i := range eventq.MaxQueued + extra {
		h.Publish(i)
	}
	// Every event is either received, in order, or counted as dropped,
	// and the newest is always received.
	last, received := -1, 0
	for last != eventq.MaxQueued+extra-1 {
		ev, ok := next(t, ch)
		require.True(t, ok)
		require.Greater(t, ev, last)
		last = ev
		received++
	}
	require.Equal(t, eventq.MaxQueued+extra, received+int(drops.Load()))
	require.GreaterOrEqual(t, drops.Load(), int64(extra-1))
	h.Close()
}

func TestCloseEndsSubscriptions(t *testing.T) {
	var h eventq.Hub[int]
	ch, cancel := h.Subscribe()
	h.Publish(1)
	h.Close()
	h.Close()
	for range ch { // closed, perhaps after the queued event
	}
	cancel()
	late, cancelLate := h.Subscribe()
	_, ok := next(t, late)
	require.False(t, ok, "a subscription after Close is closed")
	cancelLate()
	h.Publish(2) // nothing to do, no panic
}
