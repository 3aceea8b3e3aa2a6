package p2pconn_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
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

// TestResumeEndsOnRestart: the peer's host vanishes while messages wait
// in its stream, and a new process comes up with the same key. The session
// cannot resume: the sender's connection ends as soon as the new process
// answers (not at the end of the window) with a *NotDeliveredError whose
// messages are a tail of those sent, in order, that covers everything the
// old process did not take into its queue; the new process receives none
// of them.
func TestResumeEndsOnRestart(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 30*time.Second)
	cfg := resumeConfig()
	cfg.ResumeWindow = time.Minute
	a := c.node(cfg)
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	small := cfg
	small.ReceiveBuffer = 8 // most messages wait in the stream, unacknowledged
	hb := testkit.NewHost(t, key, transports["tcp"], p2pconn.HostOptions(small)...)
	mb, err := p2pconn.NewManager(hb, c.table, small)
	require.NoError(t, err)
	t.Cleanup(func() { _ = mb.Close() })
	c.table.Add(mb.ID(), hb.Addrs()...)
	b := &node{id: mb.ID(), h: hb, m: mb}

	ca, cb := connected(t, ctx, a, b)
	var sent [][]byte
	for seq := range uint32(400) {
		msg := message(1, seq, 1000)
		sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := ca.Send(sctx, msg)
		cancel()
		if err != nil {
			break // the stream window is full
		}
		sent = append(sent, msg)
	}
	require.NoError(t, hb.Close()) // a crash, with messages in flight
	got := 0
	for {
		nctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := cb.Next(nctx)
		cancel()
		if err != nil {
			break
		}
		got++
	}
	require.True(t, ca.IsAlive(), "the session waits for the peer")

	// The new process, same key, new port.
	hb2 := testkit.NewHost(t, key, transports["tcp"], p2pconn.HostOptions(cfg)...)
	mb2, err := p2pconn.NewManager(hb2, c.table, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = mb2.Close() })
	c.table.Add(mb2.ID(), hb2.Addrs()...)
	t0 := time.Now()
	_, err = a.m.Connect(ctx, mb2.ID())
	require.NoError(t, err)
	select {
	case <-ca.Done():
	case <-ctx.Done():
		t.Fatal("the session did not end when the peer restarted")
	}
	ended := time.Since(t0)
	var nd *p2pconn.NotDeliveredError
	require.ErrorAs(t, ca.Err(), &nd)
	require.ErrorIs(t, ca.Err(), p2pconn.ErrConnectionLost)
	k := len(nd.Messages)
	require.Equal(t, sent[len(sent)-k:], nd.Messages, "a tail of what was sent, in order")
	require.GreaterOrEqual(t, got+k, len(sent), "received %d, reported %d, sent %d", got, k, len(sent))
	cb2, err := mb2.Accept(ctx)
	require.NoError(t, err)
	nctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = cb2.Next(nctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the new process receives nothing of the old session")
	t.Logf("sent %d, the old process took %d, reported not delivered %d; the session ended %v after the Connect to the new process", len(sent), got, k, ended)
}

// TestResumeWithVersion1Peer: a node with resumption on and a node that
// speaks version 1 connect; a loss ends the connection at once, as it did
// before resumption existed, and they connect again.
func TestResumeWithVersion1Peer(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 30*time.Second)
	a, b := c.node(resumeConfig()), c.node(resumeConfig())
	p2pconn.SpeakVersion1(b.m)
	ca, cb := connected(t, ctx, a, b)
	require.NoError(t, ca.Send(ctx, []byte("before")))
	msg, err := cb.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "before", string(msg))
	require.NoError(t, a.h.Network().ClosePeer(b.h.ID()))
	<-ca.Done()
	require.ErrorIs(t, ca.Err(), p2pconn.ErrConnectionLost)
	require.NotErrorIs(t, ca.Err(), p2pconn.ErrNotDelivered)
	ca2, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	require.NotSame(t, ca, ca2)
	require.NoError(t, ca2.Send(ctx, []byte("after")))
	cb2, err := b.m.Accept(ctx)
	require.NoError(t, err)
	msg, err = cb2.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "after", string(msg))
}

// TestConnectResumes: a connection loses its stream after one message. It
// stays the peer's connection while it resumes, and a Connect returns it:
// the same Connection, on which messages flow both ways again.
func TestConnectResumes(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 30*time.Second)
	a, b := c.node(resumeConfig()), c.node(resumeConfig())
	events := collect(t, a)
	ca, cb := connected(t, ctx, a, b)
	require.NoError(t, ca.Send(ctx, []byte("one")))
	msg, err := cb.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "one", string(msg))
	require.Eventually(t, func() bool { return hasKind(events(), p2pconn.EventConnected) }, 5*time.Second, time.Millisecond)
	require.NoError(t, a.h.Network().ClosePeer(b.h.ID()))
	require.Eventually(t, func() bool { return hasKind(events(), p2pconn.EventResuming) }, 5*time.Second, time.Millisecond)
	got, ok := a.m.GetConnection(b.id)
	require.True(t, ok)
	require.Same(t, ca, got, "the resuming connection is the peer's connection")
	require.Equal(t, 1, a.m.ConnectionCount())
	require.True(t, ca.IsAlive())

	again, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	require.Same(t, ca, again)
	require.Eventually(t, func() bool { return hasKind(events(), p2pconn.EventResumed) }, 5*time.Second, time.Millisecond)
	require.NoError(t, ca.Send(ctx, []byte("two")))
	msg, err = cb.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "two", string(msg))
	require.NoError(t, cb.Send(ctx, []byte("three")))
	msg, err = ca.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "three", string(msg))
	require.False(t, hasKind(events(), p2pconn.EventDisconnected))
}

func hasKind(kinds []p2pconn.EventKind, k p2pconn.EventKind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}
