package p2pconn

import (
	"github.com/skipwire/skipwire/identity"
)

// EventKind says what happened to a connection.
type EventKind int

const (
	// EventConnected: a connection was established, by either side.
	EventConnected EventKind = iota + 1
	// EventDisconnected: a connection died; Event.Err says why.
	EventDisconnected
	// EventResuming: a connection lost its stream and its session resumes
	// (Config.ResumeWindow); Event.Err says why it was lost. The connection
	// goes on: EventResumed follows when a new stream carries it, or
	// EventDisconnected when the session ends. An overlay that routes around
	// unreachable peers acts on this event.
	EventResuming
	// EventResumed: a resuming connection runs on a new stream; nothing
	// committed was lost.
	EventResumed
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventResuming:
		return "resuming"
	case EventResumed:
		return "resumed"
	default:
		return "unknown"
	}
}

// Event is a change in the life of a managed connection.
type Event struct {
	Kind    EventKind
	Peer    identity.Identifier
	Inbound bool       // the remote opened the connection
	Conn    Connection // the connection concerned
	// Err is nil for EventConnected and EventResumed. For EventDisconnected
	// it says why: it matches ErrConnectionClosed, and ErrConnectionLost for
	// a loss; for EventResuming, it says how the stream was lost.
	Err error
}

// Subscribe returns a channel of connection events, in the order they
// happened for each connection, and a function that ends the subscription and
// closes the channel. Events queue for a reader that falls behind (up to
// 16384, then the oldest are dropped); the network never waits for a
// subscriber. Manager.Close ends every subscription.
func (m *Manager) Subscribe() (events <-chan Event, cancel func()) {
	events, cancel = m.events.Subscribe()
	if testHookSubscribed != nil {
		testHookSubscribed()
	}
	return events, cancel
}

// testHookSubscribed, if set, runs in Subscribe once the subscription is
// registered, before Subscribe returns.
var testHookSubscribed func()

// publish hands ev to every subscriber without blocking.
func (m *Manager) publish(ev Event) { m.events.Publish(ev) }

// closeSubscriptions ends every subscription, for good.
func (m *Manager) closeSubscriptions() { m.events.Close() }

// logEventDrop warns that a subscriber falls behind.
func logEventDrop() { log.Warnw("event subscriber falls behind: dropping the oldest event") }
