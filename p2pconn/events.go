package p2pconn

import (
	"sync"

	"github.com/skipwire/skipwire/identity"
)

// EventKind says what happened to a connection.
type EventKind int

const (
	// EventConnected: a connection was established, by either side.
	EventConnected EventKind = iota + 1
	// EventDisconnected: a connection died; Event.Err says why.
	EventDisconnected
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
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
	// Err is nil for EventConnected. For EventDisconnected it says why: it
	// matches ErrConnectionClosed, and ErrConnectionLost for a loss.
	Err error
}

// testHookSubscribed, if set, runs in Subscribe once the subscription is
// registered, before Subscribe returns.
var testHookSubscribed func()

// maxQueuedEvents bounds the events a subscription holds for a reader that
// falls behind; past it the oldest are dropped.
const maxQueuedEvents = 1 << 14

// subscription queues events for one subscriber, so that publishing never
// blocks the network.
type subscription struct {
	mu   sync.Mutex
	q    []Event
	wake chan struct{}
	out  chan Event
	done chan struct{}
	once sync.Once
}

// Subscribe returns a channel of connection events, in the order they
// happened for each connection, and a function that ends the subscription and
// closes the channel. Events queue for a reader that falls behind (up to
// 16384, then the oldest are dropped); the network never waits for a
// subscriber. Manager.Close ends every subscription.
func (m *Manager) Subscribe() (events <-chan Event, cancel func()) {
	s := &subscription{wake: make(chan struct{}, 1), out: make(chan Event), done: make(chan struct{})}
	m.subsMu.Lock()
	if m.subsClosed {
		m.subsMu.Unlock()
		close(s.out)
		return s.out, func() {}
	}
	m.subs[s] = struct{}{}
	// Counted in the manager's goroutines under subsMu: Close ends the
	// subscriptions under subsMu before it waits for those goroutines, so it
	// waits for this one too.
	m.goroutine(s.forward)
	m.subsMu.Unlock()
	if testHookSubscribed != nil {
		testHookSubscribed()
	}
	return s.out, func() {
		m.subsMu.Lock()
		delete(m.subs, s)
		m.subsMu.Unlock()
		s.stop()
	}
}

func (s *subscription) stop() { s.once.Do(func() { close(s.done) }) }

func (s *subscription) push(ev Event) {
	s.mu.Lock()
	if len(s.q) >= maxQueuedEvents {
		s.q = s.q[1:]
		log.Warnw("event subscriber falls behind: dropping the oldest event")
	}
	s.q = append(s.q, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) forward() {
	defer close(s.out)
	for {
		s.mu.Lock()
		if len(s.q) == 0 {
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		ev := s.q[0]
		s.q[0] = Event{}
		s.q = s.q[1:]
		s.mu.Unlock()
		select {
		case s.out <- ev:
		case <-s.done:
			return
		}
	}
}

// publish hands ev to every subscriber without blocking.
func (m *Manager) publish(ev Event) {
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	for s := range m.subs {
		s.push(ev)
	}
}

// closeSubscriptions ends every subscription, for good.
func (m *Manager) closeSubscriptions() {
	m.subsMu.Lock()
	subs := m.subs
	m.subs = nil
	m.subsClosed = true
	m.subsMu.Unlock()
	for s := range subs {
		s.stop()
	}
}
