package network

// linkState is the protocol state of one connection as a Network sees it:
// the OPEN exchange that tells each side which Network of the other reads
// the connection, and per-channel flow control in both directions. It is a
// pure type, driven by the link's events and tested by table; the link
// guards it with its mutex and does the I/O it asks for.
//
// Each Network has a random epoch. A side's frames about the remote's
// Network count only once the remote's OPEN acknowledged this side's epoch:
// earlier ones were meant for an earlier Network of this node, and are stale.
//
// Sending: a DATA on a channel needs a credit. The remote's OPEN grants
// remoteWindow credits per channel; each DATA takes one and each CREDIT gives
// some back. This side sends DATA only after its own OPEN acknowledging the
// remote's epoch is written, so the remote counts every DATA it reads after
// that OPEN. A new remote epoch (its Network restarted) starts afresh.
//
// Receiving: a sender may have window messages of a channel queued or not
// yet credited back; more is a violation. Room goes back in batches of half
// a window.
//
// Growing: when both Networks announce capGrow, a Send that finds its room
// on a channel used up says so with a BLOCKED (once until the next CREDIT),
// and the receiver, if its processor ran out of messages since that sender's
// previous BLOCKED, grants more room with a CREDIT for more than was sent:
// the channel's window for that sender doubles, up to the receiver's limit. Windows only grow, so DATA sent
// under a smaller one always fits.
type linkState struct {
	epoch  uint64 // this Network's epoch
	window int    // this Network's window: what the OPEN grants per channel
	limit  int    // how far a channel's window may grow for the remote (>= window)
	caps   uint64 // this Network's capabilities, as its OPEN announces them

	remoteEpoch  uint64 // the epoch of the remote's Network; 0 before its OPEN
	remoteWindow int
	remoteCaps   uint64 // the capabilities of the remote's Network
	remoteClosed bool   // the remote's Network said CLOSED; no Send until a new OPEN
	ackWanted    uint64 // the remote epoch this side acknowledges (OPEN queued)
	ackWritten   uint64 // the remote epoch this side's written OPEN acknowledged
	ackedUs      bool   // the remote's Network acknowledged this side's epoch

	out map[string]*outFlow // this side's DATA, per channel
	in  map[string]*inFlow  // the remote's DATA, per channel with a processor

	// freed is the room granted beyond window that reset dropped, per
	// channel, for the link to give back to the channels' allowances.
	freed map[string]int
}

// outFlow is the room this side has on one of the remote's channels.
type outFlow struct {
	inflight int  // sent, not yet credited; below 0 when the remote granted more room
	blocked  bool // BLOCKED was sent since the last CREDIT
}

// inFlow is what the remote has in one of this side's channels.
type inFlow struct {
	window int // the remote's room: the OPEN's window plus what was granted since
	queued int // received, not yet credited back
	owed   int // consumed, not yet credited back

	// Growing: whether the processor ran out of messages while the remote
	// waited for room, which it did from its BLOCKED to its next DATA.
	waiting bool   // a BLOCKED came, and no DATA since
	idleAt  uint64 // the channel's idle count when it came
	starved bool   // the processor ran out of messages while the remote waited
}

func newLinkState(epoch uint64, window, limit int, caps uint64) linkState {
	return linkState{
		epoch:  epoch,
		window: window,
		limit:  max(window, limit),
		caps:   caps,
		out:    make(map[string]*outFlow),
		in:     make(map[string]*inFlow),
	}
}

// outOf returns the room of ch, created on first use.
func (s *linkState) outOf(ch string) *outFlow {
	f := s.out[ch]
	if f == nil {
		f = new(outFlow)
		s.out[ch] = f
	}
	return f
}

// inOf returns what the remote has in ch, created on first use.
func (s *linkState) inOf(ch string) *inFlow {
	f := s.in[ch]
	if f == nil {
		f = &inFlow{window: s.window}
		s.in[ch] = f
	}
	return f
}

// grows reports whether both Networks grow windows (capGrow).
func (s *linkState) grows() bool { return s.caps&s.remoteCaps&capGrow != 0 }

// ready reports whether DATA may be sent at all: both OPENs are through and
// the remote's Network has not closed.
func (s *linkState) ready() bool {
	return s.remoteEpoch != 0 && !s.remoteClosed && s.ackWritten == s.remoteEpoch
}

// sendable reports whether a DATA on ch may be sent now.
func (s *linkState) sendable(ch string) bool {
	f := s.out[ch]
	return s.ready() && (f == nil || f.inflight < s.remoteWindow)
}

// take counts a DATA on ch about to be sent; sendable(ch) must hold.
func (s *linkState) take(ch string) { s.outOf(ch).inflight++ }

// untake gives back the credit of a DATA that could not be sent.
func (s *linkState) untake(ch string) {
	if f := s.out[ch]; f != nil {
		f.inflight--
	}
}

// wantRoom reports whether a Send waiting for room on ch should say so with
// a BLOCKED: the remote grows windows, this side's room on ch is used up,
// and no BLOCKED went since the last CREDIT.
func (s *linkState) wantRoom(ch string) bool {
	f := s.out[ch]
	if !s.grows() || !s.ackedUs || !s.ready() || f == nil || f.inflight < s.remoteWindow || f.blocked {
		return false
	}
	f.blocked = true
	return true
}

// openAction is what an OPEN from the remote asks of the link.
type openAction struct {
	sendOpen  bool // write an OPEN acknowledging the remote's epoch
	newRemote bool // a Network of the remote this side did not know
}

// opened handles the remote's OPEN.
func (s *linkState) opened(epoch, ack uint64, window int, caps uint64) openAction {
	var a openAction
	if epoch != s.remoteEpoch {
		// A new Network reads the remote side: what this side sent to, and
		// received from, its predecessor no longer counts.
		s.remoteEpoch = epoch
		s.remoteClosed = false
		s.ackedUs = false
		s.reset()
		a.newRemote = true
	}
	s.remoteWindow = window
	s.remoteCaps = caps
	if s.ackWanted != epoch {
		s.ackWanted = epoch
		a.sendOpen = true
	}
	if ack == s.epoch {
		s.ackedUs = true
	}
	return a
}

// openWritten records that this side's OPEN acknowledging ack was written.
func (s *linkState) openWritten(ack uint64) { s.ackWritten = ack }

// closed handles the remote's CLOSED, and reports whether it ended the
// remote's current Network.
func (s *linkState) closed(epoch uint64) bool {
	if epoch != s.remoteEpoch || s.remoteClosed {
		return false
	}
	s.remoteClosed = true
	s.ackedUs = false
	s.reset()
	return true
}

func (s *linkState) reset() {
	for ch, g := range s.grants() {
		if s.freed == nil {
			s.freed = make(map[string]int)
		}
		s.freed[ch] += g
	}
	clear(s.out)
	clear(s.in)
}

// grants returns the room granted to the remote beyond window, per channel.
func (s *linkState) grants() map[string]int {
	var g map[string]int
	for ch, f := range s.in {
		if f.window > s.window {
			if g == nil {
				g = make(map[string]int)
			}
			g[ch] = f.window - s.window
		}
	}
	return g
}

// takeFreed returns what reset dropped since the last call.
func (s *linkState) takeFreed() map[string]int {
	f := s.freed
	s.freed = nil
	return f
}

// credited handles a CREDIT of n on ch. It reports false for a violation:
// more credits than DATA sent from a remote that does not grow windows (the
// surplus is ignored); from one that does, the surplus is room granted. A
// CREDIT before the remote acknowledged this side's epoch is stale and
// ignored.
func (s *linkState) credited(ch string, n int) bool {
	if !s.ackedUs {
		return true
	}
	f := s.out[ch]
	if f == nil {
		return false // nothing was ever sent on ch; no state for it either
	}
	f.blocked = false
	if n <= f.inflight {
		f.inflight -= n
		return true
	}
	if s.grows() && f.inflight-n >= -MaxWindow {
		f.inflight -= n
		return true
	}
	f.inflight = 0
	return false
}

// received handles a DATA on ch, a channel with a processor whose idle
// count (how many times it ran out of messages, from every sender) is idle:
// it returns "" if the DATA counts, else the reason to drop it (rejectStale
// or rejectOverWindow).
func (s *linkState) received(ch string, idle uint64) string {
	if !s.ackedUs {
		return rejectStale
	}
	f := s.inOf(ch)
	if f.waiting {
		// The first DATA the remote sent once it had room again.
		f.waiting = false
		f.starved = f.starved || idle != f.idleAt
	}
	if f.queued >= f.window {
		return rejectOverWindow
	}
	f.queued++
	return ""
}

// consumed handles a DATA of ch, received while the remote's Network had
// epoch remote, leaving this side's queue (processed or dropped). It returns
// the credits to send back now, or 0. Room goes back in batches of half the
// channel's window.
func (s *linkState) consumed(ch string, remote uint64) int {
	f := s.in[ch]
	if remote != s.remoteEpoch || s.remoteClosed || f == nil || f.queued == 0 {
		return 0 // for a Network of the remote that is gone
	}
	f.owed++
	n := f.owed
	if n < max(1, f.window/2) {
		return 0
	}
	f.owed = 0
	f.queued -= n
	return n
}

// grow handles a BLOCKED on ch, a channel with a processor whose idle count
// is idle and whose allowance for growing windows has room left: the
// remote's Send waits for room. If, since the remote's previous BLOCKED, the
// processor ran out of messages while the remote waited for room (between
// that BLOCKED and the remote's next DATA), the window held the remote back,
// not the processor, and the channel's window for the remote doubles, up to
// the limit, taking at most half the room the channel's allowance has left,
// so that one sender never holds it all. It returns the room granted, to
// send as a CREDIT and take from the allowance, or 0. A remote that never sent DATA on ch gets nothing,
// and neither does one whose BLOCKED is its first on ch.
//
// Whether the processor keeps up is not judged on arrival of the BLOCKED:
// the DATA that used up the room arrive just before it, often in the same
// read, and nothing has been processed of them yet. Nor is it judged by the
// processor running out of messages at any time: one that has all it can do
// with many senders ran out of them when the senders were starting, and
// larger windows would only lengthen its queues.
func (s *linkState) grow(ch string, idle uint64, room int) int {
	if !s.ackedUs || !s.grows() {
		return 0
	}
	f := s.in[ch]
	if f == nil || f.window >= s.limit {
		return 0
	}
	keepsUp := f.starved
	f.waiting, f.idleAt, f.starved = true, idle, false
	if !keepsUp {
		return 0
	}
	n := min(f.window, s.limit-f.window, (room+1)/2)
	if n <= 0 {
		return 0
	}
	f.window += n
	return n
}

// ungrow takes back n of the room grow granted on ch, before it was sent.
func (s *linkState) ungrow(ch string, n int) { s.in[ch].window -= n }
