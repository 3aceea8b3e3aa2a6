package sg_test

import (
	"context"
	"fmt"
	"time"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
)

// A skip graph of four nodes on memnet: the first starts it, the others
// join through it, and a search from the last finds the node with the
// greatest key <= the target.
func ExampleNode_Search() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := memnet.NewNetwork()
	var nodes []*sg.Node
	for _, key := range []sg.Key{10, 40, 20, 30} {
		k, _ := identity.GenerateKey()
		id, _ := identity.FromPublicKey(k.GetPublic())
		m, _ := net.NewManager(id, p2pconn.Config{})
		n, _ := network.New(m, network.Config{})
		node, _ := sg.New(n, sg.Config{Key: key})
		defer func() {
			node.Close()
			n.Close()
			m.Close()
		}()
		var introducer identity.Identifier // zero: the first node starts the skip graph
		if len(nodes) > 0 {
			introducer = nodes[0].Self().ID
		}
		if err := node.Join(ctx, introducer); err != nil {
			fmt.Println(err)
			return
		}
		nodes = append(nodes, node)
	}

	for _, target := range []sg.Key{25, 40, 5} {
		r, err := nodes[3].Search(ctx, target)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("search %d: node %d\n", target, r.Node.Key)
	}
	// Output:
	// search 25: node 20
	// search 40: node 40
	// search 5: node 10
}
