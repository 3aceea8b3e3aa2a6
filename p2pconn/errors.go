package p2pconn

import (
	"errors"
	"fmt"
	"io"

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
