package sg_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// graph is a skip graph of nodes on memnet.
type graph struct {
	t   testing.TB
	net *memnet.Network

	mu    sync.Mutex
	nodes map[identity.Identifier]*member
	keys  map[sg.Key]bool
}

type member struct {
	node *sg.Node
	nw   *network.Network
	m    *memnet.Manager
	up   bool
}

func newGraph(t testing.TB) *graph {
	g := &graph{t: t, net: memnet.NewNetwork(), nodes: make(map[identity.Identifier]*member), keys: make(map[sg.Key]bool)}
	t.Cleanup(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, mb := range g.nodes {
			if mb.up {
				mb.stop()
			}
		}
	})
	return g
}

func (mb *member) stop() {
	_ = mb.node.Close()
	_ = mb.nw.Close()
	_ = mb.m.Close()
	mb.up = false
}

// add starts a node with a fresh random key; it has not joined.
func (g *graph) add() *sg.Node {
	g.t.Helper()
	key, err := identity.GenerateKey()
	require.NoError(g.t, err)
	id, err := identity.FromPublicKey(key.GetPublic())
	require.NoError(g.t, err)
	m, err := g.net.NewManager(id, p2pconn.Config{RetryAttempts: 1, RetryDelay: 5 * time.Millisecond})
	require.NoError(g.t, err)
	nw, err := network.New(m, network.Config{})
	require.NoError(g.t, err)
	g.mu.Lock()
	var k sg.Key
	for k = sg.Key(rand.N(1_000_000)); g.keys[k]; k = sg.Key(rand.N(1_000_000)) {
	}
	g.keys[k] = true
	g.mu.Unlock()
	node, err := sg.New(nw, sg.Config{Key: k, StabilizeInterval: 100 * time.Millisecond, RequestTimeout: time.Second})
	require.NoError(g.t, err)
	g.mu.Lock()
	g.nodes[id] = &member{node: node, nw: nw, m: m, up: true}
	g.mu.Unlock()
	return node
}

// live returns the running nodes that have joined.
func (g *graph) live() []*sg.Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*sg.Node
	for _, mb := range g.nodes {
		if mb.up && mb.node.Joined() {
			out = append(out, mb.node)
		}
	}
	return out
}

func peers(nodes []*sg.Node) []sg.Peer {
	out := make([]sg.Peer, len(nodes))
	for i, n := range nodes {
		out[i] = n.Self()
	}
	return out
}

// mismatch describes the first node whose table differs from the ideal
// one, or returns "".
func mismatch(nodes []*sg.Node) string {
	ideal := sg.Ideal(peers(nodes))
	for _, n := range nodes {
		if got := n.Table(); !got.Equal(ideal[n.Self().ID]) {
			return fmt.Sprintf("got\n%swant\n%s", got, ideal[n.Self().ID])
		}
	}
	return ""
}

// waitIdeal waits until every live node's table is the ideal one.
func (g *graph) waitIdeal(ctx context.Context) {
	g.t.Helper()
	for {
		nodes := g.live()
		bad := mismatch(nodes)
		if bad == "" {
			return
		}
		select {
		case <-ctx.Done():
			g.t.Fatalf("tables not repaired: %s", bad)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// searchAll runs searches for random targets from random nodes and checks
// each answer.
func (g *graph) searchAll(ctx context.Context, count int) {
	g.t.Helper()
	nodes := g.live()
	members := peers(nodes)
	for range count {
		from := nodes[rand.N(len(nodes))]
		target := sg.Key(rand.N(1_001_000))
		want, _ := sg.Expected(members, target)
		r, err := from.Search(ctx, target)
		require.NoError(g.t, err, "search %d from %s", target, from.Self())
		require.Equal(g.t, want, r.Node, "search %d from %s", target, from.Self())
	}
}

func TestJoinAndSearch(t *testing.T) {
	ctx := testkit.Context(t, time.Minute)
	g := newGraph(t)
	first := g.add()
	require.NoError(t, first.Join(ctx, identity.Identifier{}))
	for range 31 {
		n := g.add()
		require.NoError(t, n.Join(ctx, first.Self().ID))
	}
	// A join returns once the joining node has its links; its neighbours
	// take theirs from messages that may still be on their way.
	g.waitIdeal(ctx)
	g.searchAll(ctx, 200)
}

func TestConcurrentJoins(t *testing.T) {
	ctx := testkit.Context(t, time.Minute)
	g := newGraph(t)
	first := g.add()
	require.NoError(t, first.Join(ctx, identity.Identifier{}))
	var wg sync.WaitGroup
	for range 24 {
		n := g.add()
		wg.Go(func() { require.NoError(t, n.Join(ctx, first.Self().ID)) })
	}
	wg.Wait()
	g.waitIdeal(ctx)
	g.searchAll(ctx, 200)
}

func TestCrashAndLeave(t *testing.T) {
	ctx := testkit.Context(t, time.Minute)
	g := newGraph(t)
	first := g.add()
	require.NoError(t, first.Join(ctx, identity.Identifier{}))
	for range 39 {
		require.NoError(t, g.add().Join(ctx, first.Self().ID))
	}
	g.waitIdeal(ctx)

	// Crash four (not the introducer), then four leave.
	nodes := g.live()
	rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	var victims []*sg.Node
	for _, n := range nodes {
		if n != first && len(victims) < 8 {
			victims = append(victims, n)
		}
	}
	for _, v := range victims[:4] {
		g.mu.Lock()
		mb := g.nodes[v.Self().ID]
		g.mu.Unlock()
		_ = v.Close()
		g.net.Crash(v.Self().ID)
		g.mu.Lock()
		mb.stop()
		g.mu.Unlock()
	}
	g.waitIdeal(ctx)
	g.searchAll(ctx, 100)

	for _, v := range victims[4:] {
		require.NoError(t, v.Leave(ctx))
		g.mu.Lock()
		g.nodes[v.Self().ID].stop()
		g.mu.Unlock()
	}
	g.waitIdeal(ctx)
	g.searchAll(ctx, 100)
}
