package benchkit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// rawProtocol is the protocol of the raw libp2p baseline: one byte each way,
// then skipwire's framing (uvarint length || payload) with nothing else.
const rawProtocol protocol.ID = "/bench/raw/1.0.0"

// NodeConfig says how NewNode builds a node.
type NodeConfig struct {
	// Manager configures the node's Manager, and its host through
	// p2pconn.HostOptions. The zero value is the default configuration.
	Manager p2pconn.Config
	// HostOptions are appended to p2pconn.HostOptions(Manager), such as a
	// choice of secure channel. Nil adds none.
	HostOptions []libp2p.Option
	// TCP also starts a plain TCP listener on loopback, for OpenTCP.
	// False: no listener, and Node.TCP is nil.
	TCP bool
}

// Node is one loopback endpoint of every link: a libp2p host built from
// p2pconn.HostOptions serving both skipwire (through a Manager) and the raw
// baseline protocol, and optionally a plain TCP listener.
type Node struct {
	// ID is the Manager's Identifier.
	ID identity.Identifier
	// Host is the node's libp2p host, listening on 127.0.0.1.
	Host host.Host
	// Manager is the node's skipwire Manager, resolving peers through the
	// table NewNode was given.
	Manager *p2pconn.Manager
	// TCP is the plain TCP listener, nil unless NodeConfig.TCP was set.
	TCP *TCPListener

	raw    chan network.Stream // raw streams a remote opened, after the first exchange
	ctx    context.Context     // cancelled by Close
	cancel context.CancelFunc
}

// NewNode starts a node that resolves its peers through table and adds
// itself to it. It registers no cleanup, so it may be called from many
// goroutines; Close stops it.
func NewNode(nc NodeConfig, table *resolver.Static) (_ *Node, err error) {
	key, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	opts := append(p2pconn.HostOptions(nc.Manager), nc.HostOptions...)
	opts = append(opts, libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}
	defer func() {
		if err != nil {
			_ = h.Close()
		}
	}()
	m, err := p2pconn.NewManager(h, table, nc.Manager)
	if err != nil {
		return nil, err
	}
	var tcp *TCPListener
	if nc.TCP {
		if tcp, err = ListenTCP(); err != nil {
			_ = m.Close()
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		ID: m.ID(), Host: h, Manager: m, TCP: tcp,
		raw: make(chan network.Stream, 4),
		ctx: ctx, cancel: cancel,
	}
	table.Add(n.ID, h.Addrs()...)
	h.SetStreamHandler(rawProtocol, n.handleRaw)
	return n, nil
}

// handleRaw answers the opener's first byte and hands the stream over.
func (n *Node) handleRaw(s network.Stream) {
	handOver(n.ctx, s, n.raw, func(s network.Stream) { _ = s.Reset() })
}

// Close stops the node: its manager, then the raw protocol and the TCP
// listener, then its host. Streams and connections still queued for a
// taker are reset or closed.
func (n *Node) Close() error {
	n.cancel()
	err := n.Manager.Close()
	n.Host.RemoveStreamHandler(rawProtocol)
	if n.TCP != nil {
		err = errors.Join(err, n.TCP.Close())
	}
	drain(n.raw, func(s network.Stream) { _ = s.Reset() })
	return errors.Join(err, n.Host.Close())
}

// NewNodes starts count nodes, a few at a time, all resolving through table.
// On an error it closes those it started.
func NewNodes(count int, nc NodeConfig, table *resolver.Static) ([]*Node, error) {
	nodes := make([]*Node, count)
	errs := make([]error, count)
	Parallel(count, 4, func(i int) { nodes[i], errs[i] = NewNode(nc, table) })
	if err := errors.Join(errs...); err != nil {
		_ = CloseNodes(nodes)
		return nil, err
	}
	return nodes, nil
}

// CloseNodes closes nodes, a few at a time; nil entries are skipped.
func CloseNodes(nodes []*Node) error {
	errs := make([]error, len(nodes))
	Parallel(len(nodes), 8, func(i int) {
		if nodes[i] != nil {
			errs[i] = nodes[i].Close()
		}
	})
	return errors.Join(errs...)
}

// Parallel runs f(0) ... f(count-1) on workers goroutines and waits.
func Parallel(count, workers int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, count) {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range count {
		next <- i
	}
	close(next)
	wg.Wait()
}

// WaitApart polls until a and b hold no libp2p connection and no skipwire
// connection to each other, so that the next link between them is dialed
// afresh, or until ctx ends.
func WaitApart(ctx context.Context, a, b *Node) error {
	for {
		_, ab := a.Manager.GetConnection(b.ID)
		_, ba := b.Manager.GetConnection(a.ID)
		if !ab && !ba && len(a.Host.Network().ConnsToPeer(b.Host.ID())) == 0 && len(b.Host.Network().ConnsToPeer(a.Host.ID())) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the hosts to disconnect: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}
