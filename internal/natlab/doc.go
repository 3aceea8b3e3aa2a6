// Package natlab is a NAT lab in Linux network namespaces: a relay on a
// bridge that plays the internet, two private networks behind routers that
// masquerade (nftables), and a skipwire node in each network, every node
// and relay a process of its own in its own namespace. A node behind one
// NAT connects to the node behind the other by Identifier through the
// relay (p2pconn.NATHostOptions, p2pconn.RelayHostOptions), exchanges
// numbered messages, and watches hole punching (DCUtR) open a direct
// connection, or fail through symmetric NATs. It serves the NAT tests
// (package integration) and the NAT demo (examples/natdemo).
//
// A program or test binary that runs the lab passes Roles to
// testkit.ChildMain first, then:
//
//	if err := natlab.Unavailable(); err != nil {
//		// skip: not root, no ip or nft, or no namespaces here
//	}
//	lab, err := natlab.New()
//	if err != nil {
//		return err
//	}
//	defer lab.Close()
//	for _, sc := range natlab.Scenarios() {
//		res, err := lab.Run(ctx, sc)
//		// err: a node failed; res.Problems(sc): what the figures miss
//	}
//
// It needs root, iproute2 and nftables, and leaves nothing behind: Close
// stops the relays and deletes the namespaces, which removes their
// interfaces and rules; the host's own network is never touched.
package natlab
