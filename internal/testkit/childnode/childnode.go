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
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
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
	// Key is the node's host key; default a new one. A node restarted with
	// the key of a previous one is the same Identifier in a new process.
	Key crypto.PrivKey
	// Dial, if set, is a node the child connects to once it listens (and
	// echoes on that connection too).
	Dial *peer.AddrInfo
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
	args := []string{listen, string(js), "", ""}
	if opts.Key != nil {
		raw, err := crypto.MarshalPrivateKey(opts.Key)
		require.NoError(t, err)
		args[2] = hex.EncodeToString(raw)
	}
	if opts.Dial != nil {
		js, err := opts.Dial.MarshalJSON()
		require.NoError(t, err)
		args[3] = string(js)
	}
	c := testkit.StartChild(t, Role, testkit.ChildOptions{Args: args, Wrap: opts.Wrap})
	require.Len(t, c.Ready, 2, "child node's READY line")
	id, err := identity.Parse(c.Ready[0])
	require.NoError(t, err)
	addr, err := ma.NewMultiaddr(c.Ready[1])
	require.NoError(t, err)
	return &Node{Child: c, ID: id, Addr: addr}
}

// run is the child: a node listening on args[0] with the configuration
// args[1] (JSON), the host key args[2] (hex, or empty for a new one), which
// connects to args[3] (a JSON peer.AddrInfo, or empty) and echoes every
// message until ctx ends.
func run(ctx context.Context, args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want 4 arguments (listen address, config, key, dial), got %d", len(args))
	}
	var cfg p2pconn.Config
	if err := json.Unmarshal([]byte(args[1]), &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	key, err := childKey(args[2])
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
	if args[3] != "" {
		var to peer.AddrInfo
		if err := to.UnmarshalJSON([]byte(args[3])); err != nil {
			cancel()
			<-done
			return errors.Join(fmt.Errorf("dial: %w", err), m.Close(), h.Close())
		}
		h.Peerstore().AddAddrs(to.ID, to.Addrs, time.Hour)
		id, err := identity.FromPeerID(to.ID)
		if err == nil {
			var c p2pconn.Connection
			if c, err = m.Connect(ctx, id); err == nil {
				go echo(serveCtx, c)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child node: connect:", err)
		}
	}
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
		go echo(ctx, c)
	}
}

// echo sends back every message c receives, until ctx ends or c dies.
func echo(ctx context.Context, c p2pconn.Connection) {
	for {
		msg, err := c.Next(ctx)
		if err != nil || c.Send(ctx, msg) != nil {
			return
		}
	}
}

// childKey decodes a marshalled private key in hex, or makes a new key.
func childKey(s string) (crypto.PrivKey, error) {
	if s == "" {
		return identity.GenerateKey()
	}
	raw, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return crypto.UnmarshalPrivateKey(raw)
}
