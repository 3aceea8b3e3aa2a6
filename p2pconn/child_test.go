package p2pconn_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// childEnv makes the test binary run as a remote node (runChildNode).
const childEnv = "SKIPWIRE_TEST_CHILD_NODE"

// runChildNode is a skipwire node that echoes every message it receives. It
// prints "READY <identifier> <multiaddr>" and runs until its stdin closes.
func runChildNode() int {
	cfg := p2pconn.Config{KeepaliveInterval: time.Second}
	key, err := identity.GenerateKey()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h, err := libp2p.New(append(p2pconn.HostOptions(cfg), libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer h.Close()
	m, err := p2pconn.NewManager(h, nil, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	go func() {
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
	}()
	fmt.Printf("READY %s %s\n", m.ID(), h.Addrs()[0])
	<-ctx.Done()
	return 0
}

// child is a node running in its own process.
type child struct {
	cmd  *exec.Cmd
	id   identity.Identifier
	info peer.AddrInfo
}

// startChild runs a child node; cleanup kills it.
func startChild(t testing.TB) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY ") {
				lines <- sc.Text()
			}
		}
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("child node did not start")
	}
	f := strings.Fields(line)
	require.Len(t, f, 3)
	id, err := identity.Parse(f[1])
	require.NoError(t, err)
	addr, err := ma.NewMultiaddr(f[2])
	require.NoError(t, err)
	return &child{cmd: cmd, id: id, info: peer.AddrInfo{ID: id.PeerID(), Addrs: []ma.Multiaddr{addr}}}
}
