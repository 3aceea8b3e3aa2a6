package p2pconn

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/skipwire/skipwire/identity"

	"github.com/skipwire/skipwire/resolver"
)

// ErrConnectionClosed is returned, wrapped, by Send and Next on a connection that
// is no longer alive, whatever the cause. It wraps io.EOF, so
// errors.Is(err, io.EOF) holds for every such error.
var ErrConnectionClosed = fmt.Errorf("p2pconn: connection closed: %w", io.EOF)

// ErrConnectionLost is returned, wrapped, when a connection ended without a clean
// close by the remote: a stream reset, a framing error, a failed health check or
// the remote host vanishing. It wraps ErrConnectionClosed.
var ErrConnectionLost = fmt.Errorf("p2pconn: connection lost: %w", ErrConnectionClosed)

// ErrPeerLeft is returned, wrapped, when the remote node's manager closed: the
// node left the network, as opposed to closing this one connection
// (Disconnect, CloseAll, idle closing: the node is still there) or a loss. It
// wraps ErrConnectionClosed, so it also matches io.EOF.
var ErrPeerLeft = fmt.Errorf("p2pconn: peer left: %w", ErrConnectionClosed)

// ErrRelayLimit is returned by a Send on a connection that runs over a
// circuit relay (a limited libp2p connection) when the message would take it
// past the relay's limits, in bytes per direction or in time: nothing of the
// message is sent, and the connection stays (Next goes on). The relay ends
// the relayed connection at its limits; skipwire stops short of them, with
// a margin for what the relay counts beyond skipwire's bytes (encryption,
// the muxer, other protocols), so that no Send that returned nil is cut
// off by the relay. With session resumption the connection moves to a
// direct libp2p connection when hole punching opens one, and the limits no
// longer apply.
var ErrRelayLimit = errors.New("p2pconn: relay limit reached")

// ErrUnreachable is returned, wrapped in an *UnreachableError, by a Connect
// that failed at once because a Connect to the same peer failed within
// Config.UnreachableFor.
var ErrUnreachable = errors.New("p2pconn: peer unreachable")

// UnreachableError is the error of a Connect that failed at once because the
// peer failed recently: Cause is why the last attempt, made at LastTried,
// failed. It matches ErrUnreachable and Cause.
type UnreachableError struct {
	Peer      identity.Identifier
	LastTried time.Time
	Cause     error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("connect %s: unreachable (failed %s ago): %v", e.Peer.Short(),
		time.Since(e.LastTried).Round(time.Millisecond), e.Cause)
}

// Unwrap returns ErrUnreachable and the cause.
func (e *UnreachableError) Unwrap() []error { return []error{ErrUnreachable, e.Cause} }

// ErrNotDelivered is returned, wrapped in a *NotDeliveredError, when a
// connection ended with messages whose Send returned nil but that the remote
// never acknowledged.
var ErrNotDelivered = errors.New("p2pconn: messages not delivered")

// NotDeliveredError says which messages a connection that ended never had
// acknowledged by the remote (a message is acknowledged once it is in the
// remote's receive queue), so the application can send them again: Messages
// holds copies of them, in the order they were sent. Cause is why the
// connection ended. It matches ErrNotDelivered and Cause (ErrConnectionLost,
// ErrPeerLeft, ErrConnectionClosed...). Only connections where both sides
// acknowledge (both run this version, Config.ResumeWindow not negative)
// report it.
type NotDeliveredError struct {
	Peer     identity.Identifier
	Messages [][]byte
	Cause    error
}

func (e *NotDeliveredError) Error() string {
	return fmt.Sprintf("%v (%d messages not delivered)", e.Cause, len(e.Messages))
}

// Unwrap returns ErrNotDelivered and the cause.
func (e *NotDeliveredError) Unwrap() []error { return []error{ErrNotDelivered, e.Cause} }

// ErrRefused is returned, wrapped, by Connect when the remote node refused the
// connection, for example because it is at its MaxConnections or shutting down.
var ErrRefused = errors.New("p2pconn: connection refused by remote")

// ErrMessageTooLarge is returned, wrapped, by Send for a message larger than the
// smaller of the two sides' MaxMessageSize. The connection stays alive.
var ErrMessageTooLarge = errors.New("p2pconn: message too large")

// ErrTooManyConnections is returned, wrapped, by Connect when the manager already
// holds MaxConnections connections.
var ErrTooManyConnections = errors.New("p2pconn: too many connections")

// ErrManagerClosed is returned, wrapped, by calls on a manager after Close.
var ErrManagerClosed = errors.New("p2pconn: manager closed")

// ErrSelfConnect is returned, wrapped, by Connect to the manager's own Identifier.
var ErrSelfConnect = errors.New("p2pconn: connect to self")

// ErrPeerMismatch is returned, wrapped, by Connect when a resolver answers with a
// peer ID that is not the one the Identifier names, or when the node found at
// the resolved address proves, in libp2p's secure handshake, to hold another key.
// It is resolver.ErrPeerMismatch, so a mismatch found by a resolver (a Cache or
// a chain checks answers too) matches it as well. Connect never retries it.
var ErrPeerMismatch = resolver.ErrPeerMismatch

// ErrInvalidConfig is returned, wrapped, by Config.Validate and NewManager for a
// configuration that cannot work.
var ErrInvalidConfig = errors.New("p2pconn: invalid config")
