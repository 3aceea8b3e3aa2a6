package p2pconn_test

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// newHostOptionsHost starts a host with HostOptions alone (and an identity
// and a loopback address), as an application builds it; the caller closes it.
func newHostOptionsHost(t testing.TB) host.Host {
	t.Helper()
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	h, err := libp2p.New(append(p2pconn.HostOptions(p2pconn.Config{}),
		libp2p.Identity(key), libp2p.ListenAddrStrings(testkit.LoopbackTCP))...)
	require.NoError(t, err)
	return h
}

// TestHostCloseWhileIdentifyEventsArrive: identify events keep arriving on
// the event bus of a host built with HostOptions while it closes (as when
// its peers close at the same moment and push their protocol changes):
// Close returns. The events are emitted here, as identify emits them, so
// that they surely arrive at the moment that matters. (With libp2p's address
// discovery on, go-libp2p v0.51's observed-address manager stops reading
// them at Close without unsubscribing; the bus blocks, holding its lock, and
// autonat's Close waits for that lock for good.)
func TestHostCloseWhileIdentifyEventsArrive(t *testing.T) {
	a := newHostOptionsHost(t)
	b := testkit.NewHost(t, nil, "", p2pconn.HostOptions(p2pconn.Config{})...)
	require.NoError(t, a.Connect(testkit.Context(t, 30*time.Second), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}))
	conn := a.Network().ConnsToPeer(b.ID())[0]
	em, err := a.EventBus().Emitter(new(event.EvtPeerIdentificationCompleted))
	require.NoError(t, err)

	stop, stopped := make(chan struct{}), make(chan struct{})
	emitted := 0
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = em.Emit(event.EvtPeerIdentificationCompleted{Peer: b.ID(), Conn: conn, ObservedAddr: conn.LocalMultiaddr()})
			emitted++
		}
	}()
	testkit.CloseHost(t, a)
	if t.Failed() {
		return // the emitter is stuck for good
	}
	close(stop)
	<-stopped
	require.NoError(t, em.Close())
	t.Logf("%d identify events emitted while the host ran and closed", emitted)
}

// TestManyHostsCloseAtOnce: 30 hosts built with HostOptions, each with a
// manager, all connected, close at the same moment, each closing its
// manager first (which makes the host push its protocol change to every
// peer): every Close returns.
func TestManyHostsCloseAtOnce(t *testing.T) {
	const size = 30
	hosts := make([]host.Host, size)
	managers := make([]*p2pconn.Manager, size)
	for i := range hosts {
		hosts[i] = newHostOptionsHost(t)
		var err error
		managers[i], err = p2pconn.NewManager(hosts[i], nil, p2pconn.Config{})
		require.NoError(t, err)
	}
	ctx := testkit.Context(t, 2*time.Minute)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8) // bounded: at most 8 dials at once
	for i := range hosts {
		for j := i + 1; j < size; j++ {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				_ = hosts[i].Connect(ctx, peer.AddrInfo{ID: hosts[j].ID(), Addrs: hosts[j].Addrs()})
			})
		}
	}
	wg.Wait()
	start := time.Now()
	for i, h := range hosts {
		wg.Go(func() {
			_ = managers[i].Close()
			testkit.CloseHost(t, h)
		})
	}
	wg.Wait()
	t.Logf("%d hosts closed in %s", size, time.Since(start).Round(time.Millisecond))
}
