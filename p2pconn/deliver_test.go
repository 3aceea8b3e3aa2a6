package p2pconn_test

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// recorder collects what a Deliverer hands over.
type recorder struct {
	mu    sync.Mutex
	msgs  []string
	ends  int
	err   error
	ended chan struct{}
}

func newRecorder() *recorder { return &recorder{ended: make(chan struct{})} }

func (r *recorder) handle(msg []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, string(msg))
}

func (r *recorder) end(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends++
	r.err = err
	if r.ends == 1 {
		close(r.ended)
	}
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func numbered(from, to int) []string {
	var s []string
	for i := from; i < to; i++ {
		s = append(s, fmt.Sprint(i))
	}
	return s
}

// TestDeliver: messages queued before Deliver and those arriving after it
// reach the handler once each, in order; Deliver(nil, nil) hands the
// following ones back to Next; the end is reported once, after the last
// message, also to a Deliver called after the end.
func TestDeliver(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	a, b := c.node(testConfig()), c.node(testConfig())
	ctx := testkit.Context(t, 20*time.Second)
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx)
	require.NoError(t, err)
	d, ok := cb.(p2pconn.Deliverer)
	require.True(t, ok, "a libp2p Manager's connection delivers")

	send := func(from, to int) {
		for i := from; i < to; i++ {
			require.NoError(t, ca.Send(ctx, []byte(fmt.Sprint(i))))
		}
	}
	// 0..99 wait in the queue; the first is taken by Next.
	send(0, 100)
	msg, err := cb.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "0", string(msg))

	r := newRecorder()
	d.Deliver(r.handle, r.end)
	send(100, 1000)
	require.Eventually(t, func() bool { return len(r.got()) == 999 }, 10*time.Second, time.Millisecond)
	require.Equal(t, numbered(1, 1000), r.got())

	// Stopped: later messages wait for Next.
	d.Deliver(nil, nil)
	send(1000, 1010)
	for i := 1000; i < 1010; i++ {
		msg, err := cb.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(i), string(msg))
	}
	require.Len(t, r.got(), 999, "nothing handed over after Deliver(nil, nil)")

	// Delivering again: queued ones first, then the end, once.
	send(1010, 1020)
	require.NoError(t, ca.Close())
	require.Eventually(t, func() bool { return !cb.IsAlive() }, 5*time.Second, time.Millisecond)
	r2 := newRecorder()
	d.Deliver(r2.handle, r2.end)
	select {
	case <-r2.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the end was not reported")
	}
	require.Equal(t, numbered(1010, 1020), r2.got())
	require.ErrorIs(t, r2.err, io.EOF)
	require.Equal(t, 1, r2.ends)
	require.Equal(t, 0, r.ends, "a stopped handler does not learn the end")

	require.Panics(t, func() { d.Deliver(r.handle, nil) })
}
