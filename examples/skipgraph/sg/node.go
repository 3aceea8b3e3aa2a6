package sg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	logging "github.com/ipfs/go-log/v2"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
)

var log = logging.Logger("skipwire/skipgraph")

// The network channels of the skip graph.
const (
	SearchChannel      network.Channel = "skipgraph/search"
	MaintenanceChannel network.Channel = "skipgraph/maintenance"
)

// ErrKeyTaken is returned, wrapped, by Join when another node of the skip
// graph has the node's key.
var ErrKeyTaken = errors.New("skipgraph: key taken")

// ErrNotJoined is returned, wrapped, by Search on a node that has not
// joined, or has left.
var ErrNotJoined = errors.New("skipgraph: not in the skip graph")

// ErrClosed is returned, wrapped, by calls on a Node after Close.
var ErrClosed = errors.New("skipgraph: node closed")

// Node is one node of a skip graph, on a network.Network. Create it with
// New, then Join; Search from it; Leave to go gracefully, or Close to stop
// it without a word (as a crash would). Its methods are safe for
// concurrent use.
type Node struct {
	cfg    Config
	self   Peer
	net    *network.Network
	mgr    p2pconn.ConnectionManager
	origin network.Conduit // SearchChannel, for the Requests that start searches
	search network.Conduit // SearchChannel, for routing: fail-fast Connects, HopTimeout
	maint  network.Conduit // MaintenanceChannel; each Request names its Connect options
	obs    Observer

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	spawnMu   sync.Mutex // guards stopping and the calls of wg.Add
	stopping  bool
	wg        sync.WaitGroup
	closeOnce sync.Once
	events    <-chan p2pconn.Event
	unsub     func()
	kick      chan struct{} // wakes the maintenance loop; buffered, 1
	workers   chan struct{} // search routing slots
	nextID    atomic.Uint64

	// maintMu serializes the work that derives the table (join, repair,
	// stabilization); it is held across network calls, mu never is.
	maintMu sync.Mutex

	mu       sync.Mutex
	state    byte // 0 before Join, then stateJoining, stateJoined, stateLeaving
	table    Table
	near     nearSet
	gone     map[identity.Identifier]goneEntry
	reaching map[identity.Identifier]bool // peers being connected to in the background
	dirty    [2]uint64                    // by side: levels to derive again
	fixing   [2]uint64                    // by side: levels being derived again
	check    int                          // stabilization rounds so far

	protMu    sync.Mutex // serializes Protect and Unprotect
	protected map[identity.Identifier]bool

	stats stats
}

// goneEntry is a peer known to have failed or left.
type goneEntry struct {
	at   time.Time
	left bool // it said goodbye (or its manager closed): never taken back
	peer Peer // what was known of it, if anything, to take it back
}

// New starts a skip-graph node on n: it registers the node's processors on
// SearchChannel and MaintenanceChannel of n and starts its maintenance. The
// node is not yet part of a skip graph: call Join. The Network and its
// manager remain the caller's: close them after the node (Leave, then
// Close, then the Network, then the manager).
func New(n *network.Network, cfg Config) (*Node, error) {
	if n == nil {
		return nil, errors.New("skipgraph: new: nil network")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("skipgraph: new: %w", err)
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	nd := &Node{
		cfg:    cfg,
		self:   Peer{ID: n.ID(), Key: cfg.Key, MV: cfg.MembershipVector},
		net:    n,
		mgr:    n.Manager(),
		origin: n.Conduit(SearchChannel),
		search: network.WithDefaults(n.Conduit(SearchChannel), network.Defaults{
			Timeout: cfg.HopTimeout,
			Connect: cfg.RoutingConnect,
		}),
		maint:     n.Conduit(MaintenanceChannel),
		obs:       cfg.Observer,
		ctx:       ctx,
		cancel:    cancel,
		kick:      make(chan struct{}, 1),
		workers:   make(chan struct{}, cfg.MaxSearchWorkers),
		gone:      make(map[identity.Identifier]goneEntry),
		reaching:  make(map[identity.Identifier]bool),
		protected: make(map[identity.Identifier]bool),
	}
	nd.table.Self = nd.self
	nd.near = newNearSet(cfg.Key, cfg.Backups)
	if _, err := n.Register(SearchChannel, network.ProcessorFunc(nd.onSearch)); err != nil {
		cancel()
		return nil, fmt.Errorf("skipgraph: new: %w", err)
	}
	if _, err := n.Register(MaintenanceChannel, network.ProcessorFunc(nd.onMaintenance)); err != nil {
		cancel()
		return nil, fmt.Errorf("skipgraph: new: %w", err)
	}
	nd.events, nd.unsub = nd.mgr.Subscribe()
	nd.spawn(nd.watch)
	nd.spawn(nd.maintain)
	return nd, nil
}

// spawn runs f on a goroutine that Close waits for, unless Close has
// started; it reports whether it did.
func (n *Node) spawn(f func()) bool {
	n.spawnMu.Lock()
	defer n.spawnMu.Unlock()
	if n.stopping {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// Self returns the node's Identifier, key and membership vector.
func (n *Node) Self() Peer { return n.self }

// Table returns a copy of the node's routing table.
func (n *Node) Table() Table {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.table.Clone()
}

// Joined reports whether Join has completed and the node has not started
// to leave.
func (n *Node) Joined() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state == stateJoined
}

// GoneAt returns when the node learned that peer id failed or left, if it
// remembers so (see Config.GoneFor).
func (n *Node) GoneAt(id identity.Identifier) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	g, ok := n.gone[id]
	return g.at, ok
}

// Close stops the node's goroutines without telling anyone: to leave
// gracefully, call Leave first. Its processors drop what arrives
// afterwards; close the Network to stop receiving. It unprotects the
// node's neighbours and is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.spawnMu.Lock()
		n.stopping = true
		n.spawnMu.Unlock()
		n.cancel()
		n.unsub()
		n.wg.Wait()
		n.protMu.Lock()
		for id := range n.protected {
			n.mgr.Unprotect(id)
		}
		clear(n.protected)
		n.protMu.Unlock()
	})
	return nil
}

// closed returns ErrClosed once Close has started.
func (n *Node) closed() error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	return nil
}

// newID returns a fresh message ID.
func (n *Node) newID() uint64 { return n.nextID.Add(1) }

// wake asks the maintenance loop to look at the dirty levels.
func (n *Node) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// isGone reports whether id is known to have failed or left. The caller
// holds mu.
func (n *Node) isGoneLocked(id identity.Identifier) bool {
	_, ok := n.gone[id]
	return ok
}

func (n *Node) isGone(id identity.Identifier) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.isGoneLocked(id)
}

// syncProtection protects the table's neighbours in the manager, and only
// them, so that idle closing and eviction never cut a neighbour's
// connection.
func (n *Node) syncProtection() {
	n.protMu.Lock()
	defer n.protMu.Unlock()
	if n.ctx.Err() != nil {
		return
	}
	want := make(map[identity.Identifier]bool)
	for _, p := range n.Table().Neighbours() {
		want[p.ID] = true
	}
	for id := range want {
		if !n.protected[id] {
			n.mgr.Protect(id)
			n.protected[id] = true
		}
	}
	for id := range n.protected {
		if !want[id] {
			n.mgr.Unprotect(id)
			delete(n.protected, id)
		}
	}
}

// connected reports whether the manager has a live connection to id.
func (n *Node) connected(id identity.Identifier) bool {
	_, ok := n.mgr.GetConnection(id)
	return ok
}
