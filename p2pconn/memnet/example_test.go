package memnet_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
)

// Two nodes exchange a message, then a partition cuts them apart until it is
// healed.
func Example() {
	ctx := context.Background()
	net := memnet.NewNetwork()
	aliceID, bobID := identity.Identifier{0xa1}, identity.Identifier{0xb0}
	alice, err := net.NewManager(aliceID, p2pconn.Config{})
	if err != nil {
		panic(err)
	}
	defer alice.Close()
	bob, err := net.NewManager(bobID, p2pconn.Config{})
	if err != nil {
		panic(err)
	}
	defer bob.Close()

	c, err := alice.Connect(ctx, bobID)
	if err != nil {
		panic(err)
	}
	if err := c.Send(ctx, []byte("hello")); err != nil {
		panic(err)
	}
	in, err := bob.Accept(ctx)
	if err != nil {
		panic(err)
	}
	msg, err := in.Next(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("bob got %q from %s at %s...\n", msg, in.RemoteID().Short(), in.RemoteAddr()[:16])

	net.Partition(aliceID, bobID)
	_, err = in.Next(ctx)
	fmt.Println("lost:", errors.Is(err, p2pconn.ErrConnectionLost))
	_, err = alice.Connect(ctx, bobID)
	fmt.Println("unreachable:", errors.Is(err, memnet.ErrUnreachable))
	_, err = alice.Connect(ctx, bobID) // fails at once: bob failed within UnreachableFor
	var recent *p2pconn.UnreachableError
	fmt.Println("failed recently:", errors.As(err, &recent))

	net.Heal(aliceID, bobID)
	_, err = alice.Connect(ctx, bobID)
	fmt.Println("healed:", err == nil)
	// Output:
	// bob got "hello" from a1000000 at /memnet/a1000000...
	// lost: true
	// unreachable: true
	// failed recently: true
	// healed: true
}

// With ResumeWindow, a partition that heals in time loses nothing: the same
// connection goes on, and what was sent across the cut arrives after it.
func ExampleNetwork_Heal_resume() {
	ctx := context.Background()
	net := memnet.NewNetwork()
	aliceID, bobID := identity.Identifier{0xa1}, identity.Identifier{0xb0}
	cfg := p2pconn.Config{ResumeWindow: 10 * time.Second}
	alice, err := net.NewManager(aliceID, cfg)
	if err != nil {
		panic(err)
	}
	defer alice.Close()
	bob, err := net.NewManager(bobID, cfg)
	if err != nil {
		panic(err)
	}
	defer bob.Close()
	events, cancel := alice.Subscribe()
	defer cancel()

	c, err := alice.Connect(ctx, bobID)
	if err != nil {
		panic(err)
	}
	in, err := bob.Accept(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println((<-events).Kind)

	net.Partition(aliceID, bobID)
	fmt.Println((<-events).Kind, c.IsAlive())
	if err := c.Send(ctx, []byte("across the cut")); err != nil {
		panic(err)
	}

	net.Heal(aliceID, bobID)
	fmt.Println((<-events).Kind)
	msg, err := in.Next(ctx)
	if err != nil {
		panic(err)
	}
	same, _ := alice.GetConnection(bobID)
	fmt.Printf("bob got %q; same connection: %v\n", msg, same == c)
	// Output:
	// connected
	// resuming true
	// resumed
	// bob got "across the cut"; same connection: true
}
