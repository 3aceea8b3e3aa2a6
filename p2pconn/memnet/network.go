package memnet

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	logging "github.com/ipfs/go-log/v2"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

var log = logging.Logger("skipwire/memnet")

// ErrDuplicateIdentifier is returned, wrapped, by Network.NewManager for an
// Identifier that a live manager of the same Network already uses.
var ErrDuplicateIdentifier = errors.New("memnet: identifier already in use")

// ErrUnreachable is returned, wrapped, by Connect to a node that is cut off by
// Network.Partition. It stands for a dial that fails; it does not match
// resolver.ErrNotFound.
var ErrUnreachable = errors.New("memnet: peer unreachable")

// Network is an in-memory wire between Managers: it knows every node by
// Identifier and holds the partitions. The zero value is not usable; call
// NewNetwork. Every method is safe for concurrent use.
//
// One mutex, mu, guards the topology of the whole Network: the nodes, the
// partitions, and each Manager's pool, accept queue and pipes. Connection
// set-up and tear-down happen under it, which is what makes one connection
// per pair trivially true. Message traffic never takes it: each connection has
// a mutex of its own (pipe.mu), always taken after mu, never before.
type Network struct {
	mu    sync.Mutex
	nodes map[identity.Identifier]*Manager
	cuts  map[pairKey]struct{}
	uses  atomic.Uint64 // counts messages carried, to order connections by last use
}

// pairKey names an unordered pair of nodes.
type pairKey struct{ lo, hi identity.Identifier }

func keyOf(a, b identity.Identifier) pairKey {
	if a.Compare(b) > 0 {
		a, b = b, a
	}
	return pairKey{a, b}
}

// NewNetwork returns an empty Network without partitions.
func NewNetwork() *Network {
	return &Network{
		nodes: make(map[identity.Identifier]*Manager),
		cuts:  make(map[pairKey]struct{}),
	}
}

// NewManager adds a node named id to the network and returns its manager.
// cfg is checked with Config.Validate and zero fields take their defaults;
// the fields that matter in memory are MaxConnections, MaxMessageSize,
// ReceiveBuffer, CloseTimeout, RetryAttempts, RetryDelay, MaxRetryDelay,
// IdleTimeout, UnreachableFor, EvictAtLimit, ResumeWindow and ResendBuffer.
// It fails with an error wrapping ErrDuplicateIdentifier if a manager that is
// not closed already uses id, and wrapping p2pconn.ErrInvalidConfig for a bad
// cfg. Once a manager is closed or crashed, its Identifier may join again, as
// a restarted process: the new manager holds none of the old one's
// sessions, so the peers' connections to the old one that were resuming end
// (unless the pair is cut: then at Heal) with a *p2pconn.NotDeliveredError
// (see Conn).
func (n *Network) NewManager(id identity.Identifier, cfg p2pconn.Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("memnet: new manager %s: %w", id.Short(), err)
	}
	m := &Manager{
		net:         n,
		id:          id,
		cfg:         cfg.WithDefaults(),
		quit:        make(chan struct{}),
		conns:       make(map[identity.Identifier]*Conn),
		protected:   make(map[identity.Identifier]struct{}),
		unreachable: make(map[identity.Identifier]failure),
		pipes:       make(map[*pipe]struct{}),
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.nodes[id]; ok {
		return nil, fmt.Errorf("memnet: new manager %s: %w", id.Short(), ErrDuplicateIdentifier)
	}
	n.nodes[id] = m
	if m.cfg.IdleTimeout > 0 {
		m.idleDone = make(chan struct{})
		go m.closeIdle()
	}
	for _, other := range n.nodes {
		for p := range other.pipes {
			if p.joins(other.id, id) {
				n.reconnectLocked(p)
			}
		}
	}
	return m, nil
}

// Partition cuts the link between a and b, in both directions, until Heal.
// The connection between them, if any, is lost on both sides: Send and Next
// fail with errors matching p2pconn.ErrConnectionLost (Next after returning
// the messages already queued), and it leaves both pools; but a side with a
// positive Config.ResumeWindow resumes its session instead, if the other
// side does not turn acknowledgements off (see Conn). While the cut lasts,
// Connect between a and b fails with an error wrapping ErrUnreachable, after
// its retries; once a Connect failed so, the next ones within
// Config.UnreachableFor fail at once with a *p2pconn.UnreachableError (unless
// they pass p2pconn.IgnoreRecentFailure). Links to other nodes are
// untouched. a and b need not have joined yet; Partition of a pair already
// cut does nothing more.
func (n *Network) Partition(a, b identity.Identifier) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cuts[keyOf(a, b)] = struct{}{}
	m := n.nodes[a]
	if m == nil {
		return
	}
	for p := range m.pipes {
		if p.joins(a, b) {
			p.loseLocked(func(*Conn) string { return "network partitioned" }, nil)
		}
	}
	log.Debugf("partition %s <-> %s", a.Short(), b.Short())
}

// Heal restores the link between a and b that Partition cut, and makes
// both forget that Connects between them failed (Config.UnreachableFor).
// Connections lost to the partition stay dead; the next Connect opens a new
// one. Sessions between a and b that were resuming within their
// ResumeWindow resume at once, on the same Conns (p2pconn.EventResumed), or
// end on the side that still resumes if the other does not (see Conn).
func (n *Network) Heal(a, b identity.Identifier) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cuts, keyOf(a, b))
	if m := n.nodes[a]; m != nil {
		delete(m.unreachable, b)
	}
	if m := n.nodes[b]; m != nil {
		delete(m.unreachable, a)
	}
	n.reconnectPairLocked(a, b)
	log.Debugf("heal %s <-> %s", a.Short(), b.Short())
}

// Crash makes the node id vanish as a killed process would: no clean close.
// Each of its connections is lost on both sides (errors match
// p2pconn.ErrConnectionLost, not p2pconn.ErrPeerLeft); a peer that resumes
// sessions (see Conn) cannot tell a crash from a partition, so its side
// resumes until its ResumeWindow passes or a new manager joins under id.
// The crashed manager is closed (later calls fail with
// p2pconn.ErrManagerClosed, its unaccepted connections are dropped, its event
// subscriptions end, its idle closing stops), and the Identifier is free to
// join again with NewManager. Crash of an Identifier that no live manager
// uses does nothing.
func (n *Network) Crash(id identity.Identifier) {
	n.mu.Lock()
	m := n.nodes[id]
	if m == nil {
		n.mu.Unlock()
		return
	}
	delete(n.nodes, id)
	m.shutdownLocked()
	for p := range m.pipes {
		p.loseLocked(func(c *Conn) string {
			if c.mgr == m {
				return "local node crashed"
			}
			return "remote node crashed"
		}, m)
	}
	m.events.Close()
	n.mu.Unlock()
	m.waitIdleCloser()
	close(m.closeDone)
	log.Debugf("crash %s", id.Short())
}

// cutLocked reports whether the link between a and b is partitioned.
func (n *Network) cutLocked(a, b identity.Identifier) bool {
	_, ok := n.cuts[keyOf(a, b)]
	return ok
}

// forget removes p from its managers' pipe sets once it is settled.
func (n *Network) forget(p *pipe) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p.forgetLocked()
}
