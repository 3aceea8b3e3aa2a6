package network

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
)

// frozenLink starts a Network with window 2 and a processor on "ch" that
// hands its messages to the channel returned, connects a peer without a
// Network, plays the OPEN of a remote Network of epoch 0xaaaa, and stalls
// the link's writer, as on a connection the remote does not read: control
// frames stay pending.
func frozenLink(t *testing.T) (*Network, *link, <-chan Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	net := memnet.NewNetwork()
	victimM, err := net.NewManager(identity.Identifier{1}, p2pconn.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = victimM.Close() })
	peerM, err := net.NewManager(identity.Identifier{2}, p2pconn.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = peerM.Close() })
	n, err := New(victimM, Config{Window: 2})
	require.NoError(t, err)
	got := make(chan Message, 4)
	_, err = n.Register("ch", ProcessorFunc(func(_ context.Context, m Message) { got <- m }))
	require.NoError(t, err)

	_, err = peerM.Connect(ctx, victimM.ID())
	require.NoError(t, err)
	var l *link
	require.Eventually(t, func() bool {
		n.mu.RLock()
		defer n.mu.RUnlock()
		for _, x := range n.links {
			l = x
		}
		return l != nil
	}, 10*time.Second, time.Millisecond)
	l.handle(appendOpen(nil, 0xaaaa, n.epoch, 2, capGrow))
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.writing {
			return false // the OPEN is still being written
		}
		l.writing = true
		return true
	}, 10*time.Second, time.Millisecond)
	t.Cleanup(func() {
		l.mu.Lock()
		l.writing = false
		l.mu.Unlock()
		require.NoError(t, n.Close())
	})
	return n, l, got
}

// TestControlForGoneNetworkDropped: CREDITs, NO_PROCESSORs and BLOCKEDs not
// yet written when the remote's Network restarts or closes are dropped: the
// next Network would count a CREDIT written after the OPEN acknowledging it
// as its own, send more than its window, and have the excess dropped.
func TestControlForGoneNetworkDropped(t *testing.T) {
	for _, tc := range []struct {
		name string
		gone []byte // what says that the remote's Network is gone
	}{
		{"restart", appendOpen(nil, 0xbbbb, 0, 2, capGrow)},
		{"close", appendClosed(nil, 0xaaaa)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, l, got := frozenLink(t)
			l.handle(appendData(nil, "ch", CallRef{}, false, []byte("x")))
			<-got
			l.handle(appendData(nil, "none", CallRef{ID: 7}, false, nil))
			require.Eventually(t, func() bool {
				l.mu.Lock()
				defer l.mu.Unlock()
				return l.credits["ch"] == 1 && l.credits["none"] == 1 && len(l.noProc) == 1
			}, 10*time.Second, time.Millisecond, "a CREDIT on ch, one and a NO_PROCESSOR on none pending")

			l.handle(tc.gone)
			l.mu.Lock()
			defer l.mu.Unlock()
			require.Empty(t, l.credits)
			require.Empty(t, l.noProc)
			require.Empty(t, l.blocked)
		})
	}
}

// TestControlPendingBounded: a peer that sends to ever new channels without
// a processor, and does not read, leaves a bounded number of control frames
// waiting.
func TestControlPendingBounded(t *testing.T) {
	_, l, _ := frozenLink(t)
	for i := range 3 * maxPendingControl {
		l.handle(appendData(nil, Channel(fmt.Sprintf("none-%d", i)), CallRef{ID: uint64(i + 1)}, false, nil))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	require.Len(t, l.credits, maxPendingControl)
	require.Len(t, l.noProc, maxPendingControl)
}
