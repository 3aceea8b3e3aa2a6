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
type linkState struct {
	epoch  uint64 // this Network's epoch
	window int    // this Network's window

	remoteEpoch  uint64 // the epoch of the remote's Network; 0 before its OPEN
	remoteWindow int
	remoteClosed bool   // the remote's Network said CLOSED; no Send until a new OPEN
	ackWanted    uint64 // the remote epoch this side acknowledges (OPEN queued)
	ackWritten   uint64 // the remote epoch this side's written OPEN acknowledged
	ackedUs      bool   // the remote's Network acknowledged this side's epoch

	inflight map[string]int // sent, not yet credited, per channel
	queued   map[string]int // received, not yet credited back, per channel
	owed     map[string]int // consumed, not yet credited back, per channel
}

func newLinkState(epoch uint64, window int) linkState {
	return linkState{
		epoch:    epoch,
		window:   window,
		inflight: make(map[string]int),
		queued:   make(map[string]int),
		owed:     make(map[string]int),
	}
}

// creditBatch is how many consumed messages of a channel go back at once.
func (s *linkState) creditBatch() int { return max(1, s.window/2) }

// sendable reports whether a DATA on ch may be sent now.
func (s *linkState) sendable(ch string) bool {
	return s.remoteEpoch != 0 && !s.remoteClosed && s.ackWritten == s.remoteEpoch &&
		s.inflight[ch] < s.remoteWindow
}

// take counts a DATA on ch about to be sent; sendable(ch) must hold.
func (s *linkState) take(ch string) { s.inflight[ch]++ }

// untake gives back the credit of a DATA that could not be sent.
func (s *linkState) untake(ch string) {
	if s.inflight[ch] <= 1 {
		delete(s.inflight, ch)
		return
	}
	s.inflight[ch]--
}

// openAction is what an OPEN from the remote asks of the link.
type openAction struct {
	sendOpen  bool // write an OPEN acknowledging the remote's epoch
	newRemote bool // a Network of the remote this side did not know
}

// opened handles the remote's OPEN.
func (s *linkState) opened(epoch, ack uint64, window int) openAction {
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
	clear(s.inflight)
	clear(s.queued)
	clear(s.owed)
}

// credited handles a CREDIT of n on ch. It reports false for a violation:
// more credits than DATA sent (the surplus is ignored). A CREDIT before the
// remote acknowledged this side's epoch is stale and ignored.
func (s *linkState) credited(ch string, n int) bool {
	if !s.ackedUs {
		return true
	}
	have := s.inflight[ch]
	if n >= have {
		delete(s.inflight, ch)
		return n == have
	}
	s.inflight[ch] = have - n
	return true
}

// received handles a DATA on ch: it returns "" if the DATA counts, else the
// reason to drop it (rejectStale or rejectOverWindow).
func (s *linkState) received(ch string) string {
	if !s.ackedUs {
		return rejectStale
	}
	if s.queued[ch] >= s.window {
		return rejectOverWindow
	}
	s.queued[ch]++
	return ""
}

// consumed handles a DATA of ch, received while the remote's Network had
// epoch remote, leaving this side's queue (processed or dropped). It returns
// the credits to send back now, or 0.
func (s *linkState) consumed(ch string, remote uint64) int {
	if remote != s.remoteEpoch || s.remoteClosed || s.queued[ch] == 0 {
		return 0 // for a Network of the remote that is gone
	}
	s.owed[ch]++
	n := s.owed[ch]
	if n < s.creditBatch() {
		return 0
	}
	delete(s.owed, ch)
	if s.queued[ch] -= n; s.queued[ch] <= 0 {
		delete(s.queued, ch)
	}
	return n
}
