package p2pconn

import "time"

// Settling rules.
//
// settler holds what one node knows about the skipwire streams to one peer
// and decides, for each event, what becomes of them: the rules of
// PROTOCOL.md ("Settling") and nothing else. It does no I/O and takes no
// lock; the Manager drives it under its lock and carries out its decisions
// on streams and connections. O, I and C are the Manager's handles for an
// outbound stream, an inbound stream and a connection (tests use strings);
// their zero value means "none".

// helloInfo is what the rules need of a HELLO.
type helloInfo struct {
	nonce uint64
	ext   bool   // the HELLO carries the version-2 fields below
	inc   uint64 // the opener's incarnation
	seq   uint64 // the opening's number, increasing per incarnation
}

// liveInfo is what the rules know about the live connection.
type liveInfo struct {
	born time.Time
	ext  bool   // both sides sent the version-2 fields
	inc  uint64 // the remote's incarnation
	// Version 2: the remote's openings numbered up to staleBelow were sent
	// before the connection existed on its side.
	staleBelow uint64
	// Version 1: the nonce of the remote's HELLO that lost a race to this
	// connection.
	expectDup uint64
}

// verdict is what admitting an inbound HELLO decided.
type verdict int

const (
	verdictAccept verdict = iota
	verdictReject
	verdictPark
)

// ending says how a HELLO ended the live connection.
type ending int

const (
	endNone       ending = iota
	endSuperseded        // the remote process no longer has it: deliver what it sent, then end
	endRestarted         // a new incarnation of the remote: the old process is gone
)

// helloOutcome is the decision on an inbound HELLO.
type helloOutcome[I, C comparable] struct {
	verdict  verdict
	reason   byte   // REJECT
	dupNonce uint64 // ACCEPT: the nonce of our own pending HELLO, which loses
	end      C      // the live connection the HELLO proves gone
	how      ending
	reset    I // an inbound stream the HELLO supersedes: reset it
	orphan   I // an inbound stream the HELLO supersedes that the remote may have confirmed: if CONFIRM arrives, deliver what it carries, then end it
	reject   I // a parked stream the HELLO supersedes: answer REJECT(duplicate)
}

// settler is the per-peer state of the settling rules.
type settler[O, I, C comparable] struct {
	smaller        bool          // this node has the smaller Identifier
	connectTimeout time.Duration // version 1: no opening outlives it

	conn   C
	live   liveInfo
	out    O // our stream, between HELLO and the reply
	outNon uint64
	in     I // the remote's stream, between ACCEPT and CONFIRM
	inH    helloInfo
	parked I // the remote's HELLO held while our outbound is pending (we are the smaller)
	parkH  helloInfo
}

func (st *settler[O, I, C]) idle() bool {
	var o O
	var i I
	var c C
	return st.conn == c && st.out == o && st.in == i && st.parked == i
}

// handshaking reports whether a stream of either side is between HELLO and
// its end: ours, the remote's, or the remote's parked HELLO.
func (st *settler[O, I, C]) handshaking() bool {
	var o O
	var i I
	return st.out != o || st.in != i || st.parked != i
}

// stale reports how a HELLO relates to the live connection: endNone if the
// remote sent it before it knew of the connection (it is stale), else how
// the connection ends.
func (st *settler[O, I, C]) staleness(h helloInfo, now time.Time) ending {
	switch {
	case h.ext != st.live.ext:
		// The remote speaks another version than on the live connection:
		// it restarted.
		return endRestarted
	case h.ext && h.inc != st.live.inc:
		return endRestarted
	case h.ext && h.seq <= st.live.staleBelow:
		return endNone
	case h.ext:
		return endSuperseded
	case h.nonce == st.live.expectDup || now.Sub(st.live.born) < st.connectTimeout:
		return endNone
	default:
		return endSuperseded
	}
}

// older reports whether HELLO a was sent before HELLO b by the same process.
func older(a, b helloInfo) bool {
	return a.ext && b.ext && a.inc == b.inc && a.seq < b.seq
}

// hello decides on an inbound HELLO arriving on stream s. free is the number
// of connection slots left before the decision.
func (st *settler[O, I, C]) hello(s I, h helloInfo, now time.Time, free int) (o helloOutcome[I, C]) {
	var zo O
	var zi I
	var zc C
	o.verdict = verdictReject
	o.reason = rejectDuplicate
	if st.conn != zc {
		how := st.staleness(h, now)
		if how == endNone {
			return o
		}
		o.end, o.how = st.conn, how
		st.conn, st.live = zc, liveInfo{}
		free++
	}
	if st.out != zo {
		if st.smaller {
			// Our stream wins if it settles; hold theirs until it does.
			if st.parked != zi {
				if older(h, st.parkH) {
					return o
				}
				o.reject = st.parked
			}
			st.parked, st.parkH = s, h
			o.verdict = verdictPark
			return o
		}
		// We are the larger: theirs wins; tell them to reject ours.
		o.dupNonce = st.outNon
	}
	if st.in != zi {
		if older(h, st.inH) {
			return o
		}
		if h.ext && st.inH.ext && h.inc == st.inH.inc {
			// The same process opened this one after that one: it may
			// have confirmed that one already, sent on it and closed it
			// (CONFIRM is on its way), or given up on it (the stream is
			// reset). Either way it ends here; what it carries is
			// delivered.
			o.orphan = st.in
		} else {
			// The remote gave up on that stream and opened this one.
			o.reset = st.in
		}
		st.in = zi
		free++
	}
	if free <= 0 {
		o.reason = rejectLimit
		return o
	}
	st.in, st.inH = s, h
	o.verdict = verdictAccept
	return o
}

// open reports whether this node may send a HELLO now: not while it has a
// live connection (returned) or a stream of either side in progress (busy).
func (st *settler[O, I, C]) open() (c C, busy bool) {
	var zo O
	var zi I
	if st.in != zi || st.out != zo {
		return st.conn, true
	}
	return st.conn, false
}

// opened registers our outbound stream after its HELLO was decided on.
func (st *settler[O, I, C]) opened(s O, nonce uint64) {
	st.out, st.outNon = s, nonce
}

// accepted settles our outbound stream s as connection c and ends a
// pending inbound stream: a version-2 remote of the same incarnation may
// have confirmed it, sent on it and closed it before it accepted ours, so
// it is an orphan (what it carries is delivered once CONFIRM arrives);
// otherwise the remote gave up on it (reset). A parked HELLO is rejected.
func (st *settler[O, I, C]) accepted(s O, c C, info liveInfo) (reset, orphan, reject I) {
	var zo O
	var zi I
	if st.out == s {
		st.out = zo
	}
	st.conn, st.live = c, info
	if st.in != zi && st.inH.ext && info.ext && st.inH.inc == info.inc {
		orphan = st.in
	} else {
		reset = st.in
	}
	st.in = zi
	reject, st.parked = st.parked, zi
	return reset, orphan, reject
}

// outboundFailed forgets our outbound stream s; a parked HELLO may then
// proceed (it is decided again).
func (st *settler[O, I, C]) outboundFailed(s O) (proceed I, ok bool) {
	var zo O
	var zi I
	if st.out != s || s == zo {
		return zi, false
	}
	st.out = zo
	proceed, st.parked = st.parked, zi
	return proceed, true
}

// confirmed settles inbound stream s as connection c, unless s was
// superseded meanwhile (false).
func (st *settler[O, I, C]) confirmed(s I, c C, info liveInfo) bool {
	var zi I
	if st.in != s || s == zi {
		return false
	}
	st.in = zi
	st.conn, st.live = c, info
	return true
}

// inboundFailed forgets inbound stream s; it reports whether s was pending.
func (st *settler[O, I, C]) inboundFailed(s I) bool {
	var zi I
	if st.in != s || s == zi {
		return false
	}
	st.in = zi
	return true
}

// unpark forgets a parked stream that gave up waiting.
func (st *settler[O, I, C]) unpark(s I) bool {
	var zi I
	if st.parked != s || s == zi {
		return false
	}
	st.parked = zi
	return true
}

// died forgets connection c; it reports whether c was the live one.
func (st *settler[O, I, C]) died(c C) bool {
	var zc C
	if st.conn != c || c == zc {
		return false
	}
	st.conn, st.live = zc, liveInfo{}
	return true
}
