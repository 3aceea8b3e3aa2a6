// Package testbed runs a skip graph of real skipwire nodes on 127.0.0.1 (or
// in network namespaces a test creates), for the skip-graph demo and the
// integration tests. Each node is a libp2p host built with
// p2pconn.HostOptions, a Kademlia DHT joined through one introducer (node
// 0), a p2pconn.Manager that resolves Identifiers through the host's
// peerstore and then the DHT, a network.Network, and an sg.Node on it.
//
// Most nodes run in the testbed's process. Some may run in child processes,
// one node each (Options.Children, AddChild): the program is run again as
// ChildRole, which its main or TestMain passes to testkit.ChildMain first.
// The testbed drives such a node through the child's stdin and stdout (see
// control.go): join, search, leave, table and connection snapshots; the
// child reports its table changes and its messages, so that tables,
// searches and the Ledger cover every node alike, and Node hides where a
// node runs. A crash of a node in a child process is a SIGKILL.
//
//	tb, err := testbed.Start(ctx, testbed.Options{Nodes: 64, Children: 16})
//	if err != nil { ... }
//	defer tb.Close()
//	for i := range 64 {
//		if _, err := tb.Join(ctx, i); err != nil { ... } // one at a time, through node 0
//	}
//	r, err := tb.Node(5).Search(ctx, 123456)
//	_, err = tb.Kill(7)         // no goodbye: its host closes first, or SIGKILL
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
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// Options configures a testbed.
type Options struct {
	// Nodes is how many nodes Start starts (not yet joined); at least 1.
	Nodes int
	// Children is how many of them run in child processes, one node each:
	// nodes spread evenly over the indexes, never node 0 (the introducer).
	// Less than Nodes. Default 0: every node in this process.
	Children int
	// ChildEnv is added to the environment of every child process
	// (KEY=value entries), e.g. GOLOG_LOG_LEVEL.
	ChildEnv []string
	// Conn configures every node's host and manager. Zero: ConnConfig().
	Conn *p2pconn.Config
	// Node is the template of every node's sg.Config; Key and
	// MembershipVector are drawn at random, and Observer is the testbed's
	// Ledger. Nodes in child processes take neither RoutingConnect nor
	// MaintenanceConnect (options do not cross processes).
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
	// DHT are options for the Kademlia DHT of every node in this process,
	// after the testbed's (they do not cross to child processes).
	DHT []dht.Option
	// TrimAfter, if set, closes the libp2p connections of the hosts in this
	// process older than that which carry no stream and no skipwire
	// connection (see trim): for hundreds of nodes in one process. 0:
	// libp2p's connection manager alone.
	TrimAfter time.Duration
}

var log = logging.Logger("skipwire/testbed")

// DefaultKeySpace is the default Options.KeySpace.
const DefaultKeySpace = 1_000_000

// startBurst is how many nodes Start starts at once in this process; it
// adds the others one at a time. A host built with p2pconn.HostOptions
// refuses inbound connections beyond libp2p's transient limit (about 80
// secure handshakes in progress): with 255 nodes dialing the introducer at
// once, most failed.
const startBurst = 64

// childBurst is how many child processes Start starts at once: each dials
// the introducer, and starting a process costs CPU.
const childBurst = 8

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

// member is one node of the testbed and what became of it.
type member struct {
	n     node
	child bool
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
	cut // cut off from the others (Cut): no longer a member, still running
)

// Testbed is a set of skip-graph nodes, numbered from 0 in the order they
// were started. Its methods are safe for concurrent use, but one node's
// Join, Kill, Leave and Cut must not overlap.
type Testbed struct {
	opts    Options
	conn    p2pconn.Config
	c       *cluster.Cluster // the nodes in this process
	ledger  *Ledger
	resolve *Resolutions

	mu      sync.Mutex
	members []*member // nil while being started
	keys    map[sg.Key]bool

	stopTrim chan struct{} // closed by Close
	trimDone chan struct{}
}

// Start starts opts.Nodes nodes, each a host whose DHT joined through node
// 0, a manager, a Network and an sg.Node that has not joined yet;
// opts.Children of them in child processes.
func Start(ctx context.Context, opts Options) (*Testbed, error) {
	if opts.Nodes < 1 {
		return nil, fmt.Errorf("testbed: %d nodes: need at least one", opts.Nodes)
	}
	if opts.Children < 0 || opts.Children >= opts.Nodes {
		return nil, fmt.Errorf("testbed: %d of %d nodes in child processes: need 0 to %d (node 0 runs here)", opts.Children, opts.Nodes, opts.Nodes-1)
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
	if opts.Listen == "" {
		opts.Listen = cluster.DefaultListen
	}
	tb := &Testbed{opts: opts, conn: ConnConfig(), ledger: NewLedger(), resolve: new(Resolutions), keys: make(map[sg.Key]bool)}
	if opts.Conn != nil {
		tb.conn = *opts.Conn
	}
	var here, apart []int
	for i := range opts.Nodes {
		if runsApart(i, opts.Nodes, opts.Children) {
			apart = append(apart, i)
		} else {
			here = append(here, i)
		}
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Size:       min(len(here), startBurst),
		Listen:     opts.Listen,
		Config:     tb.conn,
		DHTOptions: dhtOptions(opts.DHTRefresh, opts.DHT),
		NewResolver: func(h host.Host, kad *dht.IpfsDHT) resolver.AddressResolver {
			return resolverFor(h, kad, tb.resolve.add)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	tb.c = c
	tb.members = make([]*member, opts.Nodes)
	if opts.TrimAfter > 0 {
		tb.stopTrim, tb.trimDone = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(tb.trimDone)
			tb.trim(opts.TrimAfter, tb.stopTrim)
		}()
	}
	fail := func(err error) (*Testbed, error) { return nil, errors.Join(err, tb.Close()) }
	burst := c.Size()
	for k, i := range here {
		ci := k
		if k >= burst {
			if ci, err = c.Add(ctx); err != nil {
				return fail(fmt.Errorf("testbed: %w", err))
			}
		}
		m, err := tb.attach(ctx, ci)
		if err != nil {
			return fail(err)
		}
		tb.place(i, m)
	}
	errs := make([]error, len(apart))
	sem := make(chan struct{}, childBurst)
	var wg sync.WaitGroup
	for k, i := range apart {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var m *member
			if m, errs[k] = tb.startChildMember(ctx, ChildOptions{}); m != nil {
				tb.place(i, m)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	return tb, nil
}

// runsApart reports whether node i of n runs in a child process when k of
// them do: k nodes spread evenly, never node 0.
func runsApart(i, n, k int) bool { return (i+1)*k/n > i*k/n }

// dhtOptions are the options of every node's Kademlia DHT: refresh off
// unless asked for, then extra.
func dhtOptions(refresh bool, extra []dht.Option) []dht.Option {
	var opts []dht.Option
	if !refresh {
		opts = append(opts, dht.DisableAutoRefresh())
	}
	return append(opts, extra...)
}

// nodeConfig returns a new node's sg.Config: the template with a key no
// other node has and, unless the template has one, a random membership
// vector (drawn here, so that the testbed knows it for a node in a child
// process).
func (tb *Testbed) nodeConfig() sg.Config {
	cfg := tb.opts.Node
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for {
		cfg.Key = sg.Key(rand.Uint64N(tb.opts.KeySpace))
		if !tb.keys[cfg.Key] {
			break
		}
	}
	tb.keys[cfg.Key] = true
	for cfg.MembershipVector == 0 {
		cfg.MembershipVector = sg.RandomMembershipVector()
	}
	return cfg
}

// attach starts the skip-graph node of cluster node ci.
func (tb *Testbed) attach(ctx context.Context, ci int) (*member, error) {
	cfg := tb.nodeConfig()
	cfg.Observer = tb.ledger.Observer(tb.c.ID(ci))
	node, nw, err := startNode(ctx, tb.c, ci, cfg, !tb.opts.DHTRefresh)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("testbed: node on host %d: %w", ci, err), tb.c.Kill(ci))
	}
	return &member{n: &localNode{Node: node, net: nw, c: tb.c, ci: ci}}, nil
}

// startChildMember starts a node in a child process.
func (tb *Testbed) startChildMember(ctx context.Context, o ChildOptions) (*member, error) {
	p, err := tb.startChild(ctx, tb.nodeConfig(), o)
	if err != nil {
		return nil, err
	}
	return &member{n: p, child: true}, nil
}

// place puts m at index i, or at the end if i is negative, and returns its
// index.
func (tb *Testbed) place(i int, m *member) int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if i < 0 {
		tb.members = append(tb.members, m)
		return len(tb.members) - 1
	}
	tb.members[i] = m
	return i
}

// Size returns how many nodes were started, whatever became of them.
func (tb *Testbed) Size() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return len(tb.members)
}

// Node returns node i.
func (tb *Testbed) Node(i int) Node { return tb.member(i).n }

// InChild reports whether node i runs in a child process.
func (tb *Testbed) InChild(i int) bool { return tb.member(i).child }

// Ledger returns the record of every skip-graph message.
func (tb *Testbed) Ledger() *Ledger { return tb.ledger }

// Resolutions returns how the nodes' managers resolved Identifiers.
func (tb *Testbed) Resolutions() *Resolutions { return tb.resolve }

func (tb *Testbed) member(i int) *member {
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
		introducer = tb.member(0).n.Self().ID
	}
	tb.setState(i, joining)
	t0 := time.Now()
	if err := m.n.join(ctx, introducer); err != nil {
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

// Add starts a new node in this process (a new key, a host whose DHT joins
// through the introducer), not yet joined, and returns its index.
func (tb *Testbed) Add(ctx context.Context) (int, error) {
	ci, err := tb.c.Add(ctx)
	if err != nil {
		return -1, fmt.Errorf("testbed: %w", err)
	}
	m, err := tb.attach(ctx, ci)
	if err != nil {
		return -1, err
	}
	return tb.place(-1, m), nil
}

// AddChild starts a new node in a child process of its own, placed as o
// says, not yet joined, and returns its index.
func (tb *Testbed) AddChild(ctx context.Context, o ChildOptions) (int, error) {
	m, err := tb.startChildMember(ctx, o)
	if err != nil {
		return -1, err
	}
	return tb.place(-1, m), nil
}

// Kill crashes node i with no goodbye, so that its peers see their
// connections lost (p2pconn.ErrConnectionLost). A node in this process
// stops its skip-graph node without a word, then its host closes (its
// manager, DHT and Network close afterwards only to release their
// goroutines); a node in a child process gets SIGKILL. It returns the
// node and the moment of the crash.
func (tb *Testbed) Kill(i int) (Departure, error) {
	m := tb.member(i)
	tb.setState(i, killed)
	at, err := m.n.kill()
	return Departure{ID: m.n.Self().ID, At: at}, err
}

// Leave takes node i out gracefully: sg.Node.Leave tells its neighbours,
// then the node, its Network, its manager (which tells every peer that the
// node left), its DHT and its host close. It returns the node and the
// moment it began to leave.
func (tb *Testbed) Leave(ctx context.Context, i int) (Departure, error) {
	m := tb.member(i)
	tb.setState(i, leaving)
	d := Departure{ID: m.n.Self().ID, At: time.Now()}
	err := m.n.leave(ctx)
	tb.setState(i, left)
	return d, err
}

// Cut takes node i out of the skip graph the testbed checks, as a crash
// does, and calls cutOff, which cuts it off the network without stopping
// it (e.g. takes its network interface down, so that its packets vanish:
// no reset, no FIN). From then on searches must not find it, and messages
// to and from it are not judged. It returns the node and the moment cutOff
// was called. The node stops with the testbed.
func (tb *Testbed) Cut(i int, cutOff func() error) (Departure, error) {
	m := tb.member(i)
	tb.setState(i, cut)
	d := Departure{ID: m.n.Self().ID, At: time.Now()}
	if err := cutOff(); err != nil {
		return d, fmt.Errorf("testbed: cut node %d off: %w", i, err)
	}
	return d, nil
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
	members, _ := tb.membersAndJoining()
	return members
}

// membersAndJoining returns the Members and the nodes joining.
func (tb *Testbed) membersAndJoining() (members, joiningNodes []sg.Peer) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, m := range tb.members {
		if m == nil { // being started
			continue
		}
		switch m.state {
		case joined:
			members = append(members, m.n.Self())
		case joining:
			joiningNodes = append(joiningNodes, m.n.Self())
		}
	}
	return members, joiningNodes
}

// Alive reports whether node id is a member (joined, neither leaving nor
// stopped nor cut off): messages to and from it count in the ledger's
// losses.
func (tb *Testbed) Alive(id identity.Identifier) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, m := range tb.members {
		if m != nil && m.n.Self().ID == id {
			return m.state == joined
		}
	}
	return false
}

// Close stops every node still running: the skip-graph nodes, Networks and
// child processes first, then the cluster of this process's nodes
// (managers, DHTs, hosts).
func (tb *Testbed) Close() error {
	if tb.stopTrim != nil {
		close(tb.stopTrim)
		<-tb.trimDone
		tb.stopTrim = nil
	}
	tb.mu.Lock()
	members := append([]*member(nil), tb.members...)
	tb.mu.Unlock()
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		if m == nil {
			continue
		}
		wg.Go(func() {
			err := m.n.stop()
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
