// Package memnet is an in-memory implementation of the p2pconn contract, for
// unit tests of code built on skipwire: no sockets, no libp2p hosts, no
// goroutines but one per event subscription (and one per manager with
// Config.IdleTimeout, and a timer per session that resumes), and
// deterministic failures.
//
// A Network stands for the wire. Each node joins it with NewManager under an
// Identifier of its choosing and gets a *Manager, which implements
// p2pconn.ConnectionManager with every semantic of the libp2p implementation
// that makes sense without a network: one connection per pair of nodes,
// inbound connections queued for Accept, MaxConnections, MaxMessageSize
// checked against the smaller of both sides, a bounded receive queue per
// connection (Config.ReceiveBuffer) that pushes back on Send, clean close
// told apart from loss and from a node that left (p2pconn.ErrPeerLeft, when
// the remote's manager closes), the connection policy: Protect, Probe,
// Config.IdleTimeout, Config.EvictAtLimit and Config.UnreachableFor, and
// session resumption (Config.ResumeWindow, Config.ResendBuffer). Connect
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
// With session resumption (the default, Config.ResumeWindow; none when
// either side's is negative), a loss is transient, as with the libp2p Manager: after a Partition,
// or a Crash that the survivor cannot tell from one, the connection goes on
// while its session resumes (p2pconn.EventResuming): it stays alive and
// counted, Send commits to a resend buffer (pushing back at
// Config.ResendBuffer), Next returns what had arrived, then waits. A message
// is acknowledged once it is in the receiver's queue: the messages there when
// the link went down are delivered; those committed afterwards are the ones
// resent, or reported. The manager "reconnects" as soon as the pair can talk:
// at Heal, when a new manager joins under the remote's Identifier, or at a
// Connect. If both sides still hold the session, the same Conns go on
// (p2pconn.EventResumed) and every message whose Send returned nil arrives
// exactly once, in order. If the window passes, the remote restarted, or the
// remote no longer holds the session (it was closed, or it does not resume),
// the connection ends with a *p2pconn.NotDeliveredError listing exactly the
// messages the remote never got (Conn says it all). With a negative
// ResumeWindow, a Partition ends the connection at once: a message is in the
// remote's queue once Send returns, so a loss never leaves one undelivered.
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
// and with resumption:
//
//	cfg := p2pconn.Config{ResumeWindow: 10 * time.Second}
//	// alice and bob join with cfg; c is alice's connection to bob
//	net.Partition(aliceID, bobID)           // both sides: EventResuming; c.IsAlive()
//	err = c.Send(ctx, []byte("later"))      // nil: in the resend buffer
//	net.Heal(aliceID, bobID)                // EventResumed: bob's Next returns "later"
//
// Where the libp2p implementation has timing of its own (keepalive,
// ConnectTimeout), memnet acts at once: a connection attempt succeeds or fails
// immediately. The waits are a Connect's retries across a partition (as many
// as Config.RetryAttempts or WithRetryAttempts say, spaced by
// Config.RetryBackoff, so a Heal meanwhile lets it succeed), Close, which
// gives a Send blocked on a full remote queue up to Config.CloseTimeout to
// complete before failing it, idle closing, which happens IdleTimeout after
// the last message a connection carried, and a session that resumes, which
// ends ResumeWindow after the loss if the pair cannot talk by then.
//
// Idle closing and eviction lose nothing: the closing side sends no more but
// its Next still returns every message the remote had sent, and the remote
// sees a clean remote close, as with the libp2p Manager's close exchange. In
// memory this is simple, since a message is delivered by copying it into the
// receiver's queue.
package memnet
