package network_test

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
)

// startNode joins net as id and starts a Network on it; stop closes both.
func startNode(net *memnet.Network, id identity.Identifier) (n *network.Network, stop func()) {
	m, err := net.NewManager(id, p2pconn.Config{})
	if err != nil {
		panic(err)
	}
	n, err = network.New(m, network.Config{})
	if err != nil {
		panic(err)
	}
	return n, func() { _ = n.Close(); _ = m.Close() }
}

// Two nodes: one serves the "greet" channel, the other sends it a message
// and asks it a question.
func Example() {
	ctx := context.Background()
	net := memnet.NewNetwork()
	alice, stopAlice := startNode(net, identity.Identifier{0xa1})
	defer stopAlice()
	bob, stopBob := startNode(net, identity.Identifier{0xb0})
	defer stopBob()

	done := make(chan struct{})
	greet := bob.Conduit("greet")
	_, err := bob.Register("greet", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
		if m.Call.IsZero() {
			fmt.Printf("bob got %q from %s\n", m.Payload, m.From.Short())
			close(done)
			return
		}
		_ = greet.Reply(ctx, m.Call, []byte("hello, "+string(m.Payload)))
	}))
	if err != nil {
		panic(err)
	}

	c := alice.Conduit("greet")
	if err := c.Send(ctx, bob.ID(), []byte("hi bob")); err != nil {
		panic(err)
	}
	<-done
	answer, err := c.Request(ctx, bob.ID(), []byte("alice"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("alice got %q from %s\n", answer.Payload, answer.From.Short())
	// Output:
	// bob got "hi bob" from a1000000
	// alice got "hello, alice" from b0000000
}

// Typed requests and replies: protocol buffer messages instead of bytes.
func Example_typed() {
	ctx := context.Background()
	net := memnet.NewNetwork()
	client, stopClient := startNode(net, identity.Identifier{0xc1})
	defer stopClient()
	server, stopServer := startNode(net, identity.Identifier{0x5e})
	defer stopServer()

	str := network.Proto[wrapperspb.StringValue]()
	_, err := network.Serve(server, "upper", str, str,
		func(ctx context.Context, m network.Message, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return wrapperspb.String(strings.ToUpper(req.GetValue())), nil
		})
	if err != nil {
		panic(err)
	}

	resp, err := network.Call(ctx, client.Conduit("upper"), server.ID(), wrapperspb.String("skip graph"), str, str)
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.GetValue())
	// Output:
	// SKIP GRAPH
}

// A CallRef carried inside an application's own message.
func ExampleCallRef_MarshalBinary() {
	call := network.CallRef{Origin: identity.Identifier{0xa1}, ID: 42}
	b, _ := call.MarshalBinary()
	var back network.CallRef
	if err := back.UnmarshalBinary(b); err != nil {
		panic(err)
	}
	fmt.Println(len(b), back == call)
	// Output:
	// 40 true
}
