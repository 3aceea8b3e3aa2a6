package testkit

import (
	"os"
	"runtime/pprof"
	"testing"
	"time"

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

// HostCloseTimeout bounds the Close of a host NewHost started, when the test
// ends: a Close still running then fails the test, with every goroutine's
// stack on standard error, instead of hanging it.
const HostCloseTimeout = 30 * time.Second

// NewHost starts a libp2p host with opts (e.g. p2pconn.HostOptions(cfg)),
// the private key key (a fresh Ed25519 key if nil) and the listen address
// listen (LoopbackTCP if ""). Address discovery from what peers observe is
// off (libp2p.DisableIdentifyAddressDiscovery, as p2pconn.HostOptions has
// it): with go-libp2p v0.51 it can make Close hang when many hosts close at
// once. The host is closed when the test ends (see HostCloseTimeout).
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
	all := append(append([]libp2p.Option{}, opts...),
		libp2p.Identity(key), libp2p.ListenAddrStrings(listen), libp2p.DisableIdentifyAddressDiscovery())
	h, err := libp2p.New(all...)
	require.NoError(t, err)
	t.Cleanup(func() { CloseHost(t, h) })
	return h
}

// CloseHost closes h and fails the test if Close fails or is still running
// after HostCloseTimeout; then it dumps every goroutine's stack to standard
// error and returns, leaving Close running. It may be called from any
// goroutine (it fails the test with t.Errorf).
func CloseHost(t testing.TB, h host.Host) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- h.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("close host %s: %v", h.ID(), err)
		}
	case <-time.After(HostCloseTimeout):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		t.Errorf("close host %s: still closing after %s (goroutines above)", h.ID(), HostCloseTimeout)
	}
}
