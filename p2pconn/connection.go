package p2pconn

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/skipwire/skipwire/identity"
)

// ProtocolID is the libp2p protocol of the skipwire stream. PROTOCOL.md
// describes its bytes.
const ProtocolID protocol.ID = "/skipgraph/conn/1.0.0"

// Connection is a message channel to one remote node, shared by both nodes
// whoever opened it. Every method is safe for concurrent use.
//
// A Connection is alive from the moment it is handed out until it is closed by
// either side or lost; once dead it stays dead, and the next
// ConnectionManager.Connect to the same peer makes a new one.
//
// With session resumption (on by default: Config.ResumeWindow, both sides
// of this version), a lost stream is not the end: while the session resumes the
// Connection stays alive (IsAlive true, Done open, Err nil) and is still
// the peer's connection (GetConnection returns it, ConnectionCount counts
// it, it holds its slot of MaxConnections, idle closing and eviction skip
// it); Send commits to the resend buffer and returns nil, waiting (up to
// its ctx) once ResendBuffer bytes wait for acknowledgement; Next returns
// what had arrived, then waits. The manager publishes EventResuming at
// once, reconnects, and EventResumed when a new stream carries the
// session: every message whose Send returned nil then arrives exactly
// once, in order. If the peers do not reconnect within the window, or the
// peer's process restarted, the Connection dies with a *NotDeliveredError
// naming the messages the remote never received. A Connect to a peer whose
// session resumes reconnects at once and returns the same Connection once
// it resumed.
// Deliverer is implemented by connections that can hand their messages to
// a function instead of queueing them for Next, which saves a goroutine
// hand-off per message and a reading goroutine per connection. Package
// network uses it when a connection offers it, as the libp2p Manager's do.
type Deliverer interface {
	// Deliver hands every message not yet taken by Next to handle, in
	// order: first those already queued, on the caller's goroutine before
	// Deliver returns, then each as it arrives, on the goroutine that
	// reads the connection. handle must return promptly and must not call
	// Deliver: the connection is not read meanwhile, and ReceiveBuffer no
	// longer pushes back on the remote (the handler bounds what it keeps).
	// Once the connection has ended and every message was handed over,
	// ended is called once with the error Next would have returned (at
	// once, from Deliver, if that is so already). Next must not be called
	// while messages are delivered. Deliver(nil, nil) stops delivering:
	// once it returns, handle is not called again and later messages wait
	// for Next (or another Deliver). handle and ended are both nil or both
	// set.
	Deliver(handle func(msg []byte), ended func(err error))
}

type Connection interface {
	// RemoteAddr returns the multiaddr of the remote end, or "" once the
	// connection is dead. It does not block.
	RemoteAddr() string

	// RemoteID returns the authenticated Identifier of the remote node. It does
	// not block and keeps working after Close.
	RemoteID() identity.Identifier

	// Send sends msg as one message. It has two outcomes. nil: the message
	// is committed; skipwire writes it whole and promptly by itself, and
	// while both processes run and the connection is not lost it reaches the
	// remote's Next exactly once and in order (also when this side then
	// closes gracefully, and when the remote reads slowly). An error: nothing
	// of the message was or will ever be sent, so retrying cannot duplicate
	// it.
	//
	// Send blocks until its message is written to the stream, ctx ends or the
	// connection dies. ctx bounds the wait to commit: if it ends while the
	// message is still queued behind other senders, or before its write
	// began, Send fails with ctx's error. A message whose write has begun, or
	// that was taken into a write with concurrent senders' messages, is
	// committed: if ctx ends then, Send returns nil and the connection
	// finishes the frame by itself (a frame is never cut).
	//
	// msg may be empty; it may be reused once Send returns. Messages from one
	// goroutine arrive in order. A message larger than the smaller of both
	// sides' MaxMessageSize fails with ErrMessageTooLarge and leaves the
	// connection alive, and so does one that would take a connection over a
	// circuit relay past the relay's limits (ErrRelayLimit). On a dead
	// connection Send fails at once with an error matching
	// ErrConnectionClosed.
	Send(ctx context.Context, msg []byte) error

	// Next blocks until the next message arrives, ctx ends or the connection
	// dies. A Next cancelled by ctx loses nothing: the following Next returns
	// the message. When the remote closed the connection, Next still returns
	// every message sent before the close, then an error matching io.EOF and
	// ErrConnectionClosed; when the connection was lost, the error also matches
	// ErrConnectionLost. After a local Close it fails at once with
	// ErrConnectionClosed and unread messages are discarded.
	//
	// Each message comes in a slice of its own (never nil, also for an
	// empty message) that belongs to the caller: the connection never reads
	// or writes it again, so it may be kept, modified or reused.
	Next(ctx context.Context) ([]byte, error)

	// IsAlive reports whether the connection can still send. It does not block.
	IsAlive() bool

	// Done returns a channel that is closed when the connection dies, for any
	// reason: local or remote close, or loss. Messages received before may
	// still be read with Next.
	Done() <-chan struct{}

	// Err returns nil while the connection is alive, then why it died: an error
	// matching ErrConnectionClosed, and ErrConnectionLost too for a loss, that
	// wraps the cause and names the peer.
	Err() error

	// Close flushes what Send has committed, half-closes the stream so the
	// remote reads every message and then io.EOF, and releases the stream
	// once the remote answers with its own half-close (or CloseTimeout
	// later). It waits at most CloseTimeout for a Send in progress; a Send
	// whose message is not committed by then fails. Committed messages the
	// remote has not read yet are never dropped by a reset: they are written
	// in the background while the remote keeps reading (it must read
	// something at least every KeepaliveInterval + KeepaliveTimeout) and then
	// the stream is half-closed. Close is idempotent and safe to call from any
	// goroutine; after it returns, Send and Next fail at once.
	//
	// Close returns nil once the half-close is out, or once committed
	// messages are being written to a slow remote in the background (if
	// that fails, the stream is reset and the remote sees a loss); an error
	// matching ErrConnectionLost if writing the half-close failed (the stream
	// is then reset); nil on later calls, and on a connection that had
	// already ended.
	Close() error
}

// ConnectionManager keeps at most one Connection per remote node, opened by
// either side, and hands it out by Identifier. Every method is safe for
// concurrent use.
type ConnectionManager interface {
	// ID returns this node's Identifier. It does not block.
	ID() identity.Identifier

	// Connect returns the live connection to id, opening one if there is none.
	// A cached connection is returned without blocking, whatever opts say.
	// Opening resolves id, dials and completes the skipwire handshake, each
	// attempt bounded by ctx and ConnectTimeout, with RetryAttempts retries
	// for failures that may pass; both come from the Config unless opts
	// override them for this call (WithRetryAttempts, WithConnectTimeout).
	//
	// Concurrent Connects to one peer share one attempt, run with the most
	// retries and the longest timeout among them; each call still stops
	// waiting on its own budget: it counts every failed attempt of the shared
	// dial (those before it joined included), and the attempt under way as
	// failed once it has run for the call's ConnectTimeout, and gives up
	// after its RetryAttempts+1 failed attempts while the dial goes on for the
	// others. So a call with WithRetryAttempts(0) returns at the first failure.
	Connect(ctx context.Context, id identity.Identifier, opts ...ConnectOption) (Connection, error)

	// Accept blocks until a remote node opens a connection, ctx ends or the
	// manager closes, and returns each such connection once. A connection
	// stays queued even if it dies before it is accepted, so its buffered
	// messages are not lost.
	Accept(ctx context.Context) (Connection, error)

	// GetConnection returns the live connection to id, if any. It does not block.
	GetConnection(id identity.Identifier) (Connection, bool)

	// Disconnect closes the connection to id gracefully, as Connection.Close
	// does. Disconnecting a peer without a connection returns nil.
	//
	// Disconnect may block up to ConnectTimeout: while a handshake with id
	// is in progress (the remote's Connect may have returned before this
	// side has settled), the libp2p Manager waits for it to settle, then
	// closes the connection it yields; if it fails, none settles in time,
	// or the manager closes, it returns nil and closes nothing. Closing the
	// connection then takes what Connection.Close takes.
	Disconnect(id identity.Identifier) error

	// CloseAll closes every connection gracefully, in parallel, and returns
	// after they are closed. The manager stays usable.
	CloseAll() error

	// ConnectionCount returns the number of live connections. It does not block.
	ConnectionCount() int

	// ConnectedPeers returns the Identifiers of the live connections, in no
	// particular order. It does not block.
	ConnectedPeers() []identity.Identifier

	// Subscribe returns a channel of connection events (EventConnected,
	// EventDisconnected), by either side, in the order they happened for each
	// connection, and a function that ends the subscription and closes the
	// channel. It does not block, and the manager never waits for a slow
	// subscriber: events queue for it (up to a bound, then the oldest are
	// dropped). Close ends every subscription; after Close, Subscribe returns a
	// closed channel.
	Subscribe() (events <-chan Event, cancel func())

	// Protect keeps idle closing (Config.IdleTimeout) and eviction
	// (Config.EvictAtLimit) away from the connection to id: an overlay
	// protects its routing-table neighbours. It holds for a peer not connected
	// yet, and across reconnections and Disconnect, until Unprotect.
	// Persistent peers are protected too. It does not block.
	Protect(id identity.Identifier)
	// Unprotect undoes Protect. It does not block.
	Unprotect(id identity.Identifier)
	// Probe measures the round trip to id while a live connection exists
	// (for the libp2p Manager, libp2p's ping protocol on the libp2p
	// connection libp2p prefers to the peer: a direct one over a relayed
	// one), to tell a slow peer from a dead one before relying on it. It never dials: without a live connection it
	// fails at once with an error matching ErrConnectionClosed. A failed
	// probe does not close the connection; the health check decides that.
	Probe(ctx context.Context, id identity.Identifier) (time.Duration, error)
	// Close closes every connection as CloseAll does, then stops the manager for
	// good: later calls fail with ErrManagerClosed. It is idempotent and returns
	// after every goroutine of the manager has exited. Its peers learn that
	// this node left: their connections end with an error matching
	// ErrPeerLeft, unlike a Disconnect, CloseAll or idle close (the node is
	// still there) and a loss.
	Close() error
}
