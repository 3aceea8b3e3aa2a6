package p2pconn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/internal/testkit/childnode"
	"github.com/skipwire/skipwire/p2pconn"
)

// TestNotDeliveredOnLoss: the receiver's host vanishes while messages are on
// their way. The sender's connection ends with a *NotDeliveredError whose
// messages are a tail of what it sent, in order, and every message whose
// Send returned nil either reached the receiver's queue or is in that tail:
// nothing is unaccounted for.
func TestNotDeliveredOnLoss(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			for range 5 {
				c := newCluster(t, listen)
				ctx := testkit.Context(t, 30*time.Second)
				cfg := testConfig()
				cfg.ResumeWindow = 200 * time.Millisecond // the crashed node never comes back
				a, b := c.node(cfg), c.node(testConfig())
				ca, cb := connected(t, ctx, a, b)
				var sent [][]byte
				for seq := range uint32(300) {
					msg := message(1, seq, 200)
					err := ca.Send(ctx, msg)
					if err != nil {
						break
					}
					sent = append(sent, msg)
					if seq == 150 {
						require.NoError(t, b.h.Close()) // a crash, mid-stream
					}
				}
				<-ca.Done()
				var nd *p2pconn.NotDeliveredError
				err := ca.Err()
				if !errors.As(err, &nd) {
					// Everything was acknowledged before the loss.
					require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
					continue
				}
				require.ErrorIs(t, err, p2pconn.ErrNotDelivered)
				require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
				require.Equal(t, b.id, nd.Peer)
				tail := sent[len(sent)-len(nd.Messages):]
				for i := range tail {
					require.Equal(t, tail[i], nd.Messages[i], "the messages not delivered are the tail of those sent, in order")
				}
				got := 0
				for {
					nctx, cancel := context.WithTimeout(ctx, time.Second)
					_, err := cb.Next(nctx)
					cancel()
					if err != nil {
						break
					}
					got++
				}
				require.GreaterOrEqual(t, got+len(nd.Messages), len(sent), "received %d, not delivered %d, sent %d", got, len(nd.Messages), len(sent))
				require.ErrorIs(t, ca.Send(ctx, []byte("x")), p2pconn.ErrNotDelivered, "later Sends carry it too")
				t.Logf("sent %d, received %d, reported not delivered %d", len(sent), got, len(nd.Messages))
			}
		})
	}
}

// TestAckOffIsVersion1Behaviour: with acknowledgements off on one side, a
// loss says nothing of undelivered messages, as with a version-1 peer.
func TestAckOffIsVersion1Behaviour(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 30*time.Second)
	off := testConfig()
	off.ResumeWindow = -1
	a, b := c.node(testConfig()), c.node(off)
	ca, _ := connected(t, ctx, a, b)
	for seq := range uint32(50) {
		require.NoError(t, ca.Send(ctx, message(1, seq, 200)))
	}
	require.NoError(t, b.h.Close())
	<-ca.Done()
	require.ErrorIs(t, ca.Err(), p2pconn.ErrConnectionLost)
	require.NotErrorIs(t, ca.Err(), p2pconn.ErrNotDelivered)
}

// TestResendBufferTrimmedWhenQuiet: the copies a burst of Sends left in the
// resend buffer, acknowledged since, are given back once the connection is
// quiet for a round of the health loop: an idle connection holds no chunk of
// its last burst.
func TestResendBufferTrimmedWhenQuiet(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 30*time.Second)
	a, b := c.node(testConfig()), c.node(testConfig())
	ca, cb := connected(t, ctx, a, b)
	const count = 2000
	go func() {
		for seq := range uint32(count) {
			if ca.Send(ctx, message(1, seq, 200)) != nil {
				return
			}
		}
	}()
	for range count {
		_, err := cb.Next(ctx)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return p2pconn.ResendHeld(ca) == 0 }, 10*time.Second, 10*time.Millisecond,
		"the resend buffer still holds the chunks of the burst")
	require.NoError(t, ca.Send(ctx, message(1, count, 200)), "and the connection goes on")
	_, err := cb.Next(ctx)
	require.NoError(t, err)
}

// TestAckPushBack: a remote that acknowledges nothing (its process is
// frozen, its kernel still takes bytes) holds a sender to ResendBuffer: Send
// blocks there and fails with its ctx, nothing sent; once the remote thaws,
// its acknowledgements free room, and every committed message comes back
// from the echoing remote exactly once.
func TestAckPushBack(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	cfg := deliveryConfig()
	cfg.ResendBuffer = 64 << 10
	a := c.node(cfg)
	ctx := testkit.Context(t, 60*time.Second)
	child := childnode.Start(t, childnode.Options{Config: deliveryConfig()})
	c.table.Add(child.ID, child.Addr)
	conn, err := a.m.Connect(ctx, child.ID)
	require.NoError(t, err)
	require.NoError(t, conn.Send(ctx, message(1, 0, 1000)))
	_, err = conn.Next(ctx)
	require.NoError(t, err)

	require.NoError(t, child.Freeze())
	t.Cleanup(func() { _ = child.Thaw() })
	committed := 0
	var blocked error
	for seq := uint32(1); blocked == nil; seq++ {
		sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		blocked = conn.Send(sctx, message(1, seq, 1000))
		cancel()
		if blocked == nil {
			committed++
		}
		require.Less(t, committed, 1000, "Send never pushed back")
	}
	require.ErrorIs(t, blocked, context.DeadlineExceeded, "a Send that waits for room fails with its ctx")
	require.True(t, conn.IsAlive())
	t.Logf("%d messages of 1000 B committed before Send pushed back (ResendBuffer %d)", committed, cfg.ResendBuffer)
	require.LessOrEqual(t, committed*(1000+32), cfg.ResendBuffer+1032, "what waits for acknowledgement stays within ResendBuffer")

	require.NoError(t, child.Thaw())
	require.NoError(t, conn.Send(ctx, message(1, 10000, 1000)), "acknowledgements free room")
	for range committed + 1 {
		_, err := conn.Next(ctx)
		require.NoError(t, err)
	}
	nctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = conn.Next(nctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "nothing more than was committed")
}

// TestCloseResult: Close returns nil after a clean half-close and on later
// calls; on a connection whose remote crashed it returns nil (the end was
// seen already) or an error matching ErrConnectionLost, never anything else.
func TestCloseResult(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	ctx := testkit.Context(t, 30*time.Second)
	a, b := c.node(testConfig()), c.node(testConfig())
	ca, _ := connected(t, ctx, a, b)
	require.NoError(t, ca.Close())
	require.NoError(t, ca.Close())

	for range 20 {
		d := c.node(testConfig())
		cd, _ := connected(t, ctx, a, d)
		require.NoError(t, cd.Send(ctx, []byte("x")))
		require.NoError(t, d.h.Close())
		if err := cd.Close(); err != nil {
			require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
		}
		require.NoError(t, cd.Close())
	}
}
