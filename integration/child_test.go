package integration_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// A child is a skipwire node in a process of its own: the test binary,
// re-executed with childEnv set. It listens on childListenEnv (default TCP on
// a free loopback port), prints "READY <identifier> <multiaddr>", echoes
// every message it receives on the connection it came from, and runs until
// its stdin closes (or it is killed).
const (
	childEnv       = "SKIPWIRE_INTEGRATION_CHILD"
	childListenEnv = "SKIPWIRE_INTEGRATION_LISTEN"
)

// childConfig is the manager configuration of the children and of the nodes
// that talk to them: a frozen or cut-off peer is detected within 2 s.
func childConfig() p2pconn.Config {
	return p2pconn.Config{
		KeepaliveInterval: time.Second,
		KeepaliveTimeout:  time.Second,
		ConnectTimeout:    5 * time.Second,
		RetryAttempts:     1,
		RetryDelay:        100 * time.Millisecond,
		CloseTimeout:      2 * time.Second,
	}
}

func runChildNode() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child node:", err)
		return 1
	}
	listen := os.Getenv(childListenEnv)
	if listen == "" {
		listen = "/ip4/127.0.0.1/tcp/0"
	}
	cfg := childConfig()
	key, err := identity.GenerateKey()
	if err != nil {
		return fail(err)
	}
	h, err := libp2p.New(append(p2pconn.HostOptions(cfg),
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen),
		libp2p.DisableIdentifyAddressDiscovery())...)
	if err != nil {
		return fail(err)
	}
	defer h.Close()
	m, err := p2pconn.NewManager(h, nil, cfg)
	if err != nil {
		return fail(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	addrs := h.Network().ListenAddresses()
	if len(addrs) == 0 {
		return fail(fmt.Errorf("no listen address"))
	}
	fmt.Printf("READY %s %s\n", m.ID(), addrs[0])
	<-ctx.Done()
	return 0
}

// child is a node running in its own process.
type child struct {
	cmd  *exec.Cmd
	id   identity.Identifier
	addr ma.Multiaddr
}

// startChild runs a child node listening on listen ("" for loopback), under
// the command prefix wrap (e.g. ip netns exec <ns>) if any. Cleanup ends it.
func startChild(t testing.TB, listen string, wrap ...string) *child {
	t.Helper()
	args := append(append([]string{}, wrap...), os.Args[0], "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1", childListenEnv+"="+listen)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = stdin.Close()
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
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
	return &child{cmd: cmd, id: id, addr: addr}
}
