// Package benchkit holds what skipwire's benchmarks share: the loopback
// nodes they run on, the links they measure (a skipwire connection, the same
// framing on a raw libp2p stream, alone or with a combining writer, and the
// seed design's plain TCP), the throughput and round-trip loops, the network
// layer's loads (Nets: one-way, Request/Reply, fan-in), system call counting
// and the memory measurement of idle connections.
//
// The go test benchmarks of p2pconn and the examples/bench program both
// build on it, so that their figures come from the same code:
//
//	nodes, err := benchkit.NewNodes(2, benchkit.NodeConfig{TCP: true}, resolver.NewStatic())
//	...
//	l, _, err := benchkit.OpenRaw(ctx, nodes[0], nodes[1])
//	...
//	res, err := benchkit.Throughput(l, 128, 1, 10_000, nil)
//
// It is internal: its API follows what the benchmarks need.
package benchkit
