package session

import (
	"fmt"
	"iter"
)

// Overhead is what a message costs against a limit beyond its payload: its
// frame header and its place in the sender's index. Counting it bounds the
// number of pending messages, empty ones included, and the memory they
// hold; both halves count it, so a receiver acknowledging at half the
// sender's limit measures what the sender measures.
const Overhead = 32

// Cost is what a message of n payload bytes counts against a limit.
func Cost(n int) int { return n + Overhead }

// Out is the sending half of a session: the messages committed and not yet
// acknowledged, in order, and the limit on them. It is not safe for
// concurrent use.
type Out struct {
	limit int
	q     store // messages acked+1..sent
}

// NewOut returns the sending half of a new session whose pending messages
// may cost up to limit bytes (see [Cost]). It panics if limit is not
// positive.
func NewOut(limit int) *Out {
	if limit <= 0 {
		panic(fmt.Sprintf("session: NewOut: limit %d, want > 0", limit))
	}
	return &Out{limit: limit, q: newStore(limit)}
}

// Limit returns the limit NewOut was given.
func (o *Out) Limit() int { return o.limit }

// Sent returns the number of messages committed: the number of the latest.
func (o *Out) Sent() uint64 { return o.q.pushed }

// Acked returns the number of messages the remote acknowledged.
func (o *Out) Acked() uint64 { return o.q.popped }

// PendingCount returns the number of messages committed and not yet
// acknowledged.
func (o *Out) PendingCount() int { return o.q.len() }

// PendingBytes returns the payload bytes of the messages committed and not
// yet acknowledged.
func (o *Out) PendingBytes() int { return o.q.bytes }

// Room reports whether a message of n bytes may be committed now: when its
// cost fits within the limit beside the pending messages, or when nothing is
// pending (so that a message larger than the limit goes alone instead of
// never).
func (o *Out) Room(n int) bool {
	pending := o.q.len()
	return pending == 0 || o.q.bytes+Overhead*pending+Cost(n) <= o.limit
}

// Add commits a copy of msg as the next message and returns its number.
// It does not check Room: the caller does. Once the storage has warmed up, it
// allocates nothing: a message longer than an eighth of a storage chunk (a
// quarter of the limit, between 4 and 64 KiB) that does not fit in the chunk
// being filled is copied into a buffer from a pool shared by every Out, less
// than a quarter longer than itself and given back once the message is
// acknowledged; only messages over 16 MiB get an allocation of their own.
func (o *Out) Add(msg []byte) uint64 {
	o.q.push(msg)
	return o.q.pushed
}

// Ack records that the remote has messages 1..n and releases them. A count
// at or below Acked is stale and ignored; a count above Sent is a protocol
// violation, reported as an error wrapping ErrAckAhead, and changes nothing.
func (o *Out) Ack(n uint64) error {
	if n > o.q.pushed {
		return fmt.Errorf("ack of %d messages, %d sent: %w", n, o.q.pushed, ErrAckAhead)
	}
	o.ackTo(n)
	return nil
}

// ackTo releases messages up to n, if not yet; n <= Sent.
func (o *Out) ackTo(n uint64) {
	if n > o.q.popped {
		o.q.pop(int(n - o.q.popped))
	}
}

// CheckCount reports whether n, the count of messages the remote announces
// when a new stream starts, is consistent with this half: not above Sent
// (ErrAckAhead) and not below Acked (ErrCountBehind), since a receiver's
// count never goes back.
func (o *Out) CheckCount(n uint64) error {
	switch {
	case n > o.q.pushed:
		return fmt.Errorf("resume at %d messages, %d sent: %w", n, o.q.pushed, ErrAckAhead)
	case n < o.q.popped:
		return fmt.Errorf("resume at %d messages, %d acknowledged: %w", n, o.q.popped, ErrCountBehind)
	}
	return nil
}

// Resend takes n, the count of messages the remote announced on a new
// stream: it checks it as CheckCount does (on error nothing changes),
// acknowledges messages 1..n, and returns the messages that follow, which
// the caller writes first on the new stream, in order.
//
// The iterator yields the payloads of messages n+1..Sent (as of the call)
// that are still unacknowledged when it reaches them. They belong to the
// Out: the caller must not modify them, and each stays valid only until an
// Ack covers it, after which its bytes may be reused.
func (o *Out) Resend(n uint64) (iter.Seq[[]byte], error) {
	if err := o.CheckCount(n); err != nil {
		return nil, err
	}
	o.ackTo(n)
	last := o.q.pushed
	return func(yield func([]byte) bool) {
		for num := n + 1; num <= last; num++ {
			if num <= o.q.popped {
				continue // acknowledged meanwhile
			}
			if !yield(o.q.at(int(num - o.q.popped - 1))) {
				return
			}
		}
	}, nil
}

// Pending returns copies of the payloads of the messages never
// acknowledged, in order, in one allocation for the bytes: when a session
// ends, each of them was lost or delivered without its acknowledgement
// arriving, and the application learns which. It returns nil when nothing is
// pending.
func (o *Out) Pending() [][]byte {
	k := o.q.len()
	if k == 0 {
		return nil
	}
	out := make([][]byte, k)
	buf := make([]byte, 0, o.q.bytes)
	for i := range k {
		off := len(buf)
		buf = append(buf, o.q.at(i)...)
		out[i] = buf[off:len(buf):len(buf)]
	}
	return out
}

// Held returns the bytes of storage the pending messages' copies take,
// with what is kept for reuse: the measure Trim brings down.
func (o *Out) Held() int { return o.q.held() }

// Trim releases the memory kept for reuse (all of it when nothing is
// pending), for a connection that went quiet. Adding afterwards allocates
// again.
func (o *Out) Trim() { o.q.trim() }
