package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/resolver"
)

func ExampleStatic_Load() {
	const table = `
# skipwire peers: <identifier> <multiaddr>...
6d8f1c3ae2b74f5a9c0e1d2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3 /ip4/10.0.0.1/tcp/4001 /ip4/10.0.0.1/udp/4001/quic-v1
`
	s := resolver.NewStatic()
	if err := s.Load(strings.NewReader(table)); err != nil {
		fmt.Println(err)
		return
	}
	id := identity.MustParse("6d8f1c3ae2b74f5a9c0e1d2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3")
	info, err := s.Resolve(context.Background(), id)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(info.Addrs)

	// A bad line names itself; nothing of that input is added.
	err = s.Load(strings.NewReader("# new nodes\n6d8f1c3a /ip4/10.0.0.2/tcp/4001\n"))
	var le *resolver.LineError
	if errors.As(err, &le) {
		fmt.Println("line", le.Line, "bad identifier:", errors.Is(err, identity.ErrInvalid))
	}
	fmt.Println(s.Len())
	// Output:
	// [/ip4/10.0.0.1/tcp/4001 /ip4/10.0.0.1/udp/4001/quic-v1]
	// line 2 bad identifier: true
	// 1
}

func ExampleNewChain() {
	known := identity.MustParse(strings.Repeat("11", identity.Size))
	unknown := identity.MustParse(strings.Repeat("22", identity.Size))

	first, second := resolver.NewStatic(), resolver.NewStatic()
	second.Add(known, ma.StringCast("/ip4/10.0.0.1/tcp/4001"))
	r := resolver.NewChain(first, second)

	info, err := r.Resolve(context.Background(), known)
	fmt.Println(info.Addrs, err)

	_, err = r.Resolve(context.Background(), unknown)
	fmt.Println(errors.Is(err, resolver.ErrNotFound))
	// Output:
	// [/ip4/10.0.0.1/tcp/4001] <nil>
	// true
}

// ExampleNewKadDHT starts a two-node skipwire DHT on loopback and resolves
// one node from the other.
func ExampleNewKadDHT() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	newHost := func() host.Host {
		k, err := identity.GenerateKey()
		if err != nil {
			panic(err)
		}
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Identity(k))
		if err != nil {
			panic(err)
		}
		return h
	}
	seed, node := newHost(), newHost()
	defer seed.Close()
	defer node.Close()

	// The first node has no bootstrap peer; the others list it.
	seedDHT, err := resolver.NewKadDHT(ctx, seed, nil)
	if err != nil {
		panic(err)
	}
	defer seedDHT.Close() // before the host: defers run last-in, first-out
	nodeDHT, err := resolver.NewKadDHT(ctx, node, []peer.AddrInfo{{ID: seed.ID(), Addrs: seed.Addrs()}})
	if err != nil {
		panic(err)
	}
	defer nodeDHT.Close()

	seedID, _ := identity.FromPeerID(seed.ID())
	info, err := resolver.NewDHT(nodeDHT).Resolve(ctx, seedID)
	if err != nil {
		panic(err)
	}
	fmt.Println(info.ID == seed.ID(), len(info.Addrs) > 0)
	// Output:
	// true true
}
