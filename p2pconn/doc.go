// Package p2pconn gives skip-graph nodes one authenticated, message-oriented
// connection per remote node over libp2p.
//
// A node is named by its Identifier (package identity): the raw Ed25519 public
// key of its libp2p host key. A Manager, created on a libp2p host with
// NewManager, hands out a Connection per remote Identifier:
//
//   - Connect(ctx, id) returns the live connection to id, or resolves id's
//     addresses (package resolver), dials, and runs the skipwire handshake on a
//     new stream; concurrent Connects share one attempt, failures that may pass
//     are retried with jittered exponential backoff.
//   - Accept(ctx) yields each connection a remote opened, once. Connect and
//     GetConnection return those too: a connection belongs to both sides.
//   - Send and Next carry whole messages (length-prefixed frames, PROTOCOL.md),
//     in order, up to MaxMessageSize bytes.
//
// # One connection per peer
//
// Between two managers there is at most one live Connection on each side, on
// exactly one libp2p connection, even when both sides Connect at the same
// instant or another protocol (a DHT lookup) dialed first. A short handshake
// settles which stream wins on both sides before any message flows, and only
// the node with the smaller Identifier closes duplicate libp2p connections, so
// nothing sent is ever lost to the settling. PROTOCOL.md has the details.
//
// # Life and death of a connection
//
// A connection dies when either side closes it (Close, Disconnect, CloseAll,
// Manager.Close), when its stream or libp2p connection breaks, on a framing
// error, or when a health check fails: connections that received nothing for
// KeepaliveInterval are pinged with libp2p's ping protocol. Done is closed at
// death and Err says why: errors match ErrConnectionClosed (and io.EOF); a
// loss also matches ErrConnectionLost. Next still returns the messages that
// arrived before a remote close or a loss. A dead connection stays dead; the
// next Connect makes a new one. When the remote's manager closed, the node
// left, and the error also matches ErrPeerLeft: an overlay repairs its tables
// at once instead of probing.
//
// # Connection policy for overlays
//
// An overlay routes through few peers and meets many. The Config and the
// Connect options keep the connection count and the cost of dead peers
// down:
//
//   - WithRetryAttempts(0) and WithConnectTimeout let routing fail fast while
//     maintenance retries; a peer whose Connect failed is remembered for
//     UnreachableFor (1 s by default), and fail-fast Connects to it fail at
//     once with an *UnreachableError.
//   - IdleTimeout closes connections that carried nothing for a while, and
//     EvictAtLimit closes the least recently used one at MaxConnections
//     instead of refusing; both close without losing a message (PROTOCOL.md,
//     "Closing"), and both spare peers given to Protect (an overlay's
//     routing-table neighbours) and persistent peers.
//   - Probe measures the round trip to a connected peer without dialing.
//
// # Resources and limits
//
// A connection reads ahead of Next, up to ReceiveBuffer messages (and a
// stream window's worth beyond, to see a remote close). The memory of those
// messages is reserved with the host's resource manager, in the scope of
// the stream, which belongs to the service ServiceName: its limits (which
// HostOptions sizes) bound what all connections hold together, and when it
// refuses, the connection stops reading until Next frees some, so flow
// control holds the sender back. A frame's buffer grows as its bytes
// arrive, so a peer cannot make a node hold memory it did not send.
// Config.HandshakeRate and Config.MessageRate limit, per peer, the streams
// opened and the messages read per second.
//
// # Shutting a node down
//
// Stop the layers from the top: the network layer (package network, so
// processors stop), then the Manager (its Close tells every peer that this
// node left, and needs the host to do so), then the DHT, if any, then the
// host. Package network/node builds a node whose Close does exactly that:
// it is how a node leaves.
//
// # Hosts
//
// NewManager takes any libp2p host with an Ed25519 key. HostOptions returns the
// recommended libp2p options (TCP and QUIC, TLS and Noise, yamux, ping, and
// connection and resource managers sized from the Config; no relay, and no
// address discovery from what peers observe); add the identity and listen
// addresses:
//
//	key, _ := identity.LoadOrCreateKey("node.key")
//	h, _ := libp2p.New(append(p2pconn.HostOptions(cfg),
//		libp2p.Identity(key),
//		libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"))...)
//	m, _ := p2pconn.NewManager(h, resolver.NewPeerstore(h.Peerstore()), cfg)
//	defer h.Close()
//	defer m.Close() // runs first: the peers learn that this node left
//
// A node that may sit behind NAT uses NATHostOptions instead (relay v2
// client, hole punching, AutoNAT v2), and the relays it reserves a slot on
// use RelayHostOptions; a skipwire connection then runs over the relayed
// (limited) libp2p connection. It stays there when hole punching opens a
// direct connection: it does not move to the direct path yet.
//
// For unit tests that need no network, package memnet implements the same
// interfaces in memory, with partitions; package p2pconntest checks any
// implementation against the contract.
package p2pconn
