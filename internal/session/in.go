package session

import (
	"errors"
	"fmt"
	"time"
)

// AckPolicy says when a receiver acknowledges. A zero field takes its
// default; negative fields are invalid.
//
// The defaults keep to about one ACK frame per batch of frames read, or per
// few milliseconds when messages trickle: an ACK frame is some 15 bytes, so
// one per 128 messages costs well under 1% of the bytes even for messages of
// 64 bytes, and one per 2 ms at most 500 frames a second per connection. A
// receiver that only reads writes each ACK by itself (a write, and a read on
// the sender's side): one per 32 small messages cost 8 concurrent senders
// of 128 B about 4% of their rate more than one per 128. They
// never hold an acknowledgement so long that the sender stalls: a lone
// message is acknowledged within Delay plus a round trip, and a sender whose
// limit is known is acknowledged when half of it is used, so that it can fill
// the other half while the acknowledgement travels.
type AckPolicy struct {
	// Count acknowledges once this many messages are unacknowledged.
	// 0: 128.
	Count int
	// Bytes acknowledges once the unacknowledged messages cost this many
	// bytes (see Cost). 0: 64 KiB.
	Bytes int
	// Delay acknowledges once the oldest unacknowledged message has waited
	// this long. 0: 2 ms.
	Delay time.Duration
	// RemoteLimit is the sender's limit (what its NewOut was given), if
	// known: then also acknowledge once the unacknowledged messages cost half
	// of it. 0: unknown.
	RemoteLimit int
}

// Defaults of AckPolicy.
const (
	DefaultAckCount = 128
	DefaultAckBytes = 64 << 10
	DefaultAckDelay = 2 * time.Millisecond
)

// DefaultAckPolicy returns the policy with every default filled in.
func DefaultAckPolicy() AckPolicy {
	return AckPolicy{Count: DefaultAckCount, Bytes: DefaultAckBytes, Delay: DefaultAckDelay}
}

// Validate reports a negative field.
func (p AckPolicy) Validate() error {
	var errs []error
	if p.Count < 0 {
		errs = append(errs, fmt.Errorf("ack policy: Count %d, want >= 0", p.Count))
	}
	if p.Bytes < 0 {
		errs = append(errs, fmt.Errorf("ack policy: Bytes %d, want >= 0", p.Bytes))
	}
	if p.Delay < 0 {
		errs = append(errs, fmt.Errorf("ack policy: Delay %v, want >= 0", p.Delay))
	}
	if p.RemoteLimit < 0 {
		errs = append(errs, fmt.Errorf("ack policy: RemoteLimit %d, want >= 0", p.RemoteLimit))
	}
	return errors.Join(errs...)
}

// withDefaults returns p with its zero fields filled in.
func (p AckPolicy) withDefaults() AckPolicy {
	d := DefaultAckPolicy()
	if p.Count == 0 {
		p.Count = d.Count
	}
	if p.Bytes == 0 {
		p.Bytes = d.Bytes
	}
	if p.Delay == 0 {
		p.Delay = d.Delay
	}
	return p
}

// In is the receiving half of a session: how many messages arrived, and
// which of them are not acknowledged yet. It is not safe for concurrent use.
type In struct {
	p     AckPolicy // defaults filled in
	count uint64    // messages received
	acked uint64    // the count last taken or announced
	cost  int       // cost of messages acked+1..count
	first time.Time // when message acked+1 arrived
}

// NewIn returns the receiving half of a new session. It panics if
// p.Validate fails.
func NewIn(p AckPolicy) *In {
	if err := p.Validate(); err != nil {
		panic("session: NewIn: " + err.Error())
	}
	return &In{p: p.withDefaults()}
}

// Policy returns the policy in use, defaults filled in.
func (r *In) Policy() AckPolicy { return r.p }

// SetRemoteLimit sets AckPolicy.RemoteLimit, once the sender's handshake
// told it; 0 makes it unknown. A negative n counts as 0.
func (r *In) SetRemoteLimit(n int) { r.p.RemoteLimit = max(n, 0) }

// Count returns the number of messages received: the number of the latest.
func (r *In) Count() uint64 { return r.count }

// Unacked returns the number of messages received and not yet acknowledged.
func (r *In) Unacked() int { return int(r.count - r.acked) }

// Received records that a message of n bytes entered the queue at now, and
// reports whether an acknowledgement is due at once (see Take).
//
// now may be the zero Time for a message that is not the first
// unacknowledged one (Unacked was above 0 before the call): the count and
// bytes thresholds are checked as usual, and the Delay threshold is left to
// a timer set to Deadline, which saves reading the clock per message.
func (r *In) Received(n int, now time.Time) (ackNow bool) {
	r.count++
	if r.count-r.acked == 1 {
		r.first = now
	}
	r.cost += Cost(n)
	return r.Due(now)
}

// Due reports whether an acknowledgement is due at now: something is
// unacknowledged and a threshold of the policy is reached.
func (r *In) Due(now time.Time) bool {
	k := r.count - r.acked
	if k == 0 {
		return false
	}
	return k >= uint64(r.p.Count) ||
		r.cost >= r.p.Bytes ||
		(r.p.RemoteLimit > 0 && r.cost >= r.p.RemoteLimit/2) ||
		!now.Before(r.first.Add(r.p.Delay))
}

// Deadline returns when an acknowledgement becomes due if no other message
// arrives: Delay after the oldest unacknowledged message arrived. ok is
// false when nothing is unacknowledged. One timer set to it suffices; when
// it fires, Due says whether to Take (the deadline may have moved).
func (r *In) Deadline() (t time.Time, ok bool) {
	if r.count == r.acked {
		return time.Time{}, false
	}
	return r.first.Add(r.p.Delay), true
}

// Take returns the cumulative count to acknowledge now, and counts it as
// sent; ok is false when every message was already acknowledged. The
// caller writes the count in an ACK frame; it may take earlier than Due
// says, for instance when it writes a frame anyway.
func (r *In) Take() (n uint64, ok bool) {
	if r.count == r.acked {
		return r.count, false
	}
	r.acked, r.cost, r.first = r.count, 0, time.Time{}
	return r.count, true
}

// Announce returns the count to announce in the handshake of a new stream
// of this session, and counts it as an acknowledgement sent, since it
// serves as one. The first message the new stream carries is message
// Announce()+1.
func (r *In) Announce() uint64 {
	r.Take()
	return r.count
}
