package testkit

import (
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

// Listen addresses on loopback, port 0 (the kernel picks a free port).
const (
	LoopbackTCP  = "/ip4/127.0.0.1/tcp/0"
	LoopbackQUIC = "/ip4/127.0.0.1/udp/0/quic-v1"
)

// NewHost starts a libp2p host with opts (e.g. p2pconn.HostOptions(cfg)),
// the private key key (a fresh Ed25519 key if nil) and the listen address
// listen (LoopbackTCP if ""). The host is closed when the test ends.
func NewHost(t testing.TB, key crypto.PrivKey, listen string, opts ...libp2p.Option) host.Host {
	t.Helper()
	if key == nil {
		var err error
		key, err = identity.GenerateKey()
		require.NoError(t, err)
	}
	if listen == "" {
		listen = LoopbackTCP
	}
	all := append(append([]libp2p.Option{}, opts...), libp2p.Identity(key), libp2p.ListenAddrStrings(listen))
	h, err := libp2p.New(all...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close(), "close host %s", h.ID()) })
	return h
}
