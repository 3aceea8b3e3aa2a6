package network

import (
	"errors"
	"fmt"
)

// ErrChannelTaken is returned, wrapped, by Register for a channel that
// already has a processor.
var ErrChannelTaken = errors.New("network: channel already has a processor")

// ErrNoProcessor is returned, wrapped, by Request when the node asked has no
// processor on the channel (said by that node), and by Send and Request to
// this node's own Identifier on a channel without a processor.
var ErrNoProcessor = errors.New("network: no processor on the channel")

// ErrRemoteClosed is returned, wrapped, by Send, Request and Forward to a
// node whose Network has closed (said by that node), until a new Network on
// that node announces itself on the connection, and by the Requests to it in
// flight at the time. It wraps ErrNoProcessor: a closed Network has no
// processor on any channel.
var ErrRemoteClosed = fmt.Errorf("network: remote network closed: %w", ErrNoProcessor)

// ErrClosed is returned, wrapped, by every call on a Network, or one of its
// conduits, after Close, and by the Requests in flight when it closed.
var ErrClosed = errors.New("network: closed")

// ErrManagerInUse is returned, wrapped, by New for a ConnectionManager that
// another Network, not yet closed, already uses.
var ErrManagerInUse = errors.New("network: connection manager already has a network")

// ErrInvalidChannel is returned, wrapped, for a Channel name that is empty or
// longer than MaxChannelLen bytes.
var ErrInvalidChannel = errors.New("network: invalid channel name")

// ErrInvalidConfig is returned, wrapped, by Config.Validate and New for a
// configuration that cannot work.
var ErrInvalidConfig = errors.New("network: invalid config")
