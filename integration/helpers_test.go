package integration_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/p2pconn"
)

// soak reports whether the long versions of the suites run (make soak).
func soak() bool { return os.Getenv("SKIPWIRE_SOAK") != "" }

// soakDuration is how long the soak churn runs: SKIPWIRE_SOAK_DURATION (a Go
// duration), default 10 minutes.
func soakDuration(t testing.TB) time.Duration {
	t.Helper()
	s := os.Getenv("SKIPWIRE_SOAK_DURATION")
	if s == "" {
		return 10 * time.Minute
	}
	d, err := time.ParseDuration(s)
	require.NoError(t, err, "SKIPWIRE_SOAK_DURATION")
	return d
}

// soakNodes is the size of the soak clusters: SKIPWIRE_SOAK_NODES, default 100.
func soakNodes(t testing.TB) int {
	t.Helper()
	s := os.Getenv("SKIPWIRE_SOAK_NODES")
	if s == "" {
		return 100
	}
	var n int
	_, err := fmt.Sscan(s, &n)
	require.NoError(t, err, "SKIPWIRE_SOAK_NODES")
	return n
}

// childConfig is the manager configuration of the children and of the nodes
// that talk to them: a frozen or cut-off peer is detected within 2 s.
func childConfig() p2pconn.Config {
	return p2pconn.Config{
		// Without session resumption: these tests measure how fast a
		// loss ends a connection (TestNetnsResume turns it on).
		ResumeWindow:      -1,
		KeepaliveInterval: time.Second,
		KeepaliveTimeout:  time.Second,
		ConnectTimeout:    5 * time.Second,
		RetryAttempts:     1,
		RetryDelay:        100 * time.Millisecond,
		CloseTimeout:      2 * time.Second,
	}
}

// pairsDeadline is how long a test may take that connects and exchanges
// messages between every two of size nodes: a minute for starting and
// stopping, plus 250 ms per pair. On an idle two-core machine under the race
// detector a pair takes about 20 ms (50 ms with GOMAXPROCS=1), so the
// deadline holds on a machine several times slower or busier, and still
// catches a test that hangs.
func pairsDeadline(size int) time.Duration {
	return time.Minute + time.Duration(size*(size-1)/2)*250*time.Millisecond
}

// allPairs returns every pair {i, j} of size nodes with i < j.
func allPairs(size int) [][2]int {
	var ps [][2]int
	for i := range size {
		for j := i + 1; j < size; j++ {
			ps = append(ps, [2]int{i, j})
		}
	}
	return ps
}

// nodeConfig is the manager configuration of the in-process nodes.
func nodeConfig() p2pconn.Config {
	return p2pconn.Config{
		ConnectTimeout: 10 * time.Second,
		RetryAttempts:  2,
		RetryDelay:     50 * time.Millisecond,
		CloseTimeout:   2 * time.Second,
		// The default health check (15 s, 10 s timeout): with 3 s, pings on
		// a loaded two-core machine under the race detector took longer than
		// the timeout and idle connections were declared lost while the
		// mesh was still connecting. The churn's peers see stops and
		// crashes through resets and clean closes, not the health check.
		KeepaliveInterval: 15 * time.Second,
	}
}

func startCluster(t testing.TB, ctx context.Context, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	t0 := time.Now()
	c, err := cluster.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	t.Logf("started %d nodes in %s", opts.Size, time.Since(t0).Round(time.Millisecond))
	return c
}

// requireOnePerPair checks that every two running nodes share exactly one
// libp2p connection, carrying exactly one skipwire stream on each side, and
// that every manager holds one connection per other running node. It waits
// for the duplicates of simultaneous dials to be closed.
func requireOnePerPair(t testing.TB, ctx context.Context, c *cluster.Cluster) (pairs int) {
	t.Helper()
	require.NoError(t, cluster.WaitFor(ctx, c.Settled), "settle: %s", describeUnsettled(c))
	run := c.RunningNodes()
	ok := func() bool {
		for _, i := range run {
			for _, j := range run {
				if i != j && c.StreamsBetween(i, j) != 1 {
					return false
				}
			}
		}
		return true
	}
	require.NoError(t, cluster.WaitFor(ctx, ok), "one skipwire stream per side: %s", describeUnsettled(c))
	require.True(t, c.Settled())
	return len(run) * (len(run) - 1) / 2
}

// describeUnsettled lists the pairs and managers that break Settled.
func describeUnsettled(c *cluster.Cluster) string {
	run := c.RunningNodes()
	var out []string
	for _, i := range run {
		if n := c.Manager(i).ConnectionCount(); n != len(run)-1 {
			out = append(out, fmt.Sprintf("node %d: %d skipwire connections", i, n))
		}
		for _, j := range run {
			if i == j {
				continue
			}
			if n := c.ConnsBetween(i, j); n != 1 {
				out = append(out, fmt.Sprintf("%d-%d: %d libp2p connections", i, j, n))
			}
			if n := c.StreamsBetween(i, j); n != 1 {
				out = append(out, fmt.Sprintf("%d-%d: %d skipwire streams", i, j, n))
			}
		}
		if len(out) > 20 {
			break
		}
	}
	return fmt.Sprint(out)
}

// snapshot is the process's goroutines and heap at one moment.
type snapshot struct {
	goroutines int
	heap       uint64
}

func takeSnapshot() snapshot {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return snapshot{goroutines: runtime.NumGoroutine(), heap: ms.HeapAlloc}
}

func (s snapshot) String() string {
	return fmt.Sprintf("%d goroutines, heap %.1f MiB", s.goroutines, float64(s.heap)/(1<<20))
}

// Traffic: every message carries a unique 8-byte number and the sender's
// index (2 bytes). The ledger records every message: to whom, from whom, the
// incarnation (generation) of both ends when it was sent, whether Send
// returned nil, and whether it arrived.

const msgHeader = 10

type record struct {
	from, to     int
	gFrom, gTo   uint64
	sent         bool // Send returned nil
	delivered    bool
	wrongSender  bool
	deliveredDup bool
}

// ledger counts messages over a whole test. A node's generation is bumped
// when it starts to stop and when it restarts, so a message counts as lost
// only if its Send returned nil and both ends kept the generation they had
// when it was sent, up to the end of the test, and it never arrived.
type ledger struct {
	c *cluster.Cluster

	mu   sync.Mutex
	recs []record
	gen  []uint64

	sendFailed atomic.Int64
	reconnects atomic.Int64
}

func newLedger(c *cluster.Cluster) *ledger {
	return &ledger{c: c, gen: make([]uint64, c.Size())}
}

func (l *ledger) bump(i int) {
	l.mu.Lock()
	l.gen[i]++
	l.mu.Unlock()
}

// send sends one message from node i's manager m to node j, and records it.
func (l *ledger) send(ctx context.Context, m *p2pconn.Manager, i, j int, pad int) error {
	l.mu.Lock()
	id := uint64(len(l.recs))
	l.recs = append(l.recs, record{from: i, to: j, gFrom: l.gen[i], gTo: l.gen[j]})
	l.mu.Unlock()
	msg := make([]byte, msgHeader+pad)
	binary.BigEndian.PutUint64(msg, id)
	binary.BigEndian.PutUint16(msg[8:], uint16(i))
	conn, err := m.Connect(ctx, l.c.ID(j))
	if err == nil {
		err = conn.Send(ctx, msg)
	}
	if err != nil {
		l.sendFailed.Add(1)
		return err
	}
	l.mu.Lock()
	l.recs[id].sent = true
	l.mu.Unlock()
	return nil
}

// received records a message read by node self from remote.
func (l *ledger) received(self int, remote identity.Identifier, msg []byte) {
	if len(msg) < msgHeader {
		return
	}
	id := binary.BigEndian.Uint64(msg)
	from := int(binary.BigEndian.Uint16(msg[8:]))
	l.mu.Lock()
	defer l.mu.Unlock()
	if id >= uint64(len(l.recs)) {
		return
	}
	r := &l.recs[id]
	if r.delivered {
		r.deliveredDup = true
	}
	r.delivered = true
	if r.to != self || r.from != from || l.c.IDs()[from] != remote {
		r.wrongSender = true
	}
}

// totals sums the ledger.
type totals struct {
	attempted, sent, delivered, failed int
	lost                               int // sent to a live peer by a live peer, never delivered
	unconfirmed                        int // sent, not delivered, an end stopped or restarted since
	dups, misrouted                    int
}

func (t totals) String() string {
	return fmt.Sprintf("attempted %d, sent %d, delivered %d, lost %d (to live peers), failed %d (Send or Connect error), in flight at a stop %d, duplicated %d, misrouted %d",
		t.attempted, t.sent, t.delivered, t.lost, t.failed, t.unconfirmed, t.dups, t.misrouted)
}

func (l *ledger) totals() totals {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s totals
	s.attempted = len(l.recs)
	for _, r := range l.recs {
		switch {
		case r.delivered:
			s.delivered++
		case !r.sent:
		case r.gFrom == l.gen[r.from] && r.gTo == l.gen[r.to]:
			s.lost++
		default:
			s.unconfirmed++
		}
		if r.sent {
			s.sent++
		} else {
			s.failed++
		}
		if r.deliveredDup {
			s.dups++
		}
		if r.wrongSender {
			s.misrouted++
		}
	}
	return s
}

// service reads every connection of one node incarnation, opened by either
// side, and records what arrives in the ledger. Connections come from Accept
// (inbound) and from the node's own Connect calls (track).
type service struct {
	l    *ledger
	self int
	m    *p2pconn.Manager

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	seen map[p2pconn.Connection]bool
	// known is shared by every incarnation of a node: the peers it has had
	// a connection to, to count reconnects.
	known *sync.Map
}

func newService(l *ledger, self int, m *p2pconn.Manager, known *sync.Map) *service {
	ctx, cancel := context.WithCancel(context.Background())
	s := &service{l: l, self: self, m: m, ctx: ctx, cancel: cancel, seen: make(map[p2pconn.Connection]bool), known: known}
	s.wg.Go(func() {
		for {
			c, err := m.Accept(ctx)
			if err != nil {
				return
			}
			s.track(c)
		}
	})
	return s
}

// track starts reading c unless it is read already.
func (s *service) track(c p2pconn.Connection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[c] || s.ctx.Err() != nil {
		return
	}
	s.seen[c] = true
	if _, loaded := s.known.LoadOrStore(c.RemoteID(), true); loaded {
		s.l.reconnects.Add(1)
	}
	s.wg.Go(func() {
		for {
			msg, err := c.Next(s.ctx)
			if err != nil {
				return
			}
			s.l.received(s.self, c.RemoteID(), msg)
		}
	})
}

// connect connects to node j and reads the connection.
func (s *service) connect(ctx context.Context, j int) (p2pconn.Connection, error) {
	c, err := s.m.Connect(ctx, s.l.c.ID(j))
	if err == nil {
		s.track(c)
	}
	return c, err
}

// send sends a message to node j through this service, reading the
// connection too.
func (s *service) send(ctx context.Context, j int, pad int) error {
	if _, err := s.connect(ctx, j); err != nil {
		s.l.mu.Lock()
		s.l.recs = append(s.l.recs, record{from: s.self, to: j})
		s.l.mu.Unlock()
		s.l.sendFailed.Add(1)
		return err
	}
	return s.l.send(ctx, s.m, s.self, j, pad)
}

func (s *service) close() {
	s.cancel()
	s.wg.Wait()
}

// services runs one service per running node of a cluster, replaced at each
// restart.
type services struct {
	l     *ledger
	mu    sync.Mutex
	svcs  []*service
	known []*sync.Map
}

func newServices(t testing.TB, l *ledger) *services {
	ss := &services{l: l, svcs: make([]*service, l.c.Size()), known: make([]*sync.Map, l.c.Size())}
	for i := range ss.svcs {
		ss.known[i] = new(sync.Map)
		ss.svcs[i] = newService(l, i, l.c.Manager(i), ss.known[i])
	}
	t.Cleanup(ss.closeAll)
	return ss
}

func (ss *services) get(i int) *service {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.svcs[i]
}

// restarted replaces node i's service after a restart.
func (ss *services) restarted(i int) {
	s := newService(ss.l, i, ss.l.c.Manager(i), ss.known[i])
	ss.mu.Lock()
	old := ss.svcs[i]
	ss.svcs[i] = s
	ss.mu.Unlock()
	old.close()
}

func (ss *services) closeAll() {
	ss.mu.Lock()
	svcs := slices.Clone(ss.svcs)
	ss.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range svcs {
		wg.Go(s.close)
	}
	wg.Wait()
}

// waitDelivered waits until every message sent to a live peer has arrived.
func waitDelivered(ctx context.Context, l *ledger) error {
	return cluster.WaitFor(ctx, func() bool { return l.totals().lost == 0 })
}

// reached reports whether the current incarnation of node k has received a
// message.
func (l *ledger) reached(k int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.recs) - 1; i >= 0; i-- {
		r := l.recs[i]
		if r.to == k && r.delivered && r.gTo == l.gen[k] {
			return true
		}
	}
	return false
}
