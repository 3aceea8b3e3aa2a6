package network_test

import (
	"context"
	"crypto/rand"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
	"github.com/skipwire/skipwire/resolver"
)

// Timeouts of the tests. They bound waits that succeed at once on a healthy
// implementation, so they are generous for a loaded machine and the race
// detector.
const (
	opTimeout  = 20 * time.Second       // one blocking call expected to succeed
	eventually = 15 * time.Second       // a require.Eventually on an asynchronous effect
	tick       = 2 * time.Millisecond   // its polling period
	quiet      = 150 * time.Millisecond // how long something that must not happen is watched for
)

// soak reports whether the long versions of the tests run.
func soak() bool { return os.Getenv("SKIPWIRE_SOAK") != "" }

// scale returns short in a normal run and long under SKIPWIRE_SOAK=1.
func scale(short, long int) int {
	if soak() {
		return long
	}
	return short
}

// world builds nodes that reach each other by Identifier.
type world interface {
	// manager starts a node's ConnectionManager; the test's cleanup closes it.
	manager(t testing.TB, cfg p2pconn.Config) p2pconn.ConnectionManager
}

// env names a kind of world.
type env struct {
	name  string
	world func(t testing.TB) world
}

var (
	memEnv  = env{"memnet", func(testing.TB) world { return &memWorld{net: memnet.NewNetwork()} }}
	tcpEnv  = env{"tcp", func(testing.TB) world { return &hostWorld{listen: "/ip4/127.0.0.1/tcp/0", table: resolver.NewStatic()} }}
	quicEnv = env{"quic", func(testing.TB) world {
		return &hostWorld{listen: "/ip4/127.0.0.1/udp/0/quic-v1", table: resolver.NewStatic()}
	}}
)

// envs are the worlds most tests run in: memnet and real loopback hosts.
var envs = []env{memEnv, tcpEnv}

// forEnv runs f as a subtest in each of es.
func forEnv(t *testing.T, es []env, f func(t *testing.T, w world)) {
	for _, e := range es {
		t.Run(e.name, func(t *testing.T) { f(t, e.world(t)) })
	}
}

type memWorld struct{ net *memnet.Network }

func (w *memWorld) manager(t testing.TB, cfg p2pconn.Config) p2pconn.ConnectionManager {
	t.Helper()
	m, err := w.net.NewManager(randomID(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	return m
}

// hostWorld starts real libp2p hosts on loopback that resolve each other
// through one static table.
type hostWorld struct {
	listen string
	table  *resolver.Static
}

func (w *hostWorld) manager(t testing.TB, cfg p2pconn.Config) p2pconn.ConnectionManager {
	t.Helper()
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	h, err := libp2p.New(append(p2pconn.HostOptions(cfg), libp2p.Identity(key), libp2p.ListenAddrStrings(w.listen))...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	m, err := p2pconn.NewManager(h, w.table, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	w.table.Add(m.ID(), h.Addrs()...)
	return m
}

// connConfig is the p2pconn configuration of the tests' nodes.
func connConfig() p2pconn.Config {
	return p2pconn.Config{
		ConnectTimeout: 5 * time.Second,
		RetryAttempts:  2,
		RetryDelay:     20 * time.Millisecond,
		CloseTimeout:   2 * time.Second,
	}
}

// node is a Network on a manager of a world.
type node struct {
	id identity.Identifier
	m  p2pconn.ConnectionManager
	n  *network.Network
}

// newNode starts a node in w with cfg; the test's cleanup closes its Network,
// then its manager.
func newNode(t testing.TB, w world, cfg network.Config) *node {
	t.Helper()
	return newNodeConn(t, w, connConfig(), cfg)
}

// newNodeConn is newNode with the manager's configuration pcfg.
func newNodeConn(t testing.TB, w world, pcfg p2pconn.Config, cfg network.Config) *node {
	t.Helper()
	m := w.manager(t, pcfg)
	n, err := network.New(m, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return &node{id: m.ID(), m: m, n: n}
}

// newNodes starts count nodes in w with cfg.
func newNodes(t testing.TB, w world, count int, cfg network.Config) []*node {
	t.Helper()
	ns := make([]*node, count)
	for i := range ns {
		ns[i] = newNode(t, w, cfg)
	}
	return ns
}

// register registers p on ch of nd.
func register(t testing.TB, nd *node, ch network.Channel, p network.MessageProcessor) network.Conduit {
	t.Helper()
	c, err := nd.n.Register(ch, p)
	require.NoError(t, err)
	return c
}

func randomID(t testing.TB) identity.Identifier {
	t.Helper()
	var id identity.Identifier
	_, err := rand.Read(id[:])
	require.NoError(t, err)
	return id
}

// testContext returns a context that ends after d or when the test ends.
func testContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// inbox collects the messages a processor receives.
type inbox struct {
	mu   sync.Mutex
	msgs []network.Message
	ch   chan network.Message // every message, also sent here if non-nil (buffered)
}

func newInbox(buffer int) *inbox { return &inbox{ch: make(chan network.Message, buffer)} }

func (b *inbox) ProcessIncomingMessage(_ context.Context, m network.Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	b.ch <- m
}

// next returns the next message, failing if none comes.
func (b *inbox) next(t testing.TB) network.Message {
	t.Helper()
	select {
	case m := <-b.ch:
		return m
	case <-time.After(opTimeout):
		require.FailNow(t, "no message")
		return network.Message{}
	}
}

// within runs f, which must not call t.FailNow, and fails t if it is still
// running after d.
func within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		require.FailNow(t, "blocked", "%s still blocked after %s", what, d)
	}
}
