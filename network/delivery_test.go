package network_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
)

// tally counts, per message key, how often a processor saw it, and checks
// that each sending loop's messages come in order.
type tally struct {
	mu       sync.Mutex
	seen     map[uint64]int
	last     map[stream]int64
	arrived  int
	dups     int
	disorder int
}

func newTally() *tally {
	return &tally{seen: make(map[uint64]int), last: make(map[stream]int64)}
}

// stream is one sending loop: its node, and its index i in message(i, seq).
type stream struct {
	from identity.Identifier
	i    uint32
}

// message is a payload naming sender index i and sequence number seq.
func message(i, seq int) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(i)<<32|uint64(seq))
}

func (c *tally) ProcessIncomingMessage(_ context.Context, m network.Message) {
	key := binary.BigEndian.Uint64(m.Payload)
	seq := int64(key & 0xffffffff)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.arrived++
	c.seen[key]++
	if c.seen[key] > 1 {
		c.dups++
	}
	s := stream{from: m.From, i: uint32(key >> 32)}
	if last, ok := c.last[s]; ok && seq <= last {
		c.disorder++
	}
	c.last[s] = seq
}

func (c *tally) counts() (arrived, dups, disorder int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arrived, c.dups, c.disorder
}

// sendStats counts Sends: attempted, returned nil, failed.
type sendStats struct {
	sent, ok, failed atomic.Int64
	mu               sync.Mutex
	errs             []error
}

func (s *sendStats) record(err error) {
	s.sent.Add(1)
	if err == nil {
		s.ok.Add(1)
		return
	}
	s.failed.Add(1)
	s.mu.Lock()
	if len(s.errs) < 5 {
		s.errs = append(s.errs, err)
	}
	s.mu.Unlock()
}

func (s *sendStats) requireNoFailure(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	require.NoError(t, errors.Join(s.errs...))
}

// flow is the Sends toward one processor and what it received.
type flow struct {
	what  string
	stats *sendStats
	got   *tally
}

// requireExactlyOnce waits until every Send of each flow that returned nil
// has arrived, watches a while for extra arrivals, and checks nothing was
// duplicated or reordered.
func requireExactlyOnce(t testing.TB, flows ...flow) {
	t.Helper()
	for _, f := range flows {
		require.Eventually(t, func() bool {
			arrived, _, _ := f.got.counts()
			return int64(arrived) >= f.stats.ok.Load()
		}, eventually, tick, "%s: messages lost", f.what)
	}
	require.Never(t, func() bool {
		for _, f := range flows {
			if arrived, _, _ := f.got.counts(); int64(arrived) > f.stats.ok.Load() {
				return true
			}
		}
		return false
	}, quiet, tick, "more messages arrived than were sent")
	for _, f := range flows {
		s := f.stats
		arrived, dups, disorder := f.got.counts()
		t.Logf("%s: %d sent, %d returned nil, %d failed, %d arrived: %d lost, %d duplicated, %d out of order",
			f.what, s.sent.Load(), s.ok.Load(), s.failed.Load(), arrived, s.ok.Load()-int64(arrived-dups), dups, disorder)
		require.Equal(t, s.ok.Load(), int64(arrived), "%s: arrived", f.what)
		require.Zero(t, dups, "%s: duplicated", f.what)
		require.Zero(t, disorder, "%s: out of order", f.what)
	}
}

// TestFanIn: 16 senders at once to one node with a small window: every
// message arrives exactly once, in order per sender.
func TestFanIn(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		const senders = 16
		per := scale(40, 1000)
		recv := newNode(t, w, network.Config{Window: 4})
		counted := newTally()
		register(t, recv, "in", counted)
		ns := newNodes(t, w, senders, network.Config{})
		ctx := testContext(t, time.Minute)

		var stats sendStats
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, s := range ns {
			wg.Go(func() {
				<-start
				c := s.n.Conduit("in")
				for seq := range per {
					stats.record(c.Send(ctx, recv.id, message(i, seq)))
				}
			})
		}
		close(start)
		wg.Wait()
		stats.requireNoFailure(t)
		require.Equal(t, int64(senders*per), stats.ok.Load())
		requireExactlyOnce(t, flow{"fan-in", &stats, counted})
	})
}

// TestSimultaneousFirstContact: two nodes that have never met send to each
// other at the same instant: one connection, every message exactly once.
func TestSimultaneousFirstContact(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		const per = 20
		for trial := range scale(4, 40) {
			ns := newNodes(t, w, 2, network.Config{Window: 4})
			tallies := []*tally{newTally(), newTally()}
			for i, nd := range ns {
				register(t, nd, "hi", tallies[i])
			}
			ctx := testContext(t, time.Minute)
			var stats [2]sendStats
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, nd := range ns {
				to := ns[1-i].id
				wg.Go(func() {
					<-start
					for seq := range per {
						stats[1-i].record(nd.n.Conduit("hi").Send(ctx, to, message(i, seq)))
					}
				})
			}
			close(start)
			wg.Wait()
			var flows []flow
			for i := range ns {
				stats[i].requireNoFailure(t)
				flows = append(flows, flow{fmt.Sprintf("trial %d, to node %d", trial, i), &stats[i], tallies[i]})
			}
			requireExactlyOnce(t, flows...)
			for _, nd := range ns {
				require.Equal(t, 1, nd.m.ConnectionCount())
			}
		}
	})
}

// TestRecursiveReply: a Request travels a -> b -> c with Forward (and, on a
// second channel, inside the payload), and c, which never talked to a,
// replies to a directly; a's Request returns c's answer. A third channel
// nests Requests: b's processor asks c before answering a.
func TestRecursiveReply(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		ns := newNodes(t, w, 3, network.Config{})
		a, b, c := ns[0], ns[1], ns[2]
		seen := make(chan network.Message, 4)

		// b forwards with the call in the envelope.
		bSearch := b.n.Conduit("search")
		register(t, b, "search", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
			_ = bSearch.Forward(ctx, c.id, m.Call, append(m.Payload, " via b"...))
		}))
		cSearch := c.n.Conduit("search")
		register(t, c, "search", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
			seen <- m
			_ = cSearch.Reply(ctx, m.Call, append(m.Payload, " found by c"...))
		}))

		// b forwards with the call inside the payload, on a plain Send.
		register(t, b, "lookup", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
			ref, _ := m.Call.MarshalBinary()
			_ = b.n.Conduit("lookup").Send(ctx, c.id, append(ref, m.Payload...))
		}))
		register(t, c, "lookup", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
			var call network.CallRef
			if call.UnmarshalBinary(m.Payload[:network.CallRefSize]) != nil {
				return
			}
			_ = c.n.Conduit("lookup").Reply(ctx, call, append(m.Payload[network.CallRefSize:], " found by c"...))
		}))

		// b asks c from inside its processor, then answers a.
		newEcho(t, c, "nested")
		register(t, b, "nested", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
			r, err := b.n.Conduit("nested").Request(ctx, c.id, m.Payload)
			if err == nil {
				_ = b.n.Conduit("nested").Reply(ctx, m.Call, append(r.Payload, " via b"...))
			}
		}))

		ctx := testContext(t, opTimeout)
		r, err := a.n.Conduit("search").Request(ctx, b.id, []byte("q"))
		require.NoError(t, err)
		require.Equal(t, "q via b found by c", string(r.Payload))
		require.Equal(t, c.id, r.From, "the answer comes from the node that found it")
		require.Equal(t, network.Channel("search"), r.Channel)
		m := <-seen
		require.Equal(t, b.id, m.From, "From is the forwarder")
		require.Equal(t, a.id, m.Call.Origin, "the call travels unchanged")
		_, ok := c.m.GetConnection(a.id)
		require.True(t, ok, "c dialed a to reply")

		r, err = a.n.Conduit("lookup").Request(ctx, b.id, []byte("k"))
		require.NoError(t, err)
		require.Equal(t, "k found by c", string(r.Payload))
		require.Equal(t, c.id, r.From)

		r, err = a.n.Conduit("nested").Request(ctx, b.id, []byte("n"))
		require.NoError(t, err)
		require.Equal(t, "echo: n via b", string(r.Payload))
		require.Equal(t, b.id, r.From)
	})
}

// ringMessage is a ring test payload: a message ID and the hops left.
func ringMessage(id uint64, hops uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(nil, id), hops)
}

// ring is a ring of nodes, each forwarding what it receives to the next
// until the message's hops run out, and the outcome of every message.
type ring struct {
	nodes   []*node
	timeout time.Duration // bounds each forward

	sends    sendStats // injections and forwards
	received atomic.Int64
	mu       sync.Mutex
	ended    map[uint64]int // per message: how often it ended (arrived with no hops left, or a forward failed)
}

func newRing(t *testing.T, w world, size, window int, timeout time.Duration) *ring {
	r := &ring{nodes: newNodes(t, w, size, network.Config{Window: window}), timeout: timeout, ended: make(map[uint64]int)}
	for i, nd := range r.nodes {
		next := r.nodes[(i+1)%size].id
		conduit := nd.n.Conduit("ring")
		register(t, nd, "ring", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
			r.received.Add(1)
			id, hops := binary.BigEndian.Uint64(m.Payload), binary.BigEndian.Uint16(m.Payload[8:])
			if hops == 0 {
				r.end(id)
				return
			}
			fctx, cancel := context.WithTimeout(ctx, r.timeout)
			err := conduit.Send(fctx, next, ringMessage(id, hops-1))
			cancel()
			r.sends.record(err)
			if err != nil {
				r.end(id)
			}
		}))
	}
	return r
}

func (r *ring) end(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended[id]++
}

// run injects perNode messages of hops hops at every node at once, then
// waits until every message has ended and checks each ended exactly once
// and every Send that returned nil was received once.
func (r *ring) run(t *testing.T, perNode int, hops uint16) {
	ctx := testContext(t, time.Minute)
	var injected atomic.Int64
	var wg sync.WaitGroup
	for i, nd := range r.nodes {
		next := r.nodes[(i+1)%len(r.nodes)].id
		wg.Go(func() {
			for k := range perNode {
				id := uint64(i)<<32 | uint64(k)
				err := nd.n.Conduit("ring").Send(ctx, next, ringMessage(id, hops))
				r.sends.record(err)
				if err == nil {
					injected.Add(1)
				} else {
					r.end(id)
				}
			}
		})
	}
	wg.Wait()
	total := len(r.nodes) * perNode
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.ended) == total && r.received.Load() == r.sends.ok.Load()
	}, time.Minute, tick, "the ring does not drain")
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, n := range r.ended {
		require.Equal(t, 1, n, "message %x ended %d times", id, n)
	}
	t.Logf("ring of %d: %d injected, %d Sends returned nil, %d failed (timed out in a full ring), %d received",
		len(r.nodes), injected.Load(), r.sends.ok.Load(), r.sends.failed.Load(), r.received.Load())
}

// TestRingDrains: nodes in a ring forward to each other from inside their
// processors. With less traffic than the ring's queues hold, nothing blocks
// for good and no Send fails; with far more, full queues make forwards wait
// for their ctx, which unties the ring: it drains, and every Send either
// returned nil and was delivered once, or failed.
func TestRingDrains(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		t.Run("light", func(t *testing.T) {
			r := newRing(t, w, 4, 8, opTimeout)
			r.run(t, 4, 20)
			r.sends.requireNoFailure(t)
		})
		t.Run("overload", func(t *testing.T) {
			r := newRing(t, w, 4, 1, 50*time.Millisecond)
			r.run(t, scale(12, 200), 10)
		})
	})
}
