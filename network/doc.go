// Package network is the layer a skip-graph node plugs into: named channels,
// one processor per channel, conduits that send on a channel, and
// request/reply across nodes, on any p2pconn.ConnectionManager (the libp2p
// Manager, or memnet's in-memory one for unit tests). Its names and call
// shapes follow skipgraph-go's Network, Conduit and MessageProcessor.
//
// A Network reads every connection of its manager exactly once, whoever
// opened it, and hands each message to the processor of its channel: one
// sender's messages on a channel one at a time and in order, different
// senders and channels side by side. A message to this node's own
// Identifier is delivered locally.
//
// Flow control is per sender and channel: each node grants a peer
// Config.Window messages per channel, and a peer with that many queued waits
// in Send (up to its ctx) until the processor takes some, while the
// connection keeps being read for the other channels. A sender whose Sends
// wait while the processor runs out of messages gets a larger window,
// doubled each time up to Config.WindowLimit, so that many concurrent Sends
// do not wait for room to travel back. Replies never wait
// behind processors, so a processor may Send, Request and Reply from inside
// ProcessIncomingMessage, and a chain of nested Requests across nodes works.
//
// A Request carries a CallRef: the origin node and a random ID. The call may
// travel on, with Forward or inside payloads (CallRef has a 40-byte binary
// form), and whichever node finds the answer replies to the origin directly
// with Reply. A node asked on a channel it has no processor for says so on
// the wire, so the Request fails at once with ErrNoProcessor; a Network that
// closes tells its peers, whose Sends then fail at once with
// ErrRemoteClosed. PROTOCOL.md ("Network envelope") gives the bytes.
//
// A node, as a test would write it on memnet (package node builds one on
// libp2p in one call):
//
//	net := memnet.NewNetwork()
//	m, err := net.NewManager(id, p2pconn.Config{})
//	if err != nil { ... }
//	n, err := network.New(m, network.Config{})
//	if err != nil { ... }
//	defer m.Close()
//	defer n.Close() // first the Network, then its manager
//
//	search := n.Conduit("search")
//	_, err = n.Register("search", network.ProcessorFunc(func(ctx context.Context, msg network.Message) {
//		if next, ok := closer(msg.Payload); ok {
//			_ = search.Forward(ctx, next, msg.Call, msg.Payload) // the call travels on
//			return
//		}
//		_ = search.Reply(ctx, msg.Call, []byte("found here")) // straight to the origin
//	}))
//
//	answer, err := search.Request(ctx, neighbour, key) // answer.From: the node that found it
//
// Typed helpers (Handle, Send, Call, Reply, Serve) encode and decode values
// with a Codec: Raw for bytes, Proto for protocol buffer messages. WithDefaults
// gives a conduit default ConnectOptions and a timeout, so that routing can
// fail fast without repeating them at every call.
//
// The Network logs through go-log's subsystem "skipwire/network" and, given
// Config.Metrics, exports Prometheus metrics (metrics.go).
package network
