package network

import (
	"context"
	"fmt"
	"sync"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// maxLoggedChannels bounds the channels without a processor a link logs
// once each, so that a peer naming endless channels cannot grow memory.
const maxLoggedChannels = 32

// maxPendingControl bounds the CREDITs (one per channel) and the
// NO_PROCESSORs waiting for the link's writer, for when the remote does not
// read: a peer that sends to ever new channels without a processor, and
// never reads, gets no room back for the ones past the bound (its Sends
// there wait) and no NO_PROCESSOR (its Requests run into their ctx).
const maxPendingControl = 1024

// link is a Network's side of one connection: its reader, the protocol
// state (linkState) and the control frames waiting to be written. The
// reader is the connection's own (p2pconn.Deliverer) calling handle, or
// else a goroutine of the link calling Next. A writer goroutine runs only
// while control frames wait, so that the reader never blocks on a write.
type link struct {
	n         *Network
	conn      p2pconn.Connection
	peer      identity.Identifier
	deliverer p2pconn.Deliverer // the connection, if it delivers

	deliverMu sync.Mutex // serializes deliver and stop
	stopped   bool       // stop was called; guarded by deliverMu

	mu      sync.Mutex
	st      linkState
	changed chan struct{} // closed and replaced when a waiting Send may go on
	ended   bool          // the reader has stopped

	// Control frames waiting for the writer; guarded by mu.
	openQueued bool
	credits    map[string]int
	noProc     []noProcFrame
	blocked    []Channel // channels to say BLOCKED on
	writing    bool      // a writer goroutine runs

	logged map[string]struct{} // channels without a processor already logged; guarded by mu
	warned map[string]struct{} // reasons of rejection already logged at warn level; guarded by mu
}

// noProcFrame is a NO_PROCESSOR waiting to be written.
type noProcFrame struct {
	ch string
	id uint64
}

func newLink(n *Network, c p2pconn.Connection) *link {
	d, _ := c.(p2pconn.Deliverer)
	return &link{
		deliverer: d,
		n:         n,
		conn:      c,
		peer:      c.RemoteID(),
		st:        newLinkState(n.epoch, n.cfg.Window, n.cfg.WindowLimit, n.caps),
		changed:   make(chan struct{}),
		credits:   make(map[string]int),
	}
}

// queueOpen queues the OPEN that announces this Network.
func (l *link) queueOpen() {
	l.mu.Lock()
	l.openQueued = true
	l.kickLocked()
	l.mu.Unlock()
}

// deliver makes the connection hand its messages to handle, unless the
// Network closed meanwhile.
func (l *link) deliver() {
	l.deliverMu.Lock()
	defer l.deliverMu.Unlock()
	if !l.stopped {
		l.deliverer.Deliver(l.handle, l.end)
	}
}

// stop stops reading the connection: once it returns, handle is not called
// again, and what the remote sends later stays with the connection, for a
// later Network on the same manager. (A link reading with Next stops when
// the Network's ctx ends.)
func (l *link) stop() {
	if l.deliverer == nil {
		return
	}
	l.deliverMu.Lock()
	defer l.deliverMu.Unlock()
	l.stopped = true
	l.deliverer.Deliver(nil, nil)
}

// run reads the connection with Next until it ends or the Network closes.
func (l *link) run() {
	for {
		msg, err := l.conn.Next(l.n.ctx)
		if err != nil {
			l.end(err)
			return
		}
		l.handle(msg)
	}
}

// end stops the link: Sends waiting on it fail, and the Network forgets it.
func (l *link) end(err error) {
	l.mu.Lock()
	l.ended = true
	l.broadcastLocked()
	grants := l.st.grants()
	clear(l.st.in)
	l.mu.Unlock()
	l.giveBack(grants)
	l.n.forget(l)
	if l.n.ctx.Err() == nil {
		log.Debugw("connection ended", "peer", l.peer, "err", err)
	}
}

// handle acts on one message read from the connection. It never blocks: it
// may run on the connection's reader.
func (l *link) handle(msg []byte) {
	e, err := decode(msg)
	if err != nil {
		l.rejected(err.(*rejectError))
		return
	}
	switch e.kind {
	case kindData:
		l.onData(e)
	case kindReply:
		l.n.answer(e.call.ID, Message{Channel: Channel(e.channel), From: l.peer, Payload: e.payload})
	case kindNoProcessor:
		if !l.n.calls.noProcessor(e.call.ID, l.peer, Channel(e.channel)) {
			l.rejected(&rejectError{reason: rejectForgedCall, detail: fmt.Sprintf("NO_PROCESSOR for call %016x, not asked of this peer", e.call.ID)})
		}
	case kindCredit:
		l.mu.Lock()
		ok := l.st.credited(string(e.channel), e.credits)
		l.broadcastLocked()
		l.mu.Unlock()
		if !ok {
			l.rejected(&rejectError{reason: rejectBadCredit, detail: fmt.Sprintf("%d credits on %q", e.credits, e.channel)})
		}
	case kindOpen:
		l.mu.Lock()
		a := l.st.opened(e.epoch, e.ack, e.window, e.caps)
		if a.newRemote {
			l.dropControlLocked()
		}
		if a.sendOpen {
			l.openQueued = true
			l.kickLocked()
		}
		l.broadcastLocked()
		freed := l.st.takeFreed()
		l.mu.Unlock()
		l.giveBack(freed)
		if a.newRemote {
			log.Debugw("peer network open", "peer", l.peer, "epoch", fmt.Sprintf("%016x", e.epoch), "window", e.window)
		}
	case kindBlocked:
		if l.st.caps&capGrow == 0 { // as a Network that predates BLOCKED
			l.rejected(&rejectError{reason: rejectUnknownKind, detail: fmt.Sprintf("kind %#02x", byte(e.kind))})
			return
		}
		l.onBlocked(e.channel)
	case kindClosed:
		l.mu.Lock()
		closed := l.st.closed(e.epoch)
		if closed {
			l.dropControlLocked()
		}
		l.broadcastLocked()
		freed := l.st.takeFreed()
		l.mu.Unlock()
		l.giveBack(freed)
		if closed {
			log.Debugw("peer network closed", "peer", l.peer)
			l.n.calls.failTarget(l.peer, ErrRemoteClosed)
		}
	}
}

// onData queues a DATA for its channel's processor, or answers for a
// channel without one.
func (l *link) onData(e envelope) {
	reg := l.n.registration(e.channel)
	if reg == nil {
		l.noProcessor(string(e.channel), e.call.ID)
		return
	}
	ch := string(reg.ch) // no allocation: the registration's own string
	idle := reg.idle.Load()
	l.mu.Lock()
	verdict := l.st.received(ch, idle)
	remote := l.st.remoteEpoch
	l.mu.Unlock()
	if verdict != "" {
		l.rejected(&rejectError{reason: verdict, detail: fmt.Sprintf("DATA on %q", ch)})
		return
	}
	m := Message{Channel: reg.ch, From: l.peer, Payload: e.payload}
	if e.call.ID != 0 {
		m.Call = e.call
		if !e.origin {
			m.Call.Origin = l.peer // a Request: the origin is its authenticated sender
		}
	}
	l.n.metrics.received(reg.ch)
	reg.push(item{m: m, link: l, remote: remote})
}

// noProcessor drops a DATA for a channel without a processor: it gives the
// room back at once (nothing is kept, and no state per such channel either,
// whatever channels a peer names), counts the DATA, logs it once per
// channel, and answers a call with NO_PROCESSOR.
func (l *link) noProcessor(ch string, id uint64) {
	l.mu.Lock()
	if !l.st.ackedUs {
		l.mu.Unlock()
		l.rejected(&rejectError{reason: rejectStale, detail: fmt.Sprintf("DATA on %q", ch)})
		return
	}
	if _, ok := l.credits[ch]; ok || len(l.credits) < maxPendingControl {
		l.credits[ch]++
		l.kickLocked()
	}
	l.n.metrics.noProcessor()
	first := false
	if _, ok := l.logged[ch]; !ok && len(l.logged) < maxLoggedChannels {
		if l.logged == nil {
			l.logged = make(map[string]struct{})
		}
		l.logged[ch] = struct{}{}
		first = true
	}
	if id != 0 && len(l.noProc) < maxPendingControl {
		l.noProc = append(l.noProc, noProcFrame{ch: ch, id: id})
		l.kickLocked()
	}
	l.mu.Unlock()
	if first {
		log.Infow("message for a channel without a processor: dropped (logged once per peer and channel)", "peer", l.peer, "channel", ch)
	}
}

// onBlocked handles a BLOCKED: the remote's Send waits for room on the
// channel name. A channel without a processor keeps no room to grow.
func (l *link) onBlocked(name []byte) {
	reg := l.n.registration(name)
	if reg == nil {
		return
	}
	ch := string(reg.ch)
	idle := reg.idle.Load()
	l.mu.Lock()
	n := l.st.grow(ch, idle, reg.room())
	if n > 0 {
		if k := reg.take(n); k < n { // another sender took some meanwhile
			l.st.ungrow(ch, n-k)
			n = k
		}
	}
	if n > 0 {
		l.credits[ch] += n
		l.kickLocked()
	}
	l.mu.Unlock()
	if n > 0 {
		log.Debugw("window grown", "peer", l.peer, "channel", reg.ch, "by", n)
	}
}

// giveBack returns room granted beyond Config.Window to the allowances of
// the channels, once the sender it was granted to is gone.
func (l *link) giveBack(grants map[string]int) {
	for ch, g := range grants {
		if reg := l.n.registrationOf(Channel(ch)); reg != nil {
			reg.giveBack(g)
		}
	}
}

// consumed gives back the room of a DATA received while the remote's Network
// had epoch remote.
func (l *link) consumed(ch string, remote uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.st.consumed(ch, remote); n > 0 {
		l.credits[ch] += n
		l.kickLocked()
	}
}

// rejected counts and logs a hostile or stale envelope: at warn level the
// first time a peer breaks the protocol in that way, then at debug level, so
// that a hostile peer cannot flood the log.
func (l *link) rejected(err *rejectError) {
	l.n.metrics.rejected(err.reason)
	l.mu.Lock()
	_, again := l.warned[err.reason]
	if !again && err.reason != rejectStale {
		if l.warned == nil {
			l.warned = make(map[string]struct{})
		}
		l.warned[err.reason] = struct{}{}
	}
	l.mu.Unlock()
	if again || err.reason == rejectStale {
		log.Debugw("envelope dropped", "peer", l.peer, "err", err)
		return
	}
	log.Warnw("envelope rejected (logged once per peer and reason)", "peer", l.peer, "err", err)
}

// sendData waits for a credit on ch, then sends a DATA. An error matching
// p2pconn.ErrConnectionClosed means the connection ended before anything was
// sent.
func (l *link) sendData(ctx context.Context, ch Channel, call CallRef, origin bool, payload []byte) error {
	key := string(ch)
	l.mu.Lock()
	for !l.st.sendable(key) {
		switch {
		case l.ended:
			l.mu.Unlock()
			return l.deadError()
		case l.st.remoteClosed:
			l.mu.Unlock()
			return ErrRemoteClosed
		}
		if l.st.wantRoom(key) {
			l.blocked = append(l.blocked, ch)
			l.kickLocked()
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-l.conn.Done():
			return l.deadError()
		case <-ctx.Done():
			return fmt.Errorf("waiting for room: %w", ctx.Err())
		case <-l.n.done:
			return ErrClosed
		}
		l.mu.Lock()
	}
	l.st.take(key)
	remote := l.st.remoteEpoch
	l.mu.Unlock()

	buf := getBuffer(dataHeaderMax + len(payload))
	*buf = appendData((*buf)[:0], ch, call, origin, payload)
	err := l.conn.Send(ctx, *buf)
	putBuffer(buf)
	if err != nil {
		l.mu.Lock()
		if l.st.remoteEpoch == remote {
			l.st.untake(key)
		}
		l.broadcastLocked()
		l.mu.Unlock()
		return err
	}
	return nil
}

// deadError says that the connection ended.
func (l *link) deadError() error {
	if err := l.conn.Err(); err != nil {
		return err
	}
	return fmt.Errorf("connection to %s no longer read: %w", l.peer.Short(), p2pconn.ErrConnectionClosed)
}

// dropControlLocked drops the CREDITs, NO_PROCESSORs and BLOCKEDs not yet
// written: they were meant for the remote's Network that is gone, and the
// next one would take them for its own (a CREDIT written after the OPEN
// acknowledging it counts). What the writer took already goes out before
// that OPEN, which it has not taken yet, and the next Network drops it as
// stale. l.mu is held.
func (l *link) dropControlLocked() {
	clear(l.credits)
	l.noProc = l.noProc[:0]
	l.blocked = l.blocked[:0]
}

// broadcastLocked wakes the Sends waiting on the link. l.mu is held.
func (l *link) broadcastLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// kickLocked starts the writer if it is not running. l.mu is held.
func (l *link) kickLocked() {
	if l.writing {
		return
	}
	l.writing = true
	l.n.spawn(l.write)
}

// write writes the control frames waiting, until none is left.
func (l *link) write() {
	for {
		l.mu.Lock()
		var frames [][]byte
		ack, open := uint64(0), l.openQueued
		if open {
			ack = l.st.ackWanted
			frames = append(frames, appendOpen(nil, l.st.epoch, ack, l.st.window, l.st.caps))
			l.openQueued = false
		}
		for ch, n := range l.credits {
			for ; n > 0; n -= MaxWindow {
				frames = append(frames, appendCredit(nil, Channel(ch), min(n, MaxWindow)))
			}
		}
		clear(l.credits)
		for _, f := range l.noProc {
			frames = append(frames, appendNoProcessor(nil, Channel(f.ch), f.id))
		}
		l.noProc = l.noProc[:0]
		for _, ch := range l.blocked {
			frames = append(frames, appendBlocked(nil, ch))
		}
		l.blocked = l.blocked[:0]
		if len(frames) == 0 {
			l.writing = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		for i, f := range frames {
			if err := l.conn.Send(l.n.ctx, f); err != nil {
				// The connection ended or the Network closes: nothing
				// written from now on matters.
				log.Debugw("control frame not written", "peer", l.peer, "err", err)
				l.mu.Lock()
				l.writing = false
				l.mu.Unlock()
				return
			}
			if i == 0 && open {
				l.mu.Lock()
				l.st.openWritten(ack)
				l.broadcastLocked()
				l.mu.Unlock()
			}
		}
	}
}

// sayClosed writes CLOSED, within ctx.
func (l *link) sayClosed(ctx context.Context) {
	if err := l.conn.Send(ctx, appendClosed(nil, l.n.epoch)); err != nil {
		log.Debugw("CLOSED not written", "peer", l.peer, "err", err)
	}
}
