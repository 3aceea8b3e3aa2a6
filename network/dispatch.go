package network

import (
	"sync"
	"sync/atomic"

	"github.com/skipwire/skipwire/identity"
)

// registration is one channel's processor and its queues: one FIFO per
// sender. A goroutine drains a sender's queue while it has messages, so the
// processor sees one sender's messages one at a time and in order, while
// different senders' messages are processed side by side. A queue never
// holds more than the sender's window (Config.Window, more once it grew):
// senders need a credit (a local room, for messages to self) for each.
type registration struct {
	n  *Network
	ch Channel
	p  MessageProcessor

	mu     sync.Mutex
	queues map[identity.Identifier]*senderQueue

	// idle counts the times the processor ran out of messages: the last
	// sender's queue ran empty. Windows grow only for senders that wait
	// while it does (linkState.grow).
	idle atomic.Uint64
	// granted is the room granted to senders beyond Config.Window, which
	// all senders share: at most allowance.
	granted   atomic.Int64
	allowance int64
}

// room returns how much room the channel may still grant beyond Window.
func (r *registration) room() int { return int(r.allowance - r.granted.Load()) }

// take takes up to n of the room left and returns how much it took.
func (r *registration) take(n int) int {
	for {
		g := r.granted.Load()
		k := min(int64(n), r.allowance-g)
		if k <= 0 {
			return 0
		}
		if r.granted.CompareAndSwap(g, g+k) {
			return int(k)
		}
	}
}

// giveBack returns room granted to a sender that is gone.
func (r *registration) giveBack(n int) { r.granted.Add(-int64(n)) }

// senderQueue is one sender's messages for a channel, in order. A queue
// that runs dry goes back to queuePool with its arrays: a sender whose
// messages come in bursts would otherwise grow a new array, item by item,
// for each burst.
type senderQueue struct {
	items   []item
	spare   []item // the array of the batch drained last, for reuse
	running bool   // a goroutine drains the queue
}

var queuePool = sync.Pool{New: func() any { return new(senderQueue) }}

// maxKeptItems bounds the arrays a drained queue keeps for reuse.
const maxKeptItems = 4096

// recycle empties q and puts it back in queuePool.
func (q *senderQueue) recycle() {
	q.items, q.spare = emptied(q.items), emptied(q.spare)
	q.running = false
	queuePool.Put(q)
}

// emptied returns a, emptied and cleared, or nil if its array is too large
// to keep. Past len(a) the array is clear already: drain clears each batch
// whole, and push appends only up to len.
func emptied(a []item) []item {
	if cap(a) > maxKeptItems {
		return nil
	}
	clear(a)
	return a[:0]
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
		q = queuePool.Get().(*senderQueue)
		r.queues[it.m.From] = q
	}
	q.items = append(q.items, it)
	start := !q.running
	q.running = true
	r.mu.Unlock()
	r.n.metrics.queuedAdd(r.ch, 1)
	if start {
		from := it.m.From // not it: an idle worker keeps its last task, and the payload with it
		r.n.spawn(func() { r.drain(from, q) })
	}
}

// drain hands q's messages to the processor until q is empty or the Network
// closes; then what is left is dropped. It takes the queued messages in
// batches, so that the lock and the queue's array are not taken per message.
func (r *registration) drain(from identity.Identifier, q *senderQueue) {
	var batch []item
	for {
		r.mu.Lock()
		if batch != nil {
			clear(batch)
			q.spare = batch[:0]
		}
		if len(q.items) == 0 || r.n.ctx.Err() != nil {
			dropped := len(q.items)
			delete(r.queues, from)
			if len(r.queues) == 0 {
				r.idle.Add(1)
			}
			r.mu.Unlock()
			q.recycle() // no one else holds q now
			r.n.metrics.queuedAdd(r.ch, -dropped)
			return
		}
		batch, q.items, q.spare = q.items, q.spare, nil
		r.mu.Unlock()
		for i, it := range batch {
			if r.n.ctx.Err() != nil {
				r.n.metrics.queuedAdd(r.ch, -(len(batch) - i))
				break
			}
			r.n.metrics.queuedAdd(r.ch, -1)
			r.p.ProcessIncomingMessage(r.n.ctx, it.m)
			r.n.consumed(r.ch, it)
		}
	}
}
