package network

import (
	"sync"

	"github.com/skipwire/skipwire/identity"
)

// registration is one channel's processor and its queues: one FIFO per
// sender. A goroutine drains a sender's queue while it has messages, so the
// processor sees one sender's messages one at a time and in order, while
// different senders' messages are processed side by side. A queue never
// holds more than Config.Window messages: senders need a credit (a local
// room, for messages to self) for each.
type registration struct {
	n  *Network
	ch Channel
	p  MessageProcessor

	mu     sync.Mutex
	queues map[identity.Identifier]*senderQueue
}

type senderQueue struct {
	items   []item
	running bool // a goroutine drains the queue
}

// item is a queued message and where to give its room back once processed.
type item struct {
	m      Message
	link   *link  // nil for a message to self
	remote uint64 // the remote's epoch when it was received
}

// push queues it and starts draining the sender's queue if no worker does.
func (r *registration) push(it item) {
	r.mu.Lock()
	q := r.queues[it.m.From]
	if q == nil {
		q = &senderQueue{}
		r.queues[it.m.From] = q
	}
	q.items = append(q.items, it)
	start := !q.running
	q.running = true
	r.mu.Unlock()
	r.n.metrics.queuedAdd(r.ch, 1)
	if start {
		r.n.spawn(func() { r.drain(it.m.From, q) })
	}
}

// drain hands q's messages to the processor until q is empty or the Network
// closes; then what is left is dropped.
func (r *registration) drain(from identity.Identifier, q *senderQueue) {
	for {
		r.mu.Lock()
		if len(q.items) == 0 || r.n.ctx.Err() != nil {
			dropped := len(q.items)
			q.items = nil
			q.running = false
			delete(r.queues, from)
			r.mu.Unlock()
			r.n.metrics.queuedAdd(r.ch, -dropped)
			return
		}
		it := q.items[0]
		q.items[0] = item{}
		q.items = q.items[1:]
		r.mu.Unlock()
		r.n.metrics.queuedAdd(r.ch, -1)
		r.p.ProcessIncomingMessage(r.n.ctx, it.m)
		r.n.consumed(r.ch, it)
	}
}
