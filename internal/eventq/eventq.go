// Package eventq fans events out to subscribers without ever making the
// publisher wait: each subscription queues what its reader has not taken yet
// and hands it over on a channel from a goroutine of its own. Both
// ConnectionManager implementations serve their Subscribe with it.
package eventq

import "sync"

// MaxQueued bounds the events one subscription holds for a reader that falls
// behind; past it the oldest are dropped.
const MaxQueued = 1 << 14

// Hub publishes events of type E to its subscriptions. The zero value is
// ready to use. Every method is safe for concurrent use.
type Hub[E any] struct {
	// OnDrop, if set, is called each time a subscription drops its oldest
	// event, with the hub's lock held: it must not call the hub. Set it
	// before the first Publish.
	OnDrop func()

	mu     sync.Mutex
	subs   map[*subscription[E]]struct{}
	closed bool
	wg     sync.WaitGroup // the forwarding goroutines
}

// subscription queues events for one subscriber.
type subscription[E any] struct {
	mu   sync.Mutex
	q    []E
	wake chan struct{}
	out  chan E
	done chan struct{}
	once sync.Once
}

// Subscribe returns a channel of the events published from now on, in the
// order they were published, and a function that ends the subscription and
// closes the channel. cancel is idempotent. After Close, Subscribe returns a
// closed channel.
func (h *Hub[E]) Subscribe() (events <-chan E, cancel func()) {
	s := &subscription[E]{wake: make(chan struct{}, 1), out: make(chan E), done: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(s.out)
		return s.out, func() {}
	}
	if h.subs == nil {
		h.subs = make(map[*subscription[E]]struct{})
	}
	h.subs[s] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		s.forward()
	}()
	return s.out, func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
		s.stop()
	}
}

// Publish queues ev for every subscription. It never blocks on a reader.
func (h *Hub[E]) Publish(ev E) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.push(ev) && h.OnDrop != nil {
			h.OnDrop()
		}
	}
}

// Close ends every subscription, for good, and returns once their
// goroutines have exited. Events queued and not yet taken are discarded.
// Later Publish calls do nothing. Close is idempotent.
func (h *Hub[E]) Close() {
	h.mu.Lock()
	subs := h.subs
	h.subs = nil
	h.closed = true
	h.mu.Unlock()
	for s := range subs {
		s.stop()
	}
	h.wg.Wait()
}

func (s *subscription[E]) stop() { s.once.Do(func() { close(s.done) }) }

// push queues ev and reports whether the oldest event was dropped for it.
func (s *subscription[E]) push(ev E) (dropped bool) {
	s.mu.Lock()
	if len(s.q) >= MaxQueued {
		var zero E
		s.q[0] = zero
		s.q = s.q[1:]
		dropped = true
	}
	s.q = append(s.q, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return dropped
}

// forward hands the queued events to the reader until the subscription ends.
func (s *subscription[E]) forward() {
	defer close(s.out)
	var zero E
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
		s.q[0] = zero
		s.q = s.q[1:]
		s.mu.Unlock()
		select {
		case s.out <- ev:
		case <-s.done:
			return
		}
	}
}
