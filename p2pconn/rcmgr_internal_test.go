package p2pconn

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/stretchr/testify/require"
)

// countScope is a resource scope with a memory limit that counts the calls.
type countScope struct {
	network.NullScope
	limit, memory     int
	reserves, release int
	lastPrio          uint8
}

func (s *countScope) ReserveMemory(n int, prio uint8) error {
	s.lastPrio = prio
	if s.limit > 0 && s.memory+n > s.limit {
		return network.ErrResourceLimitExceeded
	}
	s.reserves++
	s.memory += n
	return nil
}

func (s *countScope) ReleaseMemory(n int) {
	s.release++
	s.memory -= n
}

// TestMemAccountSteps: small messages are reserved in steps that double
// while the stream keeps asking, so the resource manager is asked a few
// times, not once per message; what is reserved always covers what is
// used, and at most a step more; what Next releases stays reserved until a
// round finds it unused, and a quiet stream then holds nothing.
func TestMemAccountSteps(t *testing.T) {
	scope := &countScope{}
	var a memAccount
	a.init(scope)
	const n, size = 1000, 128
	for range n {
		if !a.cover(size) {
			require.NoError(t, a.reserve(size, network.ReservationPriorityAlways))
		}
		require.GreaterOrEqual(t, scope.memory, a.used)
		require.LessOrEqual(t, scope.memory-a.used, a.step)
	}
	require.Equal(t, n*size, a.used)
	require.LessOrEqual(t, scope.reserves, 6, "4, 8, 16, 32, 64 KiB: 124 KiB")
	for range n {
		a.release(size)
	}
	require.Zero(t, a.used)
	require.Zero(t, scope.release, "kept for the next messages")

	// The stream goes on with fewer messages queued at a time: no call,
	// then one round gives back what the last round's peak no longer
	// needs, the next one what this round did not use.
	calls := scope.reserves + scope.release
	for range 10 {
		for range 5 {
			if !a.cover(size) {
				require.NoError(t, a.reserve(size, network.ReservationPriorityAlways))
			}
		}
		for range 5 {
			a.release(size)
		}
	}
	require.Equal(t, calls, scope.reserves+scope.release, "covered by what was reserved")
	a.round()
	require.Equal(t, n*size, scope.memory, "the peak of the round")
	a.cover(size)
	a.round()
	require.Equal(t, size, scope.memory, "this round's peak")
	a.release(size)
	a.round()
	a.round()
	require.Zero(t, scope.memory, "a quiet stream reserves nothing")

	// A large message is reserved in one call, of its size, and given back
	// as soon as Next takes it, but for a step.
	before := scope.reserves
	require.NoError(t, a.reserve(4<<20, network.ReservationPriorityAlways))
	require.Equal(t, before+1, scope.reserves)
	a.release(4 << 20)
	require.LessOrEqual(t, scope.memory, maxMemStep)
}

// TestMemAccountRefused: a refused reservation reserves nothing and the
// next release signals the waiting reader; a step that does not fit is
// cut down to what is needed.
func TestMemAccountRefused(t *testing.T) {
	scope := &countScope{limit: 10 << 10}
	var a memAccount
	a.init(scope)
	require.NoError(t, a.reserve(6<<10, network.ReservationPriorityAlways))
	require.ErrorIs(t, a.reserve(6<<10, network.ReservationPriorityMedium), network.ErrResourceLimitExceeded)
	require.Equal(t, network.ReservationPriorityMedium, scope.lastPrio)
	require.Equal(t, 6<<10, a.used)
	select {
	case <-a.freed:
		t.Fatal("signalled before any release")
	default:
	}
	require.NoError(t, a.reserve(3<<10, network.ReservationPriorityAlways), "only what is needed, when a step does not fit")
	require.Equal(t, 9<<10, scope.memory)
	a.release(6 << 10)
	select {
	case <-a.freed:
	default:
		t.Fatal("the release did not signal the waiting reader")
	}

	// Forced bytes (a closed connection drains) are released like others.
	a.force(20 << 10)
	a.release(20 << 10)
	require.Equal(t, 3<<10, a.used)
}

// TestConnMemory pins the worst case per connection stated in Config's
// documentation and the README.
func TestConnMemory(t *testing.T) {
	d := DefaultConfig()
	require.Equal(t, int64(64<<20+readBufSize), connMemory(d), "16 messages of 4 MiB")
	d.ReceiveBuffer = 2
	require.Equal(t, int64(20<<20+readBufSize), connMemory(d), "16 MiB read ahead plus one message")
}

// TestResourceLimitsFitAConnection: HostOptions' resource manager lets one
// connection hold its worst case, in every scope its messages count in,
// and has streams in skipwire's service and protocol, and memory for their
// muxer windows, for every connection.
func TestResourceLimitsFitAConnection(t *testing.T) {
	for _, cfg := range []Config{DefaultConfig(), {MaxMessageSize: 64 << 20, ReceiveBuffer: 64, MaxConnections: 20000, NetworkName: "blue"}} {
		cfg = cfg.withDefaults()
		p := resourceLimits(cfg).ToPartialLimitConfig()
		mem := rcmgr.LimitVal64(connMemory(cfg))
		svc := p.Service[ServiceName]
		require.GreaterOrEqual(t, svc.Memory, mem)
		require.GreaterOrEqual(t, p.ServicePeer[ServiceName].Memory, mem)
		require.GreaterOrEqual(t, p.ProtocolPeer[ProtocolFor(cfg.NetworkName)].Memory, mem)
		require.GreaterOrEqual(t, p.Stream.Memory, mem)
		require.GreaterOrEqual(t, p.PeerDefault.Memory, mem)
		require.GreaterOrEqual(t, svc.StreamsInbound, rcmgr.LimitVal(cfg.MaxConnections))
		require.GreaterOrEqual(t, svc.StreamsOutbound, rcmgr.LimitVal(cfg.MaxConnections))
		// The protocol's stream limits, and the system's memory for every
		// stream's muxer window, admit MaxConnections connections.
		pr := p.Protocol[ProtocolFor(cfg.NetworkName)]
		require.GreaterOrEqual(t, pr.StreamsInbound, rcmgr.LimitVal(cfg.MaxConnections))
		require.GreaterOrEqual(t, pr.StreamsOutbound, rcmgr.LimitVal(cfg.MaxConnections))
		require.GreaterOrEqual(t, p.System.Memory, rcmgr.LimitVal64(cfg.MaxConnections)*streamWindowReserve)
	}
}
