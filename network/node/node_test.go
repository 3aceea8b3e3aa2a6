package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/network/node"
	"github.com/skipwire/skipwire/p2pconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNodes(t *testing.T) {
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	cfg := node.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Conn: p2pconn.Config{ConnectTimeout: 5 * time.Second}}
	withKey := cfg
	withKey.Key = key
	a, err := node.New(withKey)
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	want, err := identity.FromPublicKey(key.GetPublic())
	require.NoError(t, err)
	require.Equal(t, want, a.ID())
	require.Equal(t, a.ID(), a.Network().ID())
	require.Equal(t, a.Host().ID(), a.AddrInfo().ID)

	b, err := node.New(cfg)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	echo := b.Conduit("echo")
	_, err = b.Register("echo", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
		_ = echo.Reply(ctx, m.Call, m.Payload)
	}))
	require.NoError(t, err)

	a.AddPeer(b.ID(), b.AddrInfo().Addrs...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := a.Conduit("echo").Request(ctx, b.ID(), []byte("hi"))
	require.NoError(t, err)
	require.Equal(t, "hi", string(r.Payload))
	require.Equal(t, 1, a.Manager().ConnectionCount())

	_, err = node.New(node.Config{Listen: []string{"not a multiaddr"}})
	require.Error(t, err)
}
