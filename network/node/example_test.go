package node_test

import (
	"context"
	"fmt"

	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/network/node"
)

// Two nodes on loopback: bob serves "greet", alice sends to it and asks it.
func Example() {
	ctx := context.Background()
	local := node.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
	alice, err := node.New(local)
	if err != nil {
		panic(err)
	}
	defer alice.Close()
	bob, err := node.New(local)
	if err != nil {
		panic(err)
	}
	defer bob.Close()

	got := make(chan string, 1)
	greet := bob.Conduit("greet")
	_, err = bob.Register("greet", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
		if m.Call.IsZero() {
			got <- string(m.Payload)
			return
		}
		_ = greet.Reply(ctx, m.Call, []byte("hello, "+string(m.Payload)))
	}))
	if err != nil {
		panic(err)
	}

	alice.AddPeer(bob.ID(), bob.AddrInfo().Addrs...)
	if err := alice.Conduit("greet").Send(ctx, bob.ID(), []byte("hi bob")); err != nil {
		panic(err)
	}
	fmt.Println("bob got:", <-got)
	answer, err := alice.Conduit("greet").Request(ctx, bob.ID(), []byte("alice"))
	if err != nil {
		panic(err)
	}
	fmt.Println("alice got:", string(answer.Payload))
	// Output:
	// bob got: hi bob
	// alice got: hello, alice
}
