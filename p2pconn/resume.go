package p2pconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/identity"
)

// Session resumption (PROTOCOL.md, "Resumption").
//
// A connection with acknowledgements, a session id and the resume capability
// on both sides (a positive ResumeWindow) does not end when its stream is
// lost while both processes run. It leaves the stream (suspend): the
// stream is reset, its reader stops without ending Next, and the
// connection stays the peer's connection, with no stream, while the
// manager reconnects. Sends meanwhile
// commit their messages to the resend buffer (and push back once it is
// full). The next stream that settles with the peer's same process under
// the session's id carries the session on (attach): each side announced in
// the handshake how many messages it had received, each resends from there,
// and the same conn goes on. If no stream settles within ResumeWindow, or
// the peer answers with another session (it restarted, or kept no
// session), the connection ends with a *NotDeliveredError listing what the
// remote never acknowledged.

// suspension is a connection's resumption in progress.
type suspension struct {
	since   time.Time
	cause   error         // the loss
	old     *wire         // the stream lost
	resumed chan struct{} // closed when a new stream carries the session
	kick    chan struct{} // try now: a message waits, or a libp2p connection with the peer appeared
}

// resumable reports whether a loss of the stream suspends the connection
// rather than ending it.
func (c *conn) resumable() bool {
	return c.ack != nil && c.caps&capResume != 0 && c.session != 0 && c.m.cfg.ResumeWindow > 0 &&
		!c.replaced && !c.ended.Load() && c.m.ctx.Err() == nil
}

// migrate moves p's skipwire connection off a relayed (limited) libp2p
// connection when a direct one exists among conns: the session leaves the
// relayed stream and resumes on a new one, which libp2p opens on the direct
// connection; nothing is lost. It reports whether it did.
func (m *Manager) migrate(p peer.ID, conns []network.Conn) bool {
	id, err := identity.FromPeerID(p)
	if err != nil {
		return false
	}
	m.mu.RLock()
	var c *conn
	if st := m.peers[id]; st != nil {
		c = st.conn
	}
	m.mu.RUnlock()
	if c == nil || c.dead.Load() || !c.resumable() {
		return false
	}
	w := c.wire()
	if w == nil || !w.s.Conn().Stat().Limited {
		return false
	}
	direct := false
	for _, lc := range conns {
		direct = direct || !lc.Stat().Limited && !lc.IsClosed()
	}
	if !direct || !c.suspend("moving to a direct connection", nil) {
		return false
	}
	log.Infow("moving the connection to a direct libp2p connection", "peer", c.id, "from", w.addr)
	c.kickResume()
	return true
}

// resuming reports whether the connection is between two streams.
func (c *conn) resuming() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.susp != nil
}

// suspension returns the resumption in progress, nil if none.
func (c *conn) suspension() *suspension {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.susp
}

// suspend leaves the lost stream and lets the session resume, if it can. It
// reports whether the connection is resuming (also when it already was).
func (c *conn) suspend(reason string, cause error) bool {
	if !c.resumable() {
		return false
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	if c.susp != nil {
		c.mu.Unlock()
		return true
	}
	w := c.wire()
	sp := &suspension{
		since:   time.Now(),
		cause:   &closeError{peer: c.id, reason: reason, lost: true, cause: cause},
		old:     w,
		resumed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
	c.susp = sp
	c.w.Store(nil)
	c.mu.Unlock()
	w.leave()
	if reason == "health check" {
		// The libp2p connection does not answer either: dial afresh.
		_ = w.s.Conn().Close()
	}
	log.Infow("connection lost, resuming the session", "peer", c.id, "addr", w.addr, "err", sp.cause)
	c.m.suspended(c, sp)
	return true
}

// kickResume tells the resumption that a message waits for it.
func (c *conn) kickResume() {
	if sp := c.suspension(); sp != nil {
		select {
		case sp.kick <- struct{}{}:
		default:
		}
	}
}

// commitResuming commits the queued messages and own (if hasOwn) to the
// resend buffer while the connection has no stream: they go out when the
// session resumes. The debt is dropped, since every message in it is in
// the resend buffer too. The caller holds wlock.
func (c *conn) commitResuming(own []byte, hasOwn bool) error {
	batch := c.takeQueue()
	c.debt = c.debt[:0]
	c.notify(c.debtReqs, nil)
	c.debtReqs = nil
	var err error
	if c.ack.commitBatch(batch, own, hasOwn) {
		c.kickResume()
	} else {
		err = c.Err() // the session ended meanwhile
	}
	c.notifyErr(batch, err)
	c.recycleBatch(batch)
	return err
}

// stopped waits until the lost stream's reader has returned, so that the
// received count no longer moves, or until deadline; it reports whether it
// did.
func (sp *suspension) stopped(deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-sp.old.readerDone:
		return true
	case <-t.C:
		return false
	}
}

// readerStopped reports whether the lost stream's reader has returned.
func (sp *suspension) readerStopped() bool {
	select {
	case <-sp.old.readerDone:
		return true
	default:
		return false
	}
}

// attach carries the session on on stream s, which settled as its
// resumption; count is the number of messages the remote announced it had
// received. It resends the rest, in order, before any newer message.
func (c *conn) attach(s network.Stream, count uint64) {
	c.wlock <- struct{}{}
	c.mu.Lock()
	sp := c.susp
	if c.err != nil || sp == nil {
		c.mu.Unlock()
		c.unlock()
		_ = s.Reset()
		return
	}
	w := newWire(s)
	c.susp = nil
	c.w.Store(w)
	c.mu.Unlock()
	c.m.goroutine(func() { c.readLoop(w) })
	c.m.dedupeSoon(s.Conn().RemotePeer())
	c.debt = c.debt[:0]
	c.notify(c.debtReqs, nil)
	c.debtReqs = nil
	n, err := c.resend(w, count)
	close(sp.resumed)
	c.unlock()
	log.Infow("session resumed", "peer", c.id, "addr", w.addr, "after", time.Since(sp.since), "resent", n)
	c.m.publish(Event{Kind: EventResumed, Peer: c.id, Inbound: c.inbound, Conn: c})
	switch {
	case errors.Is(err, errFraming):
		c.m.metrics.frameError("handshake")
		c.fail("resume", err)
	case err != nil:
		c.lose("write", err)
	}
}

// resendChunk is how many bytes of resent frames go out per write.
const resendChunk = 64 << 10

// resend writes on w the messages after the remote's count n that are
// still unacknowledged, and returns how many it wrote. The caller holds
// wlock, so nothing is committed meanwhile; the reader may take ACKs, which
// only cover messages already written.
func (c *conn) resend(w *wire, n uint64) (int, error) {
	a := c.ack
	a.mu.Lock()
	msgs, err := a.out.Resend(n)
	if err != nil {
		a.mu.Unlock()
		return 0, fmt.Errorf("%w: %w", errFraming, err)
	}
	a.freed()
	bp := batchPool.Get().(*[]byte)
	buf := (*bp)[:0]
	k := 0
	for msg := range msgs {
		buf = appendFrame(buf, msg)
		k++
		if len(buf) >= resendChunk {
			a.mu.Unlock()
			w.written += uint64(len(buf))
			_, err = w.s.Write(buf)
			buf = buf[:0]
			a.mu.Lock()
			if err != nil {
				break
			}
		}
	}
	a.mu.Unlock()
	if err == nil && len(buf) > 0 {
		w.written += uint64(len(buf))
		_, err = w.s.Write(buf)
	}
	if cap(buf) <= maxPooledBatch {
		*bp = buf[:0]
		batchPool.Put(bp)
	}
	return k, err
}

// endSession ends a connection whose session did not resume.
func (c *conn) endSession(reason string, cause error) {
	if c.die(&closeError{peer: c.id, reason: reason, lost: true, cause: cause}) {
		log.Infow("connection lost: the session did not resume", "peer", c.id, "reason", reason, "err", cause)
	}
}

// suspended records that c is resuming: it stays the peer's connection
// (counted, protected, returned by GetConnection), out of the settling
// rules' way, and the manager reconnects.
func (m *Manager) suspended(c *conn, sp *suspension) {
	m.mu.Lock()
	if st := m.peers[c.id]; st != nil {
		info := st.live
		if st.died(c) {
			st.resume, st.resumeInfo = c, info
		}
		m.changedLocked(c.id, st)
	}
	m.mu.Unlock()
	m.publish(Event{Kind: EventResuming, Peer: c.id, Inbound: c.inbound, Conn: c, Err: sp.cause})
	m.goroutine(func() { m.resumeLoop(c, sp) })
}

// resumeLoop reconnects a resuming connection within ResumeWindow, at once
// and then with backoff; the remote may reconnect first.
func (m *Manager) resumeLoop(c *conn, sp *suspension) {
	select {
	case <-sp.old.readerDone:
	case <-c.done:
		return
	}
	end := time.Now().Add(m.cfg.ResumeWindow)
	window := time.NewTimer(m.cfg.ResumeWindow)
	defer window.Stop()
	var last error
	for attempt := 1; ; attempt++ {
		err := m.resumeAttempt(c, sp, end)
		if err == nil {
			return
		}
		last = err
		if errors.Is(err, ErrRefused) || errors.Is(err, ErrPeerMismatch) || errors.Is(err, ErrManagerClosed) {
			// The peer refuses, or is not who the session was with. (A
			// peer not found, or a gater's refusal, may be a partition
			// that heals within the window.)
			c.endSession("session not resumed", err)
			return
		}
		log.Debugw("resumption attempt failed", "peer", c.id, "attempt", attempt, "err", err)
		// A new libp2p connection with the peer ends the wait; so that a
		// flapping link does not push the next attempt past the window,
		// no wait is longer than an eighth of it.
		t := time.NewTimer(min(m.backoff(attempt), m.cfg.ResumeWindow/8))
		select {
		case <-t.C:
		case <-sp.kick:
			t.Stop()
		case <-sp.resumed:
			t.Stop()
			return
		case <-c.done:
			t.Stop()
			return
		case <-window.C:
			t.Stop()
			c.endSession("session not resumed within ResumeWindow", errors.Join(sp.cause, last))
			return
		}
	}
}

// kickResumption wakes the resumption of p's session, if one waits: a
// libp2p connection with p appeared.
func (m *Manager) kickResumption(p peer.ID) {
	id, err := identity.FromPeerID(p)
	if err != nil {
		return
	}
	m.mu.RLock()
	var r *conn
	if st := m.peers[id]; st != nil {
		r = st.resume
	}
	m.mu.RUnlock()
	if r != nil {
		r.kickResume()
	}
}

// resumeAttempt makes one attempt to carry c's session on a new stream,
// before end: it returns nil once the session resumed or ended (the remote
// answered with another session), whichever side's stream settled.
func (m *Manager) resumeAttempt(c *conn, sp *suspension, end time.Time) error {
	// No attempt outlives the window.
	deadline := time.Now().Add(m.cfg.ConnectTimeout)
	if end.Before(deadline) {
		deadline = end
	}
	ctx, cancel := context.WithDeadline(m.ctx, deadline)
	defer cancel()
	_, err := m.attempt(ctx, c.id, m.cfg.ConnectTimeout)
	if err == nil {
		return nil
	}
	if errors.Is(err, errBusy) || errors.Is(err, errDuplicate) {
		// Another stream with the peer is settling (the remote resumes
		// too): wait for it.
		select {
		case <-sp.resumed:
			return nil
		case <-c.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("waiting for the remote's stream: %w", ctx.Err())
		}
	}
	select {
	case <-sp.resumed:
		return nil
	case <-c.done:
		return nil
	default:
		return err
	}
}

// resumeHello fills in a HELLO to a peer whose session r is resuming: its
// id and the messages received. It reports false while the lost stream's
// reader still runs (the count could still move). The caller holds m.mu.
func resumeHello(h *handshake, r *conn) bool {
	sp := r.suspension()
	if sp == nil || !h.hasSession {
		return true
	}
	if !sp.readerStopped() {
		return false
	}
	h.session, h.count = r.session, r.ack.announce()
	return true
}
