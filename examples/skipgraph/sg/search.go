package sg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/skipwire/skipwire/network"
)

// Result is the answer to a search.
type Result struct {
	// Node is the node with the greatest key <= the target, or the node with
	// the smallest key when the target is below every key. It answered
	// itself.
	Node Peer
	// Hops is how many times the search was passed from node to node.
	Hops int
	// Latency is the time from the start of the search to its answer.
	Latency time.Duration
}

// ErrNoRoute is returned, wrapped, by Search when a node on the way could
// not pass the search on (too many hops, or the node was leaving).
var ErrNoRoute = errors.New("skipgraph: no route")

// Search finds the node with the greatest key <= target (or the smallest
// key, when target is below every key), starting from this node. The
// search travels from node to node with network Forwards, each hop with a
// fail-fast Connect, and the node that has the answer replies to this node
// directly (a network Request's CallRef). It is bounded by ctx and
// Config.SearchTimeout.
func (n *Node) Search(ctx context.Context, target Key) (Result, error) {
	if err := n.closed(); err != nil {
		return Result{}, err
	}
	n.mu.Lock()
	state := n.state
	n.mu.Unlock()
	if state != stateJoined && state != stateJoining {
		return Result{}, fmt.Errorf("search %d: %w", target, ErrNotJoined)
	}
	return n.search0(ctx, target)
}

// search0 runs a search from this node: the Request is delivered locally
// and routed from here.
func (n *Node) search0(ctx context.Context, target Key) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.SearchTimeout)
	defer cancel()
	t0 := time.Now()
	m := message{kind: kindSearch, id: n.newID(), target: target}
	r, err := n.origin.Request(ctx, n.self.ID, m.encode())
	if err != nil {
		if n.obs != nil {
			n.obs.RequestFailed(n.self.ID, m.id, m.kind.String(), err)
		}
		return Result{}, fmt.Errorf("search %d: %w", target, err)
	}
	lat := time.Since(t0)
	reply, err := decode(r.Payload)
	if err != nil {
		return Result{}, fmt.Errorf("search %d: answer from %s: %w", target, r.From.Short(), err)
	}
	if n.obs != nil && r.From != n.self.ID {
		n.obs.Received(r.From, reply.id, reply.kind.String())
	}
	if reply.kind != kindFound {
		return Result{}, fmt.Errorf("search %d: answer from %s: unexpected %s", target, r.From.Short(), reply.kind)
	}
	if reply.status != statusOK {
		return Result{}, fmt.Errorf("search %d: %s gave up after %d hops: %w", target, r.From.Short(), reply.hops, ErrNoRoute)
	}
	if reply.peer.ID != r.From {
		return Result{}, fmt.Errorf("search %d: %s answered for %s", target, r.From.Short(), reply.peer)
	}
	return Result{Node: reply.peer, Hops: reply.hops, Latency: lat}, nil
}

// onSearch is the processor of SearchChannel: each search message is routed
// on a worker of its own, so that a slow next hop holds back no other
// search; with every worker busy it is routed in place, which pushes back on
// the sender.
func (n *Node) onSearch(ctx context.Context, m network.Message) {
	if n.closed() != nil {
		return
	}
	msg, err := n.received(m)
	if err != nil || msg.kind != kindSearch || m.Call.IsZero() {
		log.Debugw("search message dropped", "from", m.From, "err", err, "kind", msg.kind)
		return
	}
	select {
	case n.workers <- struct{}{}:
		if !n.spawn(func() {
			defer func() { <-n.workers }()
			n.route(n.ctx, m.Call, msg)
		}) {
			<-n.workers
		}
	default:
		n.route(ctx, m.Call, msg)
	}
}

// route passes the search msg on toward its target, or answers it.
func (n *Node) route(ctx context.Context, call network.CallRef, msg message) {
	n.stats.routed.Add(1)
	n.mu.Lock()
	state := n.state
	t := n.table.Clone()
	near := append([]Peer(nil), n.near.side(sideOf(n.self.Key, msg.target))...)
	hops := nextHops(t, near, msg.target, n.isGoneLocked)
	n.mu.Unlock()

	// The search's ID at its origin: the first hop's own ID, named by
	// every later hop and by the answer.
	search := msg.re
	if search == 0 {
		search = msg.id
	}
	if msg.hops >= n.cfg.MaxHops || state == 0 {
		n.answer(ctx, call, search, statusNoRoute, msg.hops)
		return
	}
	next := msg
	next.hops++
	next.re = search
	for _, p := range hops {
		err := n.forward(ctx, p.ID, call, next)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.stats.hopFailures.Add(1)
		log.Debugw("search hop failed: next route", "to", p, "target", msg.target, "err", err)
		n.drop(p.ID, err)
	}
	// No neighbour is closer to the answer, or none could be reached: this
	// node is the answer as far as it can tell.
	n.answer(ctx, call, search, statusOK, msg.hops)
}

// answer replies to the origin of a search.
//
// The answer may need a new connection to the origin, found through the
// resolver (a DHT lookup): it has the whole SearchTimeout, the longest the
// origin waits, rather than a hop's.
func (n *Node) answer(ctx context.Context, call network.CallRef, search uint64, status byte, hops int) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.SearchTimeout)
	defer cancel()
	m := message{kind: kindFound, re: search, status: status, peer: n.self, hops: hops}
	if err := n.reply(ctx, n.origin, call, m); err != nil {
		log.Debugw("search answer not sent", "to", call.Origin, "err", err)
	}
}

// sideOf returns the side of key from on which target lies (Right for
// equal keys).
func sideOf(from, target Key) Side {
	if target < from {
		return Left
	}
	return Right
}
