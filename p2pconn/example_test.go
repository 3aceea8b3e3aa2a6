package p2pconn_test

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// Two nodes on loopback: one connects to the other by Identifier, they
// exchange a message each way, and the first closes.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := p2pconn.DefaultConfig()
	table := resolver.NewStatic() // Identifier -> addresses

	start := func() *p2pconn.Manager {
		key, err := identity.GenerateKey()
		if err != nil {
			panic(err)
		}
		h, err := libp2p.New(append(p2pconn.HostOptions(cfg),
			libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))...)
		if err != nil {
			panic(err)
		}
		m, err := p2pconn.NewManager(h, table, cfg)
		if err != nil {
			panic(err)
		}
		table.Add(m.ID(), h.Addrs()...)
		return m
	}
	alice, bob := start(), start()
	defer alice.Host().Close()
	defer bob.Host().Close()
	defer alice.Close()
	defer bob.Close()

	conn, err := alice.Connect(ctx, bob.ID())
	if err != nil {
		panic(err)
	}
	if err := conn.Send(ctx, []byte("hello, bob")); err != nil {
		panic(err)
	}

	in, err := bob.Accept(ctx) // the connection alice opened
	if err != nil {
		panic(err)
	}
	msg, _ := in.Next(ctx)
	fmt.Printf("bob got %q from alice: %v\n", msg, in.RemoteID() == alice.ID())
	_ = in.Send(ctx, []byte("hi, alice"))

	reply, _ := conn.Next(ctx)
	fmt.Printf("alice got %q\n", reply)

	_ = conn.Close()
	_, err = in.Next(ctx)
	fmt.Println("bob sees the close:", err != nil && in.Err() != nil)
	// Output:
	// bob got "hello, bob" from alice: true
	// alice got "hi, alice"
	// bob sees the close: true
}
