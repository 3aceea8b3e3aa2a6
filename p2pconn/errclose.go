package p2pconn

import (
	"errors"
	"fmt"

	"github.com/skipwire/skipwire/identity"
)

// closeError says why a connection died. It matches ErrConnectionClosed (and so
// io.EOF), ErrConnectionLost for a loss, and the cause.
type closeError struct {
	peer   identity.Identifier
	reason string
	lost   bool
	left   bool // the remote node left: its manager closed
	// delivers: the remote closed for policy (idle, eviction) and reads
	// what this side sent until this side's half-close.
	delivers bool
	local    bool // this side closed the connection
	cause    error
}

func (e *closeError) Error() string {
	kind := "closed"
	if e.lost {
		kind = "lost"
	}
	if e.cause != nil {
		return fmt.Sprintf("connection to %s %s: %s: %v", e.peer.Short(), kind, e.reason, e.cause)
	}
	return fmt.Sprintf("connection to %s %s: %s", e.peer.Short(), kind, e.reason)
}

// Unwrap returns the sentinel and the cause.
func (e *closeError) Unwrap() []error {
	sentinel := ErrConnectionClosed
	switch {
	case e.lost:
		sentinel = ErrConnectionLost
	case e.left:
		sentinel = ErrPeerLeft
	}
	if e.cause == nil {
		return []error{sentinel}
	}
	return []error{sentinel, e.cause}
}

// errLocalClose is the reason of a connection closed by this side.
func errLocalClose(id identity.Identifier) error {
	return &closeError{peer: id, reason: "closed locally", local: true}
}

// IsLost reports whether err says a connection was lost rather than closed.
func isLost(err error) bool {
	return errors.Is(err, ErrConnectionLost)
}
