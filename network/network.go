package network

import (
	"context"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Channel names a kind of message, such as "search" or "join". A node has at
// most one processor per channel; a Conduit sends on one channel to the
// processor a remote node registered for it. A name is 1 to MaxChannelLen
// bytes.
type Channel string

// MaxChannelLen is the longest Channel name, in bytes.
const MaxChannelLen = 255

// Message is what a processor receives, and what Request returns.
type Message struct {
	// Channel is the channel the message came on; for a Request's answer,
	// the channel of the conduit that replied.
	Channel Channel
	// From is the authenticated sender: the remote end of the connection the
	// message came on, or the local node for a message to self.
	From identity.Identifier
	// Payload is the message's bytes, owned by the receiver.
	Payload []byte
	// Call is non-zero when a node waits for a reply: the sender's Request
	// (then Call.Origin is From), or a Forward of someone's Request (then
	// Call.Origin is as the forwarder claims it). Zero in Request's answer.
	Call CallRef
}

// MessageProcessor handles the messages of one channel. A Network calls
// ProcessIncomingMessage for one sender's messages on the channel one at a
// time, in the order they were sent on one connection; calls for different
// senders may overlap.
//
// ctx is cancelled when the Network closes. A processor may Send, Request,
// Reply and Forward from inside ProcessIncomingMessage. While it runs, that
// sender's later messages on the channel wait (and, once the sender's window
// of them, Config.Window to begin with, are queued, the sender's Sends wait
// for room), so a processor that
// blocks on a remote node should bound the wait with a ctx deadline, or reply
// later: keep m.Call and answer with Conduit.Reply from another goroutine.
// Two processors that Request each other on one channel wait for their ctx.
type MessageProcessor interface {
	ProcessIncomingMessage(ctx context.Context, m Message)
}

// ProcessorFunc is a function used as a MessageProcessor.
type ProcessorFunc func(ctx context.Context, m Message)

// ProcessIncomingMessage calls f(ctx, m).
func (f ProcessorFunc) ProcessIncomingMessage(ctx context.Context, m Message) { f(ctx, m) }

// Conduit sends on one channel. Every method is safe for concurrent use and
// keeps no reference to payload after it returns. The opts of a call apply
// when it must open a connection (for example p2pconn.WithRetryAttempts(0)
// to fail fast while routing). After the Network closes, every method fails
// at once with an error wrapping ErrClosed.
type Conduit interface {
	// Channel returns the conduit's channel.
	Channel() Channel

	// Send sends payload to the processor of node to on this channel,
	// connecting if needed, and blocks until the message is committed to the
	// connection or ctx ends. It waits while to's Network has not yet
	// started reading the connection, and while to's queue for this sender
	// and channel is full (push back). nil means the message is on its way
	// and reaches to's processor once, as long as both nodes run and the
	// connection lives; an error means nothing was sent. A node without a
	// processor on the channel drops the message (and counts it). Send to
	// this node's own Identifier is delivered locally (From is this node);
	// it fails with ErrNoProcessor if the channel has no processor. If the
	// remote's Network has closed, Send fails at once with ErrRemoteClosed.
	Send(ctx context.Context, to identity.Identifier, payload []byte, opts ...p2pconn.ConnectOption) error

	// Request sends payload as Send does, with a fresh CallRef, and waits for
	// the first reply to it, from any node (the call may travel on with
	// Forward or inside payloads, and the node that finds the answer
	// replies). The reply has From = the replier, Payload = the answer,
	// Channel = the replying conduit's channel and a zero Call. If to has no
	// processor on the channel, Request fails at once with ErrNoProcessor.
	// With no reply it returns an error matching ctx.Err(). A Request to
	// this node's own Identifier works like Send to self.
	Request(ctx context.Context, to identity.Identifier, payload []byte, opts ...p2pconn.ConnectOption) (Message, error)

	// Reply answers call with payload, from any node: it sends to
	// call.Origin (dialing it if there is no connection), or delivers locally
	// when this node is the origin. Replies never wait behind processors. A
	// reply nobody waits for (the Request ended, or another reply came first)
	// is dropped by the origin and counted.
	Reply(ctx context.Context, call CallRef, payload []byte) error

	// Forward is a Send that carries call in the envelope: the receiver's
	// processor sees m.Call == call (Origin as this node claims it) and From
	// = this node, so every hop of a recursive search reads m.Call alike. A
	// zero call makes Forward a Send.
	Forward(ctx context.Context, to identity.Identifier, call CallRef, payload []byte, opts ...p2pconn.ConnectOption) error
}
