package p2pconn_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// resumeConfig is testConfig with session resumption on.
func resumeConfig() p2pconn.Config {
	cfg := testConfig()
	cfg.ResumeWindow = 10 * time.Second
	return cfg
}

// stream sends n numbered messages of size bytes on c as sender, and
// returns how many Sends returned nil; it stops at the first error.
func stream(ctx context.Context, c p2pconn.Connection, sender uint32, n, size int) (int, error) {
	for seq := range n {
		if err := c.Send(ctx, message(sender, uint32(seq), size)); err != nil {
			return seq, err
		}
	}
	return n, nil
}

// drain reads n messages of sender from c and checks that they come once
// each, in order, intact.
func drain(ctx context.Context, c p2pconn.Connection, sender uint32, n, size int) error {
	for seq := range n {
		msg, err := c.Next(ctx)
		if err != nil {
			return fmt.Errorf("message %d of %d: %w", seq, n, err)
		}
		want := message(sender, uint32(seq), size)
		if string(msg) != string(want) {
			return fmt.Errorf("message %d: got sender %d seq %d (%d bytes), want seq %d: lost or duplicated",
				seq, binary.BigEndian.Uint32(msg), binary.BigEndian.Uint32(msg[4:]), len(msg), seq)
		}
	}
	return nil
}

// events collects the kinds of m's events for peer.
func collect(t *testing.T, n *node) func() []p2pconn.EventKind {
	ch, cancel := n.m.Subscribe()
	var mu sync.Mutex
	var kinds []p2pconn.EventKind
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ch {
			mu.Lock()
			kinds = append(kinds, ev.Kind)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() []p2pconn.EventKind {
		mu.Lock()
		defer mu.Unlock()
		return append([]p2pconn.EventKind(nil), kinds...)
	}
}

// TestResumeAfterReset: both sides stream numbered messages while the
// libp2p connection between them is closed under them, again and again.
// The same Connection objects go on without an error, and every message
// arrives once, in order: 0 lost, 0 duplicated.
func TestResumeAfterReset(t *testing.T) {
	resets := 10
	if soak() {
		resets = 200
	}
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			ctx := testkit.Context(t, 2*time.Minute)
			a, b := c.node(resumeConfig()), c.node(resumeConfig())
			evA := collect(t, a)
			ca, cb := connected(t, ctx, a, b)
			const n, size = 20000, 300
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			wg.Go(func() {
				if k, err := stream(ctx, ca, 1, n, size); err != nil {
					errs <- fmt.Errorf("a sent %d: %w", k, err)
				}
			})
			wg.Go(func() {
				if k, err := stream(ctx, cb, 2, n, size); err != nil {
					errs <- fmt.Errorf("b sent %d: %w", k, err)
				}
			})
			wg.Go(func() {
				if err := drain(ctx, cb, 1, n, size); err != nil {
					errs <- fmt.Errorf("b received: %w", err)
				}
			})
			wg.Go(func() {
				if err := drain(ctx, ca, 2, n, size); err != nil {
					errs <- fmt.Errorf("a received: %w", err)
				}
			})
			stop := make(chan struct{})
			var cut sync.WaitGroup
			done := 0
			cut.Go(func() {
				for done < resets {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					if len(a.h.Network().ConnsToPeer(b.h.ID())) == 0 {
						continue
					}
					require.NoError(t, a.h.Network().ClosePeer(b.h.ID()))
					done++
				}
			})
			wg.Wait()
			close(stop)
			cut.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.True(t, ca.IsAlive())
			require.True(t, cb.IsAlive())
			require.NoError(t, ca.Err())
			cur, ok := a.m.GetConnection(b.id)
			require.True(t, ok)
			require.Same(t, ca, cur, "the same Connection")
			var resuming, resumed int
			for _, k := range evA() {
				switch k {
				case p2pconn.EventResuming:
					resuming++
				case p2pconn.EventResumed:
					resumed++
				case p2pconn.EventDisconnected:
					t.Fatalf("a disconnected event")
				}
			}
			t.Logf("%d messages each way, %d connection closes: 0 lost, 0 duplicated; a resumed %d times (%d losses)", n, done, resumed, resuming)
			require.Positive(t, resumed)
		})
	}
}

// TestResumeEndsOnRestart: the peer's host vanishes and a new process
// comes up with the same key. The session cannot resume: it ends with a
// *NotDeliveredError whose messages are exactly those the old process never
// acknowledged, and the new process receives none of the old session's.
func TestResumeEndsOnRestart(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 30*time.Second)
	a, b := c.node(resumeConfig()), c.node(resumeConfig())
	ca, cb := connected(t, ctx, a, b)
	var sent [][]byte
	for seq := range uint32(200) {
		msg := message(1, seq, 200)
		require.NoError(t, ca.Send(ctx, msg))
		sent = append(sent, msg)
	}
	got := 0
	for range 100 {
		_, err := cb.Next(ctx)
		require.NoError(t, err)
		got++
	}
	_ = got
	require.NoError(t, b.h.Close()) // a crash
	<-ca.Done()
	err := ca.Err()
	var nd *p2pconn.NotDeliveredError
	if errors.As(err, &nd) {
		tail := sent[len(sent)-len(nd.Messages):]
		require.Equal(t, tail, nd.Messages)
	}
	require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
}
