// Package childnode runs a skipwire node in a child process of the test
// binary (see testkit.StartChild): a node on its own host, with its own
// manager, that echoes every message it receives on the connection it came
// from. Tests freeze, kill or cut it off to see how the other side copes.
//
// A package whose tests start nodes passes Role to testkit.ChildMain in its
// TestMain:
//
//	func TestMain(m *testing.M) {
//		testkit.ChildMain(childnode.Role)
//		goleak.VerifyTestMain(m)
//	}
//
// then a test runs
//
//	n := childnode.Start(t, childnode.Options{Config: cfg})
//	table.Add(n.ID, n.Addr)
//	require.NoError(t, n.Freeze()) // SIGSTOP; n.Thaw(), n.Kill(), n.Stop(d)
package childnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// Role is the child role of an echo node; pass it to testkit.ChildMain.
var Role = testkit.Role{Name: "skipwire-echo-node", Run: run}

// Options configure a child node.
type Options struct {
	// Config is the node's manager configuration. Metrics is not carried to
	// the child (it has no registry of the parent's).
	Config p2pconn.Config
	// Listen is the node's listen address; default testkit.LoopbackTCP.
	Listen string
	// Wrap is a command prefix that runs the child, e.g.
	// {"ip", "netns", "exec", "ns1"} (see testkit.ChildOptions).
	Wrap []string
}

// Node is a running child node.
type Node struct {
	*testkit.Child
	// ID is the node's Identifier.
	ID identity.Identifier
	// Addr is the address the node listens on.
	Addr ma.Multiaddr
}

// AddrInfo returns the node's peer ID and listen address.
func (n *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.ID.PeerID(), Addrs: []ma.Multiaddr{n.Addr}}
}

// Start runs a node in a child process and returns once it listens. When the
// test ends the node is stopped (see testkit.StartChild).
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	cfg := opts.Config
	cfg.Metrics = nil
	js, err := json.Marshal(cfg)
	require.NoError(t, err)
	listen := opts.Listen
	if listen == "" {
		listen = testkit.LoopbackTCP
	}
	c := testkit.StartChild(t, Role, testkit.ChildOptions{Args: []string{listen, string(js)}, Wrap: opts.Wrap})
	require.Len(t, c.Ready, 2, "child node's READY line")
	id, err := identity.Parse(c.Ready[0])
	require.NoError(t, err)
	addr, err := ma.NewMultiaddr(c.Ready[1])
	require.NoError(t, err)
	return &Node{Child: c, ID: id, Addr: addr}
}

// run is the child: a node listening on args[0] with the configuration
// args[1] (JSON), which echoes every message until ctx ends.
func run(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments (listen address, config), got %d", len(args))
	}
	var cfg p2pconn.Config
	if err := json.Unmarshal([]byte(args[1]), &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	key, err := identity.GenerateKey()
	if err != nil {
		return err
	}
	h, err := libp2p.New(append(p2pconn.HostOptions(cfg), libp2p.Identity(key), libp2p.ListenAddrStrings(args[0]))...)
	if err != nil {
		return err
	}
	m, err := p2pconn.NewManager(h, nil, cfg)
	if err != nil {
		return errors.Join(err, h.Close())
	}
	serveCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(serveCtx, m)
	}()
	addrs := h.Network().ListenAddresses()
	if len(addrs) == 0 {
		cancel()
		<-done
		return errors.Join(errors.New("no listen address"), m.Close(), h.Close())
	}
	testkit.Ready(m.ID().String(), addrs[0].String())
	<-ctx.Done()
	cancel()
	<-done
	return errors.Join(m.Close(), h.Close())
}

// serve echoes every message on every connection m accepts, until ctx ends.
func serve(ctx context.Context, m *p2pconn.Manager) {
	for {
		c, err := m.Accept(ctx)
		if err != nil {
			return
		}
		go func() {
			for {
				msg, err := c.Next(ctx)
				if err != nil || c.Send(ctx, msg) != nil {
					return
				}
			}
		}()
	}
}
