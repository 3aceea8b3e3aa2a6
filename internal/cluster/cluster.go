// Package cluster runs a local overlay of skipwire nodes in one process: each
// node is a libp2p host built with p2pconn.HostOptions, a Kademlia DHT
// (resolver.NewKadDHT) and a p2pconn.Manager that resolves Identifiers
// through the host's peerstore, then the DHT (DefaultResolver).
//
// It serves the cluster demo (examples/cluster) and multi-node tests, so it
// returns errors instead of failing a testing.TB, and every call that waits
// takes a context. Nodes can be stopped cleanly (Stop), crashed (Kill) and
// restarted on the same key and address (Restart):
//
//	c, err := cluster.Start(ctx, cluster.Options{Size: 8})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	conn, err := c.Manager(1).Connect(ctx, c.ID(2)) // found through the DHT
//
// Shutdown order, in Stop and Close: managers first (a graceful skipwire close
// needs the hosts), then DHTs, then hosts.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// DefaultListen is the listen address of every node unless Options.Listen
// says otherwise: TCP on a free loopback port.
const DefaultListen = "/ip4/127.0.0.1/tcp/0"

// Options configures a cluster.
type Options struct {
	// Size is the number of nodes; it must be at least 1.
	Size int

	// Listen is the listen multiaddr of each node, normally with port 0 so
	// that each gets a free port. Default DefaultListen.
	Listen string

	// Config configures every node's manager and host (p2pconn.HostOptions).
	// The zero value means p2pconn's defaults.
	Config p2pconn.Config

	// HostOptions are appended to every node's libp2p options, after
	// p2pconn.HostOptions(Config), the identity and the listen address.
	HostOptions []libp2p.Option

	// DHTOptions are passed to resolver.NewKadDHT for every node, after
	// resolver.DHTNetwork(Config.NetworkName).
	DHTOptions []dht.Option

	// NewResolver returns the resolver of a node's manager, given its host
	// and DHT. Default DefaultResolver.
	NewResolver func(h host.Host, kad *dht.IpfsDHT) resolver.AddressResolver

	// Bootstrap, if set, are DHT nodes outside the cluster that node 0's DHT
	// joins through (the other nodes still join through node 0): for a
	// cluster that is part of a bigger overlay, such as one node in a child
	// process. Default none: node 0 starts the DHT.
	Bootstrap []peer.AddrInfo
}

// Cluster is a set of local skipwire nodes, numbered from 0. Node 0 is the
// DHT bootstrap node of the others. Its methods are safe for concurrent use,
// but Stop, Kill and Restart of one node must not overlap: the second call
// fails.
type Cluster struct {
	opts Options

	addMu sync.Mutex // one Add at a time

	mu    sync.Mutex
	nodes []*Node // the current incarnation of each node
	state []state
}

type state int

const (
	running  state = iota
	changing       // being stopped, killed or restarted
	stopped
)

// Start starts opts.Size nodes: node 0 first, then the others in parallel,
// each joining the DHT through node 0. It returns once every node's DHT has
// joined; the nodes are not yet connected to each other by skipwire. If
// anything fails, Start closes what it started and returns the error.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Size < 1 {
		return nil, fmt.Errorf("cluster: size %d: need at least one node", opts.Size)
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{
		opts:  opts,
		nodes: make([]*Node, opts.Size),
		state: make([]state, opts.Size),
	}
	first, err := startNode(ctx, 0, nil, []string{opts.Listen}, opts.Bootstrap, opts)
	if err != nil {
		return nil, err
	}
	c.nodes[0] = first
	boot := []peer.AddrInfo{first.AddrInfo()}

	errs := make([]error, opts.Size)
	var wg sync.WaitGroup
	for i := 1; i < opts.Size; i++ {
		wg.Go(func() {
			c.nodes[i], errs[i] = startNode(ctx, i, nil, []string{opts.Listen}, boot, opts)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for i, n := range c.nodes {
			if n == nil {
				c.state[i] = stopped
			}
		}
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// Size returns the number of nodes, running or not.
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Node returns the current incarnation of node i: the one running, or the
// last one if it is stopped. Restart replaces it with a new Node.
func (c *Cluster) Node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// ID returns the Identifier of node i. It survives restarts.
func (c *Cluster) ID(i int) identity.Identifier { return c.Node(i).ID }

// IDs returns the Identifiers of every node, by index.
func (c *Cluster) IDs() []identity.Identifier {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]identity.Identifier, len(c.nodes))
	for i, n := range c.nodes {
		ids[i] = n.ID
	}
	return ids
}

// Manager returns the connection manager of node i's current incarnation.
func (c *Cluster) Manager(i int) *p2pconn.Manager { return c.Node(i).Manager }

// Host returns the libp2p host of node i's current incarnation.
func (c *Cluster) Host(i int) host.Host { return c.Node(i).Host }

// DHT returns the Kademlia DHT of node i's current incarnation.
func (c *Cluster) DHT(i int) *dht.IpfsDHT { return c.Node(i).DHT }

// Running reports whether node i is running.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state[i] == running
}

// RunningNodes returns the indexes of the running nodes, in order.
func (c *Cluster) RunningNodes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var idx []int
	for i, s := range c.state {
		if s == running {
			idx = append(idx, i)
		}
	}
	return idx
}

// ConnsBetween returns how many libp2p connections node i's host has to node
// j's. skipwire's promise is that, once settled, it is exactly 1 between two
// running nodes that share a skipwire connection.
func (c *Cluster) ConnsBetween(i, j int) int {
	return len(c.Host(i).Network().ConnsToPeer(c.Node(j).PeerID()))
}

// StreamsBetween returns how many skipwire streams (on the protocol of the
// cluster's network, p2pconn.ProtocolFor(Config.NetworkName)) node i's host
// has open to node j's, over all their libp2p connections. Once settled it
// is exactly 1 between two nodes that share a skipwire connection.
func (c *Cluster) StreamsBetween(i, j int) int {
	proto := p2pconn.ProtocolFor(c.opts.Config.NetworkName)
	n := 0
	for _, conn := range c.Host(i).Network().ConnsToPeer(c.Node(j).PeerID()) {
		for _, s := range conn.GetStreams() {
			if s.Protocol() == proto {
				n++
			}
		}
	}
	return n
}

// Stop stops node i cleanly: its manager closes every connection gracefully
// (peers see io.EOF), then its DHT and its host close.
func (c *Cluster) Stop(i int) error {
	n, err := c.begin(i, running, "stop")
	if err != nil {
		return err
	}
	err = n.stop()
	c.end(i, nil, stopped)
	return err
}

// Kill crashes node i: its host closes first, so peers see their connections
// reset, without the goodbye of a skipwire close (their connections end with
// p2pconn.ErrConnectionLost). Its manager and DHT are closed afterwards, only
// to release their goroutines.
func (c *Cluster) Kill(i int) error {
	n, err := c.begin(i, running, "kill")
	if err != nil {
		return err
	}
	err = n.kill()
	c.end(i, nil, stopped)
	return err
}

// Restart starts stopped node i again with the same key, hence the same
// Identifier, on the same listen addresses (the same TCP port), and joins the
// DHT through every running node. It returns once the DHT has joined.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	old, err := c.begin(i, stopped, "restart")
	if err != nil {
		return err
	}
	var boot []peer.AddrInfo
	for _, j := range c.RunningNodes() {
		boot = append(boot, c.Node(j).AddrInfo())
	}
	listen := make([]string, len(old.Listen))
	for k, a := range old.Listen {
		listen[k] = a.String()
	}
	n, err := startNode(ctx, i, old.Key, listen, boot, c.opts)
	if err != nil {
		c.end(i, nil, stopped)
		return err
	}
	c.end(i, n, running)
	return nil
}

// Add starts a new node, with a new key, and returns its index (the Size
// before the call). Its DHT joins through node 0, the cluster's bootstrap
// node, or through every running node if node 0 is not running. It returns
// once the DHT has joined. Concurrent Adds run one after the other.
func (c *Cluster) Add(ctx context.Context) (int, error) {
	c.addMu.Lock()
	defer c.addMu.Unlock()
	var boot []peer.AddrInfo
	if c.Running(0) {
		boot = []peer.AddrInfo{c.Node(0).AddrInfo()}
	} else {
		for _, j := range c.RunningNodes() {
			boot = append(boot, c.Node(j).AddrInfo())
		}
	}
	c.mu.Lock()
	i := len(c.nodes)
	c.mu.Unlock()
	n, err := startNode(ctx, i, nil, []string{c.opts.Listen}, boot, c.opts)
	if err != nil {
		return -1, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.state = append(c.state, running)
	c.mu.Unlock()
	return i, nil
}

// Close stops every running node: all managers first, in parallel (so that
// graceful closes between them complete), then all DHTs, then all hosts. It
// returns every error met. Close is not meant to overlap with other calls.
func (c *Cluster) Close() error {
	c.mu.Lock()
	var nodes []*Node
	for i, s := range c.state {
		if s == running {
			nodes = append(nodes, c.nodes[i])
			c.state[i] = stopped
		}
	}
	c.mu.Unlock()

	var mu sync.Mutex
	var errs []error
	each := func(f func(n *Node) error) {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() {
				if err := f(n); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	each((*Node).closeManager)
	each((*Node).closeDHT)
	each((*Node).closeHost)
	return errors.Join(errs...)
}

// begin moves node i from state want to changing, or fails.
func (c *Cluster) begin(i int, want state, op string) (*Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		return nil, fmt.Errorf("cluster: %s node %d: no such node (size %d)", op, i, len(c.nodes))
	}
	if c.state[i] != want {
		return nil, fmt.Errorf("cluster: %s node %d: node is %s", op, i, c.state[i])
	}
	c.state[i] = changing
	return c.nodes[i], nil
}

// end sets node i's state, and its incarnation if n is not nil.
func (c *Cluster) end(i int, n *Node, s state) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n != nil {
		c.nodes[i] = n
	}
	c.state[i] = s
}

func (s state) String() string {
	switch s {
	case running:
		return "running"
	case changing:
		return "being stopped or restarted"
	default:
		return "stopped"
	}
}
