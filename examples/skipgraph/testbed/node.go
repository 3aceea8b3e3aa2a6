package testbed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	lpnet "github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
)

// A Node is one skip-graph node of the testbed, whether it runs in this
// process or in a child process of its own. Its methods are safe for
// concurrent use.
type Node interface {
	// Self returns the node's Identifier, key and membership vector.
	Self() sg.Peer
	// Table returns a copy of the node's routing table. For a node in a
	// child process it is the last table the node reported: it looks for
	// changes every 5 ms.
	Table() sg.Table
	// Search runs sg.Node.Search on the node. For a node in a child
	// process, a failed search's error carries the child's message as text.
	Search(ctx context.Context, target sg.Key) (sg.Result, error)
}

// node is what the testbed does with a Node, here or in a child process.
type node interface {
	Node
	// join runs sg.Node.Join through introducer.
	join(ctx context.Context, introducer identity.Identifier) error
	// kill crashes the node, with no goodbye, and returns the moment of the
	// crash.
	kill() (time.Time, error)
	// leave runs sg.Node.Leave, then stops the node.
	leave(ctx context.Context) error
	// stop stops the node without a word to the skip graph (its manager
	// still tells its peers that it closed), unless it is already stopped.
	stop() error
	// table returns the node's routing table at the moment of the call.
	table(ctx context.Context) (sg.Table, error)
	// conns describes the node's connections.
	conns(ctx context.Context) (connView, error)
}

var (
	_ node = (*localNode)(nil)
	_ node = (*procNode)(nil)
)

// localNode is a node in this process: the sg.Node on cluster node ci.
type localNode struct {
	*sg.Node
	net *network.Network
	c   *cluster.Cluster
	ci  int
}

func (l *localNode) join(ctx context.Context, introducer identity.Identifier) error {
	return l.Join(ctx, introducer)
}

// kill stops the skip-graph node first, then closes the host, so that peers
// see their connections lost (p2pconn.ErrConnectionLost); the manager, DHT
// and Network are closed afterwards only to release their goroutines.
func (l *localNode) kill() (time.Time, error) {
	err := l.Close()
	at := time.Now()
	err = errors.Join(err, l.c.Kill(l.ci))
	return at, errors.Join(err, l.net.Close())
}

// leave tells the neighbours, then closes the node, its Network, its
// manager (which tells every peer that the node left), its DHT and its
// host.
func (l *localNode) leave(ctx context.Context) error {
	err := l.Leave(ctx)
	err = errors.Join(err, l.Close(), l.net.Close())
	return errors.Join(err, l.c.Stop(l.ci))
}

// stop closes the node and its Network; Testbed.Close closes the cluster.
func (l *localNode) stop() error { return errors.Join(l.Close(), l.net.Close()) }

func (l *localNode) table(context.Context) (sg.Table, error) { return l.Table(), nil }

func (l *localNode) conns(context.Context) (connView, error) {
	m := l.c.Manager(l.ci)
	return viewOf(l.c.Host(l.ci), m, p2pconn.ProtocolFor(m.Config().NetworkName)), nil
}

// connView is what one node sees of its connections: how many skipwire
// connections its manager has, and by peer, its libp2p connections, the
// skipwire streams on them and whether the manager has a connection.
type connView struct {
	Count int                               `json:"count"`
	Peers map[identity.Identifier]peerConns `json:"peers"`
}

type peerConns struct {
	Conns    int  `json:"conns"`
	Streams  int  `json:"streams"`
	Skipwire bool `json:"skipwire"`
	// Each skipwire stream's direction and age, such as "in 2.1s", for
	// telling what a second stream to a peer is when one lingers.
	Ages []string `json:"ages,omitempty"`
}

// viewOf describes the connections of host h and manager m, whose skipwire
// streams speak proto.
func viewOf(h host.Host, m *p2pconn.Manager, proto protocol.ID) connView {
	v := connView{Count: m.ConnectionCount(), Peers: make(map[identity.Identifier]peerConns)}
	for _, c := range h.Network().Conns() {
		id, err := identity.FromPeerID(c.RemotePeer())
		if err != nil {
			continue
		}
		p := v.Peers[id]
		p.Conns++
		for _, s := range c.GetStreams() {
			if s.Protocol() == proto {
				p.Streams++
				st := s.Stat()
				dir := "out"
				if st.Direction == lpnet.DirInbound {
					dir = "in"
				}
				p.Ages = append(p.Ages, fmt.Sprintf("%s %s", dir, time.Since(st.Opened).Round(100*time.Millisecond)))
			}
		}
		v.Peers[id] = p
	}
	for _, id := range m.ConnectedPeers() {
		p := v.Peers[id]
		p.Skipwire = true
		v.Peers[id] = p
	}
	return v
}

// startNode announces cluster node ci in the DHT (if announce), then starts
// its Network and an sg.Node with cfg on it.
//
// The announcement is a lookup of the node's own peer ID, Kademlia's join:
// it reaches the nodes whose IDs are closest to its own, which put it in
// their routing tables, and those are the nodes a lookup for it ends at.
// kad-dht's refresh does that walk, among others; with the refresh off
// (Options.DHTRefresh) a node known to its bootstrap node alone was often
// not found, from about 150 nodes on.
func startNode(ctx context.Context, c *cluster.Cluster, ci int, cfg sg.Config, announce bool) (*sg.Node, *network.Network, error) {
	if announce {
		n := c.Node(ci)
		if _, err := n.DHT.GetClosestPeers(ctx, string(n.PeerID())); err != nil {
			log.Debugw("self lookup failed", "node", n.ID, "err", err)
		}
	}
	nw, err := network.New(c.Manager(ci), network.Config{})
	if err != nil {
		return nil, nil, err
	}
	node, err := sg.New(nw, cfg)
	if err != nil {
		return nil, nil, errors.Join(err, nw.Close())
	}
	return node, nw, nil
}
