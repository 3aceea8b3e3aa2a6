package network_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
)

// echoProcessor answers every call on its channel with "echo: " and the
// payload, and records the calls it saw.
type echoProcessor struct {
	c     network.Conduit
	calls chan network.Message
}

func newEcho(t testing.TB, nd *node, ch network.Channel) *echoProcessor {
	t.Helper()
	e := &echoProcessor{c: nd.n.Conduit(ch), calls: make(chan network.Message, 64)}
	register(t, nd, ch, e)
	return e
}

func (e *echoProcessor) ProcessIncomingMessage(ctx context.Context, m network.Message) {
	if e.calls != nil {
		e.calls <- m
	}
	if !m.Call.IsZero() {
		_ = e.c.Reply(ctx, m.Call, append([]byte("echo: "), m.Payload...))
	}
}

// TestSendRequestReply: a message reaches the processor with its channel,
// authenticated sender and payload; a Request gets the reply.
func TestSendRequestReply(t *testing.T) {
	forEnv(t, append(envs, quicEnv), func(t *testing.T, w world) {
		ns := newNodes(t, w, 2, network.Config{})
		a, b := ns[0], ns[1]
		in := newInbox(16)
		register(t, b, "news", in)
		echo := newEcho(t, b, "echo")
		ctx := testContext(t, opTimeout)

		payload := []byte("hello")
		require.NoError(t, a.n.Conduit("news").Send(ctx, b.id, payload))
		payload[0] = 'j' // Send keeps no reference
		m := in.next(t)
		require.Equal(t, network.Channel("news"), m.Channel)
		require.Equal(t, a.id, m.From)
		require.Equal(t, "hello", string(m.Payload))
		require.True(t, m.Call.IsZero())

		for i := range 3 {
			r, err := a.n.Conduit("echo").Request(ctx, b.id, fmt.Appendf(nil, "q%d", i))
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("echo: q%d", i), string(r.Payload))
			require.Equal(t, b.id, r.From)
			require.Equal(t, network.Channel("echo"), r.Channel)
			require.True(t, r.Call.IsZero())
			call := <-echo.calls
			require.Equal(t, a.id, call.From)
			require.Equal(t, a.id, call.Call.Origin, "the origin of a Request is its sender")
			require.NotZero(t, call.Call.ID)
		}
	})
}

// TestSelf: Send and Request to this node's own Identifier are delivered
// locally, From this node, and fail with ErrNoProcessor on a channel without
// a processor.
func TestSelf(t *testing.T) {
	a := newNode(t, memEnv.world(t), network.Config{})
	in := newInbox(16)
	register(t, a, "note", in)
	echo := newEcho(t, a, "echo")
	ctx := testContext(t, opTimeout)

	payload := []byte("to me")
	require.NoError(t, a.n.Conduit("note").Send(ctx, a.id, payload))
	payload[0] = 'x'
	m := in.next(t)
	require.Equal(t, a.id, m.From)
	require.Equal(t, "to me", string(m.Payload))

	r, err := a.n.Conduit("echo").Request(ctx, a.id, []byte("ping"))
	require.NoError(t, err)
	require.Equal(t, "echo: ping", string(r.Payload))
	require.Equal(t, a.id, r.From)
	call := <-echo.calls
	require.Equal(t, a.id, call.Call.Origin)

	err = a.n.Conduit("nobody").Send(ctx, a.id, nil)
	require.ErrorIs(t, err, network.ErrNoProcessor)
	_, err = a.n.Conduit("nobody").Request(ctx, a.id, nil)
	require.ErrorIs(t, err, network.ErrNoProcessor)
	require.Zero(t, a.m.ConnectionCount(), "nothing to self goes through the manager")
}

// TestSelfPushBack: messages to self wait for room in the channel.
func TestSelfPushBack(t *testing.T) {
	const window = 3
	a := newNode(t, memEnv.world(t), network.Config{Window: window})
	gate := make(chan struct{})
	got := make(chan network.Message, 16)
	register(t, a, "slow", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
		got <- m
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}))
	ctx := testContext(t, opTimeout)
	for i := range window {
		require.NoError(t, a.n.Conduit("slow").Send(ctx, a.id, []byte{byte(i)}))
	}
	<-got // the processor holds the first one
	short, cancel := context.WithTimeout(ctx, quiet)
	defer cancel()
	err := a.n.Conduit("slow").Send(short, a.id, []byte{9})
	require.ErrorIs(t, err, context.DeadlineExceeded, "a full channel pushes back")
	close(gate)
	require.NoError(t, a.n.Conduit("slow").Send(ctx, a.id, []byte{window}))
	for i := 1; i <= window; i++ {
		require.Equal(t, []byte{byte(i)}, (<-got).Payload, "in order, the one that timed out never delivered")
	}
}

// TestRequestNoProcessor: a Request to a node without a processor on the
// channel fails with ErrNoProcessor long before its ctx ends; a Send there is
// committed and dropped by the remote, which counts it.
func TestRequestNoProcessor(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		ns := newNodes(t, w, 2, network.Config{})
		a, b := ns[0], ns[1]
		ctx := testContext(t, time.Minute)
		require.NoError(t, a.n.Conduit("void").Send(ctx, b.id, []byte("lost")))
		for range 3 {
			start := time.Now()
			_, err := a.n.Conduit("void").Request(ctx, b.id, []byte("anyone?"))
			require.ErrorIs(t, err, network.ErrNoProcessor)
			require.NotErrorIs(t, err, network.ErrRemoteClosed)
			require.Less(t, time.Since(start), 10*time.Second, "ErrNoProcessor must come from the remote, not the ctx")
		}
		// Registering the channel later makes it work.
		newEcho(t, b, "void")
		r, err := a.n.Conduit("void").Request(ctx, b.id, []byte("now?"))
		require.NoError(t, err)
		require.Equal(t, "echo: now?", string(r.Payload))
	})
}

// TestOrderPerSender: one sender's messages on a channel reach the processor
// in the order sent, one at a time.
func TestOrderPerSender(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		const count = 300
		ns := newNodes(t, w, 2, network.Config{Window: 8})
		a, b := ns[0], ns[1]
		in := newInbox(count)
		register(t, b, "seq", in)
		ctx := testContext(t, opTimeout)
		for i := range count {
			require.NoError(t, a.n.Conduit("seq").Send(ctx, b.id, binary.BigEndian.AppendUint32(nil, uint32(i))))
		}
		for i := range count {
			require.Equal(t, uint32(i), binary.BigEndian.Uint32(in.next(t).Payload))
		}
	})
}

// TestRegister: one processor per channel; channel names are checked.
func TestRegister(t *testing.T) {
	a := newNode(t, memEnv.world(t), network.Config{})
	c := register(t, a, "x", newInbox(1))
	require.Equal(t, network.Channel("x"), c.Channel())
	_, err := a.n.Register("x", newInbox(1))
	require.ErrorIs(t, err, network.ErrChannelTaken)
	_, err = a.n.Register("", newInbox(1))
	require.ErrorIs(t, err, network.ErrInvalidChannel)
	long := network.Channel(make([]byte, network.MaxChannelLen+1))
	_, err = a.n.Register(long, newInbox(1))
	require.ErrorIs(t, err, network.ErrInvalidChannel)
	_, err = a.n.Register(network.Channel(make([]byte, network.MaxChannelLen)), newInbox(1))
	require.NoError(t, err)
	err = a.n.Conduit(long).Send(testContext(t, opTimeout), identity.Identifier{1}, nil)
	require.ErrorIs(t, err, network.ErrInvalidChannel)
}

// TestManagerInUse: one Network per manager at a time.
func TestManagerInUse(t *testing.T) {
	a := newNode(t, memEnv.world(t), network.Config{})
	_, err := network.New(a.m, network.Config{})
	require.ErrorIs(t, err, network.ErrManagerInUse)
	_, err = network.New(a.m, network.Config{Window: -1})
	require.ErrorIs(t, err, network.ErrInvalidConfig)
}

// TestConfig: Validate and the defaults.
func TestConfig(t *testing.T) {
	require.NoError(t, network.Config{}.Validate())
	d := network.DefaultConfig()
	require.Equal(t, network.DefaultWindow, d.Window)
	require.Equal(t, network.DefaultCloseTimeout, d.CloseTimeout)
	require.NoError(t, d.Validate())
	require.ErrorIs(t, network.Config{Window: -1}.Validate(), network.ErrInvalidConfig)
	require.ErrorIs(t, network.Config{Window: network.MaxWindow + 1}.Validate(), network.ErrInvalidConfig)
	require.ErrorIs(t, network.Config{CloseTimeout: -time.Second}.Validate(), network.ErrInvalidConfig)
}

// TestConnectOptions: a conduit call passes its ConnectOptions to the
// manager, after a conduit's Defaults: a fail-fast Send across a partition
// returns at once although the manager's Config retries for long.
func TestConnectOptions(t *testing.T) {
	w := memEnv.world(t).(*memWorld)
	pcfg := connConfig()
	pcfg.RetryAttempts = 10
	pcfg.RetryDelay = 10 * time.Second
	pcfg.MaxRetryDelay = pcfg.RetryDelay
	a := newNodeConn(t, w, pcfg, network.Config{})
	b := newNodeConn(t, w, pcfg, network.Config{})
	register(t, b, "x", newInbox(16))
	w.net.Partition(a.id, b.id)
	ctx := testContext(t, opTimeout)

	var err error
	within(t, pcfg.RetryDelay/4, "fail-fast Send", func() {
		err = a.n.Conduit("x").Send(ctx, b.id, nil, p2pconn.WithRetryAttempts(0))
	})
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	fast := network.WithDefaults(a.n.Conduit("x"), network.Defaults{
		Connect: []p2pconn.ConnectOption{p2pconn.WithRetryAttempts(0)},
	})
	within(t, pcfg.RetryDelay/4, "fail-fast Request by default", func() {
		_, err = fast.Request(ctx, b.id, nil)
	})
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	// The call's own options win over the defaults: with retries, the
	// Send outlasts a short timeout instead of failing at once (it ignores
	// the failures just above, which p2pconn.Config.UnreachableFor
	// remembers).
	short, cancel := context.WithTimeout(ctx, quiet)
	defer cancel()
	err = fast.Send(short, b.id, nil, p2pconn.WithRetryAttempts(5), p2pconn.IgnoreRecentFailure())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, memnet.ErrUnreachable)
}

// TestDefaultsTimeout: a conduit's default Timeout bounds its calls.
func TestDefaultsTimeout(t *testing.T) {
	ns := newNodes(t, memEnv.world(t), 2, network.Config{})
	a, b := ns[0], ns[1]
	register(t, b, "mute", newInbox(16)) // never replies
	c := network.WithDefaults(a.n.Conduit("mute"), network.Defaults{Timeout: quiet})
	require.Equal(t, network.Channel("mute"), c.Channel())
	start := time.Now()
	_, err := c.Request(context.Background(), b.id, []byte("?"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.GreaterOrEqual(t, time.Since(start), quiet)
	require.NoError(t, c.Send(context.Background(), b.id, []byte("!")))
}
