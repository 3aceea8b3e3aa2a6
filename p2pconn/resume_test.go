package p2pconn_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
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

// endSeq numbers the last message of a stream, which says it ended.
const endSeq = 1<<32 - 1

// stream sends numbered messages of size bytes on c as sender, at least
// min of them and until stop is closed, then the end message; it returns
// how many it sent before the end, and stops at the first error.
func stream(ctx context.Context, c p2pconn.Connection, sender uint32, min, size int, stop <-chan struct{}) (int, error) {
	for seq := 0; ; seq++ {
		if seq >= min {
			select {
			case <-stop:
				return seq, c.Send(ctx, message(sender, endSeq, size))
			default:
			}
		}
		if err := c.Send(ctx, message(sender, uint32(seq), size)); err != nil {
			return seq, err
		}
	}
}

// drain reads sender's messages from c up to its end message and checks
// that they come once each, in order, intact; it returns how many came.
func drain(ctx context.Context, c p2pconn.Connection, sender uint32, size int) (int, error) {
	for seq := 0; ; seq++ {
		msg, err := c.Next(ctx)
		if err != nil {
			return seq, fmt.Errorf("message %d: %w", seq, err)
		}
		if binary.BigEndian.Uint32(msg[4:]) == endSeq {
			return seq, nil
		}
		want := message(sender, uint32(seq), size)
		if string(msg) != string(want) {
			return seq, fmt.Errorf("message %d: got sender %d seq %d (%d bytes): lost or duplicated",
				seq, binary.BigEndian.Uint32(msg), binary.BigEndian.Uint32(msg[4:]), len(msg))
		}
	}
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
			const min, size = 2000, 300
			stop := make(chan struct{})
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			var sentA, sentB, gotA, gotB int
			wg.Go(func() {
				var err error
				if sentA, err = stream(ctx, ca, 1, min, size, stop); err != nil {
					errs <- fmt.Errorf("a sent %d: %w", sentA, err)
				}
			})
			wg.Go(func() {
				var err error
				if sentB, err = stream(ctx, cb, 2, min, size, stop); err != nil {
					errs <- fmt.Errorf("b sent %d: %w", sentB, err)
				}
			})
			wg.Go(func() {
				var err error
				if gotB, err = drain(ctx, cb, 1, size); err != nil {
					errs <- fmt.Errorf("b received: %w", err)
				}
			})
			wg.Go(func() {
				var err error
				if gotA, err = drain(ctx, ca, 2, size); err != nil {
					errs <- fmt.Errorf("a received: %w", err)
				}
			})
			// Each close comes 0-10 ms after the session resumed from the
			// last one, while both sides stream.
			resumedA := make(chan struct{}, 1)
			ch, cancel := a.m.Subscribe()
			defer cancel()
			go func() {
				for ev := range ch {
					if ev.Kind == p2pconn.EventResumed {
						resumedA <- struct{}{}
					}
				}
			}()
			done := 0
			var took []time.Duration
			for done < resets {
				time.Sleep(time.Duration(rand.N(10)) * time.Millisecond)
				t0 := time.Now()
				require.NoError(t, a.h.Network().ClosePeer(b.h.ID()))
				done++
				select {
				case <-resumedA:
					took = append(took, time.Since(t0))
				case <-ctx.Done():
					t.Fatalf("close %d: the session did not resume", done)
				}
			}
			close(stop)
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.Equal(t, sentA, gotB)
			require.Equal(t, sentB, gotA)
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
			t.Logf("%d and %d messages, %d libp2p connections closed under them: 0 lost, 0 duplicated; a resumed %d times (%d losses), p50 %v, max %v after the close",
				sentA, sentB, done, resumed, resuming, testkit.Percentile(took, 50), testkit.Percentile(took, 100))
			require.Equal(t, done, resumed, "one resumption per close")
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
