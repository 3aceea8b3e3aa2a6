// Package memnet is an in-memory implementation of the p2pconn contract, for
// unit tests of code built on skipwire: no sockets, no libp2p hosts, no
// goroutines but one per event subscription (and one per manager with
// Config.IdleTimeout), and deterministic failures.
//
// A Network stands for the wire. Each node joins it with NewManager under an
// Identifier of its choosing and gets a *Manager, which implements
// p2pconn.ConnectionManager with every semantic of the libp2p implementation
// that makes sense without a network: one connection per pair of nodes,
// inbound connections queued for Accept, MaxConnections, MaxMessageSize
// checked against the smaller of both sides, a bounded receive queue per
// connection (Config.ReceiveBuffer) that pushes back on Send, clean close
// told apart from loss and from a node that left (p2pconn.ErrPeerLeft, when
// the remote's manager closes), and the connection policy: Protect, Probe,
// Config.IdleTimeout, Config.EvictAtLimit and Config.UnreachableFor. Connect
// needs no resolver: the Network knows every node, and an Identifier that no
// node uses fails with an error wrapping resolver.ErrNotFound.
//
// Faults are injected through the Network, in the style of hashicorp/raft's
// InmemTransport and memberlist's MockNetwork:
//
//   - Partition(a, b) cuts the link: the connection between a and b is lost on
//     both sides (errors match p2pconn.ErrConnectionLost) and new Connects
//     between them fail with an error wrapping ErrUnreachable until Heal(a, b);
//     after such a failure, Connects within Config.UnreachableFor fail at once
//     with a *p2pconn.UnreachableError, until Heal;
//   - Crash(id) makes a node vanish without a clean close: its peers see
//     p2pconn.ErrConnectionLost and its manager is closed. A new manager may
//     then join under the same Identifier, as a restarted process would.
//
// A worked example, as a test would write it:
//
//	net := memnet.NewNetwork()
//	alice, err := net.NewManager(aliceID, p2pconn.Config{})
//	if err != nil { ... }
//	defer alice.Close()
//	bob, err := net.NewManager(bobID, p2pconn.Config{})
//	if err != nil { ... }
//	defer bob.Close()
//
//	c, err := alice.Connect(ctx, bobID)     // same contract as the libp2p Manager
//	err = c.Send(ctx, []byte("hello"))
//	in, err := bob.Accept(ctx)              // the connection alice opened
//	msg, err := in.Next(ctx)                // "hello"
//
//	net.Partition(aliceID, bobID)           // both sides: ErrConnectionLost
//	_, err = alice.Connect(ctx, bobID)      // errors.Is(err, memnet.ErrUnreachable)
//	_, err = alice.Connect(ctx, bobID)      // at once: errors.Is(err, p2pconn.ErrUnreachable)
//	net.Heal(aliceID, bobID)                // Connect works again
//
// Where the libp2p implementation has timing of its own (keepalive,
// ConnectTimeout), memnet acts at once: a connection attempt succeeds or fails
// immediately. The waits are a Connect's retries across a partition (as many
// as Config.RetryAttempts or WithRetryAttempts say, spaced by
// Config.RetryBackoff, so a Heal meanwhile lets it succeed), Close, which
// gives a Send blocked on a full remote queue up to Config.CloseTimeout to
// complete before failing it, and idle closing, which happens IdleTimeout
// after the last message a connection carried.
//
// Idle closing and eviction lose nothing: the closing side sends no more but
// its Next still returns every message the remote had sent, and the remote
// sees a clean remote close, as with the libp2p Manager's close exchange. In
// memory this is simple, since a message is delivered by copying it into the
// receiver's queue.
package memnet
