// Package clitest holds what the tests of the example programs share:
// running a program in-process and the address of a peer nobody runs.
package clitest

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/identity"
)

// Run runs p in-process with args and stdin, its ctx ending after timeout,
// and returns its exit status and what it printed.
func Run(t testing.TB, p cli.Program, timeout time.Duration, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	code = p(ctx, args, stdin, &out, &errOut)
	return code, out.String(), errOut.String()
}

// UnreachablePeer returns the full multiaddr of a peer with a fresh key on
// TCP port 1 of 127.0.0.1, where nothing listens, and the peer's
// Identifier.
func UnreachablePeer(t testing.TB) (addr string, id identity.Identifier) {
	t.Helper()
	k, err := identity.GenerateKey()
	require.NoError(t, err)
	id, err = identity.FromPrivateKey(k)
	require.NoError(t, err)
	return "/ip4/127.0.0.1/tcp/1/p2p/" + id.PeerID().String(), id
}
