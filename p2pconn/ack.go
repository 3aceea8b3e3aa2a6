package p2pconn

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/multiformats/go-varint"

	"github.com/skipwire/skipwire/internal/session"
)

// Acknowledgements (capAck; PROTOCOL.md, "Acknowledgements").
//
// The delivery state of both directions is internal/session's: an Out for
// the messages this side sends, kept until acknowledged, and an In deciding
// when to acknowledge what arrives. The connection only carries their
// decisions out: a Send waits for room in the Out, the writer that commits
// messages adds them to the Out in wire order, the reader feeds the In and
// hands the Out the remote's ACKs, and ACK frames ride at the head of the
// next write, or go out by themselves.

// ackState is a connection's acknowledgement state.
type ackState struct {
	mu       sync.Mutex
	out      *session.Out
	in       *session.In
	reserved int           // cost of Sends that passed the room check and are not committed or failed yet
	room     chan struct{} // closed and replaced when acks free room, if a Send waits
	waiting  int           // Sends waiting for room
	timer    *time.Timer   // fires when an ACK becomes due by delay
	armed    bool          // timer is set
	stopped  bool          // stop was called: the timer is never set again
	// wg counts an armed timer as one of the manager's goroutines, so that
	// Manager.Close never waits while a timer may still start one.
	wg *sync.WaitGroup

	ended bool // the connection ended: nothing more is committed; guarded by mu

	// For round; guarded by mu.
	added   bool // messages were committed since the last round
	trimmed bool // the resend buffer holds no memory for reuse

	writing atomic.Bool // a goroutine writes an ACK frame
}

func newAckState(limit int, remoteLimit uint64, wg *sync.WaitGroup) *ackState {
	p := session.DefaultAckPolicy()
	if remoteLimit > 0 && remoteLimit <= uint64(MaxMessageSizeLimit)*4 {
		p.RemoteLimit = int(remoteLimit)
	}
	return &ackState{out: session.NewOut(limit), in: session.NewIn(p), room: make(chan struct{}), wg: wg}
}

// reserve waits until a message of n bytes fits in the resend buffer and
// reserves room for it; release or commit must follow.
func (a *ackState) reserve(ctx context.Context, c *conn, n int) error {
	cost := session.Cost(n)
	for {
		a.mu.Lock()
		if a.out.PendingCount() == 0 && a.reserved == 0 || a.out.Room(n+a.reserved) {
			a.reserved += cost
			a.mu.Unlock()
			return nil
		}
		room := a.room
		a.waiting++
		a.mu.Unlock()
		var err error
		select {
		case <-room:
		case <-ctx.Done():
			err = fmt.Errorf("send to %s: waiting for acknowledgements: %w", c.id.Short(), ctx.Err())
		case <-c.done:
			err = c.Err()
		}
		a.mu.Lock()
		a.waiting--
		a.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// release gives back the room reserved for a message that was not sent.
func (a *ackState) release(n int) {
	a.mu.Lock()
	a.reserved -= session.Cost(n)
	a.freed()
	a.mu.Unlock()
}

// commitBatch adds the messages of a write, in wire order (the batch, then
// own if hasOwn), turning their reservations into pending messages. It
// refuses (false) once the connection's end was reported: what the report
// lists and what was committed stay the same.
func (a *ackState) commitBatch(batch []*sendReq, own []byte, hasOwn bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended {
		return false
	}
	for _, r := range batch {
		a.out.Add(r.msg)
		a.reserved -= session.Cost(len(r.msg))
	}
	if hasOwn {
		a.out.Add(own)
		a.reserved -= session.Cost(len(own))
	}
	a.added, a.trimmed = true, false
	return true
}

// round gives back the memory the resend buffer keeps for reuse if nothing
// was committed since the last round: the health loop calls it for every
// connection, so a connection that went quiet holds no more than the
// chunks holding its unacknowledged messages (none, once acknowledged),
// instead of the chunks its last burst used.
func (a *ackState) round() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.added && !a.trimmed {
		a.out.Trim()
		a.trimmed = a.out.PendingCount() == 0
	}
	a.added = false
}

// acked handles the remote's ACK.
func (a *ackState) acked(n uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.out.Ack(n); err != nil {
		return err
	}
	a.freed()
	return nil
}

// freed wakes the Sends waiting for room. The caller holds mu.
func (a *ackState) freed() {
	if a.waiting > 0 {
		close(a.room)
		a.room = make(chan struct{})
	}
}

// report returns copies of the messages never acknowledged, for the
// connection's end; nothing is committed after it.
func (a *ackState) report() [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ended = true
	return a.out.Pending()
}

// received records a message that entered the receive queue and reports
// whether an ACK is due now; otherwise it arms the delay timer.
func (a *ackState) received(c *conn, n int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	var now time.Time
	if a.in.Unacked() == 0 {
		// Only the first unacknowledged message's arrival counts: it
		// starts the delay, which the timer armed below enforces.
		now = time.Now()
	}
	if a.in.Received(n, now) {
		return true
	}
	if d, ok := a.in.Deadline(); ok && !a.armed && !a.stopped {
		a.armed = true
		a.wg.Add(1) // the caller, the reader, is counted: never from 0
		wait := time.Until(d)
		if a.timer == nil {
			a.timer = time.AfterFunc(wait, func() { c.ackDue() })
		} else {
			a.timer.Reset(wait)
		}
	}
	return false
}

// announce returns the count of messages received, for the handshake of a
// stream that resumes the session (it serves as an acknowledgement).
func (a *ackState) announce() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.in.Announce()
}

// take returns the count to acknowledge now, if any.
func (a *ackState) take() (uint64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.in.Take()
}

// stop stops the delay timer for good.
func (a *ackState) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.timer != nil && a.armed && a.timer.Stop() {
		a.wg.Done() // it will not run
	}
	a.stopped = true
}

// ackDue runs when the delay timer fires: an ACK goes out if one is due.
func (c *conn) ackDue() {
	a := c.ack
	defer a.wg.Done()
	a.mu.Lock()
	a.armed = false
	due := a.in.Due(time.Now())
	if !due && !a.stopped {
		if d, ok := a.in.Deadline(); ok {
			a.armed = true
			a.wg.Add(1)
			a.timer.Reset(time.Until(d))
		}
	}
	a.mu.Unlock()
	if due {
		c.ackSoon()
	}
}

// ackSoon writes an ACK frame promptly: a goroutine takes wlock for it,
// unless one is on its way. A writer that gets wlock first carries the ACK
// at the head of its write instead.
func (c *conn) ackSoon() {
	if c.dead.Load() || !c.ack.writing.CompareAndSwap(false, true) {
		return
	}
	c.m.goroutine(c.writeAck)
}

// writeAck writes the due ACK as soon as it gets wlock.
func (c *conn) writeAck() {
	defer c.ack.writing.Store(false)
	select {
	case c.wlock <- struct{}{}:
	case <-c.done:
		return
	}
	defer c.unlock()
	w := c.wire()
	if c.dead.Load() || w == nil || len(c.debt) > 0 {
		// The debt's writer carries ACKs; a dead connection needs none,
		// and a resuming one announces its count in the handshake.
		return
	}
	n, ok := c.ack.take()
	if !ok {
		return
	}
	ack := appendAck(nil, n)
	w.written += uint64(len(ack))
	if _, err := w.s.Write(ack); err != nil {
		c.lose("write", err)
	}
}

// appendAck appends an ACK control frame for count n to b.
func appendAck(b []byte, n uint64) []byte {
	var body [1 + varint.MaxLenUvarint63]byte
	body[0] = ctrlAck
	k := varint.PutUvarint(body[1:], n)
	return appendControl(b, body[:1+k]...)
}
