// Package testbed runs a skip graph of real skipwire nodes on 127.0.0.1, in
// one process, for the skip-graph demo and the integration tests. Each node
// is a libp2p host built with p2pconn.HostOptions, a Kademlia DHT joined
// through one introducer (node 0), a p2pconn.Manager that resolves
// Identifiers through the host's peerstore and then the DHT, a
// network.Network, and an sg.Node on it.
//
//	tb, err := testbed.Start(ctx, testbed.Options{Nodes: 64})
//	if err != nil { ... }
//	defer tb.Close()
//	for i := range 64 {
//		if _, err := tb.Join(ctx, i); err != nil { ... } // one at a time, through node 0
//	}
//	r, err := tb.Node(5).Search(ctx, 123456)
//	_, err = tb.Kill(7)         // no goodbye: its host closes first
//	_, err = tb.Leave(ctx, 8)   // sg.Node.Leave, then the node closes
//	err = tb.WaitConverged(ctx) // every table is the one the sorted keys give
//
// It returns errors rather than failing a test, and every call that waits
// takes a context. A Ledger (sg.Observer) records every skip-graph message,
// so that messages lost between nodes that are still running can be
// counted.
package testbed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// Options configures a testbed.
type Options struct {
	// Nodes is how many nodes Start starts (not yet joined); at least 1.
	Nodes int
	// Conn configures every node's host and manager. Zero: ConnConfig().
	Conn *p2pconn.Config
	// Node is the template of every node's sg.Config; Key is drawn at
	// random, and Observer is the testbed's Ledger.
	Node sg.Config
	// Listen is every node's listen multiaddr, with port 0. Default
	// cluster.DefaultListen, TCP on 127.0.0.1. With QUIC
	// ("/ip4/127.0.0.1/udp/0/quic-v1") a host uses one UDP socket for all
	// its connections, where TCP takes a file descriptor per connection:
	// hundreds of nodes in one process need that, or a high ulimit -n.
	Listen string
	// KeySpace bounds the keys: each node's key is drawn at random, unique,
	// in [0, KeySpace). Default 1,000,000.
	KeySpace uint64
	// DHTRefresh keeps kad-dht's routing-table refresh on. It is off by
	// default: at start-up each node would walk the key space to fill its
	// table, which for 64 hosts on one machine costs about 15 s of CPU
	// and connects almost every pair of hosts. Without it a node's table
	// holds its bootstrap node and the peers it meets, and lookups go
	// through them.
	DHTRefresh bool
	// DHT are options for every node's Kademlia DHT, after the testbed's.
	DHT []dht.Option
	// TrimAfter, if set, closes libp2p connections older than that which
	// carry no stream and no skipwire connection (see trim): for hundreds
	// of nodes in one process. 0: libp2p's connection manager alone.
	TrimAfter time.Duration
}

var log = logging.Logger("skipwire/testbed")

// DefaultKeySpace is the default Options.KeySpace.
const DefaultKeySpace = 1_000_000

// startBurst is how many nodes Start starts at once; it adds the others one
// at a time. A host built with p2pconn.HostOptions refuses inbound
// connections beyond libp2p's transient limit (about 80 secure handshakes
// in progress): with 255 nodes dialing the introducer at once, most failed.
const startBurst = 64

// ConnConfig returns the manager configuration of the testbed's nodes:
// quick retries (a killed node refuses dials at once), and connections
// that carried nothing for 10 s closed, unless they are protected (a
// node's table neighbours are): those to the nodes a search answered.
func ConnConfig() p2pconn.Config {
	return p2pconn.Config{
		ConnectTimeout: 5 * time.Second,
		RetryAttempts:  2,
		RetryDelay:     50 * time.Millisecond,
		CloseTimeout:   2 * time.Second,
		IdleTimeout:    10 * time.Second,
	}
}

// Member is one node of the testbed.
type Member struct {
	Index int
	Node  *sg.Node
	Net   *network.Network
	state memberState
}

type memberState int

const (
	idle    memberState = iota // started, not joined
	joining                    // Join running
	joined
	leaving // Leave running
	killed
	left
)

// Testbed is a set of skip-graph nodes, numbered from 0 in the order they
// were started. Its methods are safe for concurrent use, but one node's
// Join, Kill and Leave must not overlap.
type Testbed struct {
	opts    Options
	c       *cluster.Cluster
	ledger  *Ledger
	resolve *Resolutions

	mu      sync.Mutex
	members []*Member
	keys    map[sg.Key]bool

	stopTrim chan struct{} // closed by Close
	trimDone chan struct{}
}

// Start starts opts.Nodes nodes, each a host whose DHT joined through node
// 0, a manager, a Network and an sg.Node that has not joined yet.
func Start(ctx context.Context, opts Options) (*Testbed, error) {
	if opts.Nodes < 1 {
		return nil, fmt.Errorf("testbed: %d nodes: need at least one", opts.Nodes)
	}
	if opts.KeySpace == 0 {
		opts.KeySpace = DefaultKeySpace
	}
	if opts.KeySpace < uint64(opts.Nodes)*2 {
		return nil, fmt.Errorf("testbed: key space %d too small for %d nodes", opts.KeySpace, opts.Nodes)
	}
	if err := opts.Node.Validate(); err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	conn := ConnConfig()
	if opts.Conn != nil {
		conn = *opts.Conn
	}
	tb := &Testbed{opts: opts, ledger: NewLedger(), resolve: new(Resolutions), keys: make(map[sg.Key]bool)}
	var dhtOpts []dht.Option
	if !opts.DHTRefresh {
		dhtOpts = append(dhtOpts, dht.DisableAutoRefresh())
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Size:       min(opts.Nodes, startBurst),
		Listen:     opts.Listen,
		Config:     conn,
		DHTOptions: append(dhtOpts, opts.DHT...),
		NewResolver: func(h host.Host, kad *dht.IpfsDHT) resolver.AddressResolver {
			return tb.resolve.wrap(h, kad)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	tb.c = c
	if opts.TrimAfter > 0 {
		tb.stopTrim, tb.trimDone = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(tb.trimDone)
			tb.trim(opts.TrimAfter, tb.stopTrim)
		}()
	}
	for i := range c.Size() {
		if err := tb.attach(ctx, i); err != nil {
			return nil, errors.Join(err, tb.Close())
		}
	}
	for c.Size() < opts.Nodes {
		if _, err := tb.Add(ctx); err != nil {
			return nil, errors.Join(err, tb.Close())
		}
	}
	return tb, nil
}

// attach announces cluster node i in the DHT, then starts its Network and
// its sg.Node.
//
// The announcement is a lookup of the node's own peer ID, Kademlia's join:
// it reaches the nodes whose IDs are closest to its own, which put it in
// their routing tables, and those are the nodes a lookup for it ends at.
// kad-dht's refresh does that walk, among others; with the refresh off
// (Options.DHTRefresh) a node known to its bootstrap node alone was often
// not found, from about 150 nodes on.
func (tb *Testbed) attach(ctx context.Context, i int) error {
	if !tb.opts.DHTRefresh {
		n := tb.c.Node(i)
		if _, err := n.DHT.GetClosestPeers(ctx, string(n.PeerID())); err != nil {
			log.Debugw("self lookup failed", "node", i, "err", err)
		}
	}
	nw, err := network.New(tb.c.Manager(i), network.Config{})
	if err != nil {
		return fmt.Errorf("testbed: node %d: %w", i, err)
	}
	cfg := tb.opts.Node
	tb.mu.Lock()
	for {
		cfg.Key = sg.Key(rand.Uint64N(tb.opts.KeySpace))
		if !tb.keys[cfg.Key] {
			break
		}
	}
	tb.keys[cfg.Key] = true
	tb.mu.Unlock()
	cfg.Observer = tb.ledger.Observer(tb.c.ID(i))
	node, err := sg.New(nw, cfg)
	if err != nil {
		return errors.Join(fmt.Errorf("testbed: node %d: %w", i, err), nw.Close())
	}
	tb.mu.Lock()
	for len(tb.members) <= i {
		tb.members = append(tb.members, nil)
	}
	tb.members[i] = &Member{Index: i, Node: node, Net: nw}
	tb.mu.Unlock()
	return nil
}

// Size returns how many nodes were started, whatever became of them.
func (tb *Testbed) Size() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return len(tb.members)
}

// Node returns node i's sg.Node.
func (tb *Testbed) Node(i int) *sg.Node { return tb.member(i).Node }

// Cluster returns the hosts, DHTs and managers under the nodes.
func (tb *Testbed) Cluster() *cluster.Cluster { return tb.c }

// Ledger returns the record of every skip-graph message.
func (tb *Testbed) Ledger() *Ledger { return tb.ledger }

// Resolutions returns how the nodes' managers resolved Identifiers.
func (tb *Testbed) Resolutions() *Resolutions { return tb.resolve }

func (tb *Testbed) member(i int) *Member {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.members[i]
}

func (tb *Testbed) setState(i int, s memberState) {
	tb.mu.Lock()
	tb.members[i].state = s
	tb.mu.Unlock()
}

// Join joins node i to the skip graph through node 0, the introducer (node
// 0 itself starts the skip graph), and returns how long it took.
func (tb *Testbed) Join(ctx context.Context, i int) (time.Duration, error) {
	m := tb.member(i)
	var introducer identity.Identifier
	if i != 0 {
		introducer = tb.c.ID(0)
	}
	tb.setState(i, joining)
	t0 := time.Now()
	if err := m.Node.Join(ctx, introducer); err != nil {
		tb.setState(i, idle)
		return 0, fmt.Errorf("testbed: node %d: %w", i, err)
	}
	tb.setState(i, joined)
	return time.Since(t0), nil
}

// JoinAll joins the nodes idx through the introducer, parallel at a time
// (node 0, if among them, first and alone), and returns each join's
// duration, in the order of idx.
func (tb *Testbed) JoinAll(ctx context.Context, idx []int, parallel int) ([]time.Duration, error) {
	out := make([]time.Duration, len(idx))
	rest := idx
	if k := slices.Index(idx, 0); k >= 0 {
		d, err := tb.Join(ctx, 0)
		if err != nil {
			return nil, err
		}
		out[k] = d
		rest = slices.Delete(slices.Clone(idx), k, k+1)
	}
	errs := make([]error, len(idx))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for _, i := range rest {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			k := slices.Index(idx, i)
			out[k], errs[k] = tb.Join(ctx, i)
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Add starts a new node (a new key, a host whose DHT joins through the
// introducer), not yet joined, and returns its index.
func (tb *Testbed) Add(ctx context.Context) (int, error) {
	i, err := tb.c.Add(ctx)
	if err != nil {
		return -1, fmt.Errorf("testbed: %w", err)
	}
	if err := tb.attach(ctx, i); err != nil {
		return -1, errors.Join(err, tb.c.Kill(i))
	}
	return i, nil
}

// Kill crashes node i: its skip-graph node stops without a word, then its
// host closes, so that its peers see their connections lost
// (p2pconn.ErrConnectionLost) with no goodbye; its manager, DHT and Network
// are closed afterwards only to release their goroutines. It returns the
// node and the moment its host began to close.
func (tb *Testbed) Kill(i int) (Departure, error) {
	m := tb.member(i)
	tb.setState(i, killed)
	err := m.Node.Close()
	d := Departure{ID: m.Node.Self().ID, At: time.Now()}
	err = errors.Join(err, tb.c.Kill(i))
	return d, errors.Join(err, m.Net.Close())
}

// Leave takes node i out gracefully: sg.Node.Leave tells its neighbours,
// then the node, its Network, its manager (which tells every peer that the
// node left), its DHT and its host close. It returns the node and the
// moment it began to leave.
func (tb *Testbed) Leave(ctx context.Context, i int) (Departure, error) {
	m := tb.member(i)
	tb.setState(i, leaving)
	d := Departure{ID: m.Node.Self().ID, At: time.Now()}
	err := m.Node.Leave(ctx)
	tb.setState(i, left)
	err = errors.Join(err, m.Node.Close(), m.Net.Close())
	return d, errors.Join(err, tb.c.Stop(i))
}

// Running returns the indexes of the nodes that are joined and neither
// leaving nor stopped, in order.
func (tb *Testbed) Running() []int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []int
	for i, m := range tb.members {
		if m != nil && m.state == joined {
			out = append(out, i)
		}
	}
	return out
}

// Members returns the nodes that are joined and neither leaving nor
// stopped: the skip graph a search must find its answer in.
func (tb *Testbed) Members() []sg.Peer {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []sg.Peer
	for _, m := range tb.members {
		if m != nil && m.state == joined {
			out = append(out, m.Node.Self())
		}
	}
	return out
}

// membersAndJoining returns the Members and the nodes joining.
func (tb *Testbed) membersAndJoining() (members, joiningNodes []sg.Peer) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, m := range tb.members {
		if m == nil { // being added
			continue
		}
		switch m.state {
		case joined:
			members = append(members, m.Node.Self())
		case joining:
			joiningNodes = append(joiningNodes, m.Node.Self())
		}
	}
	return members, joiningNodes
}

// Alive reports whether node id still runs (joined, joining or leaving):
// messages to and from it count in the ledger's losses.
func (tb *Testbed) Alive(id identity.Identifier) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, m := range tb.members {
		if m != nil && m.Node.Self().ID == id {
			return m.state == joined
		}
	}
	return false
}

// Close stops every node still running: the skip-graph nodes and Networks
// first, then the cluster (managers, DHTs, hosts).
func (tb *Testbed) Close() error {
	if tb.stopTrim != nil {
		close(tb.stopTrim)
		<-tb.trimDone
		tb.stopTrim = nil
	}
	tb.mu.Lock()
	members := append([]*Member(nil), tb.members...)
	tb.mu.Unlock()
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		if m == nil {
			continue
		}
		wg.Go(func() {
			err := errors.Join(m.Node.Close(), m.Net.Close())
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	if tb.c != nil {
		errs = append(errs, tb.c.Close())
	}
	return errors.Join(errs...)
}
