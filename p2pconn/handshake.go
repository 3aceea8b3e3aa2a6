package p2pconn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/skipwire/skipwire/identity"
)

var timeZero time.Time

// errDuplicate says the remote rejected our stream because another one carries,
// or is about to carry, the connection: wait for it rather than retry blindly.
var errDuplicate = errors.New("remote chose another stream")

// errBusy says a handshake with the peer is already in progress on another
// stream: wait for it to settle, then look again.
var errBusy = errors.New("another handshake with the peer is in progress")

// testHookBeforeConfirm, if set, runs when an opener has read ACCEPT and is
// about to send CONFIRM.
var testHookBeforeConfirm func(ctx context.Context)

// outStream is our stream to a peer between HELLO and the reply.
type outStream struct {
	s     network.Stream
	nonce uint64
}

// inStream is a remote's stream from HELLO until it settles.
type inStream struct {
	s        network.Stream
	hello    handshake
	wake     chan bool // parked only: true = proceed, false = reject as duplicate
	orphaned bool      // a newer HELLO superseded it before CONFIRM; guarded by Manager.mu
	resume   *conn     // the connection whose session this stream resumes, if any
}

// info is what the settling rules need of the HELLO.
func (in *inStream) info() helloInfo {
	h := in.hello
	return helloInfo{nonce: h.nonce, ext: h.ext, inc: h.inc, seq: h.seq}
}

// handleStream serves a stream a remote opened on m.proto.
func (m *Manager) handleStream(s network.Stream) {
	if !m.enter() {
		_ = s.Reset()
		return
	}
	defer m.wg.Done()

	remote, err := identity.FromPeerID(s.Conn().RemotePeer())
	if err != nil {
		log.Debugw("refusing stream from a peer without an Identifier", "peer", s.Conn().RemotePeer(), "err", err)
		_ = s.Reset()
		return
	}
	if !m.allowHandshake(remote) {
		_ = s.Reset()
		return
	}
	if !m.enterHandshake(remote) {
		log.Debugw("refusing stream: too many unsettled streams from the peer", "peer", remote, "max", maxUnsettledPerPeer)
		_ = s.Reset()
		return
	}
	defer m.leaveHandshake(remote)
	if err := attachService(s, m.proto); err != nil {
		log.Debugw("refusing stream", "peer", remote, "err", err)
		_ = s.Reset()
		return
	}
	deadline := time.Now().Add(m.cfg.ConnectTimeout)
	_ = s.SetDeadline(deadline)
	// Closing the manager ends the handshake: at once before ACCEPT, and
	// after ACCEPT once CONFIRM has come or CloseTimeout has passed, since
	// the opener may already hold the connection (it is then closed
	// gracefully, so the opener learns that this node left).
	var accepting atomic.Bool
	stop := context.AfterFunc(m.ctx, func() {
		if accepting.Load() {
			_ = s.SetReadDeadline(time.Now().Add(m.cfg.CloseTimeout))
		} else {
			_ = s.Reset()
		}
	})
	defer stop()

	hello, err := readHandshake(s)
	hello = m.remoteHandshake(hello)
	if err == nil && hello.typ != msgHello {
		err = fmt.Errorf("%w: expected HELLO, got message %#x", errFraming, hello.typ)
	}
	if err != nil {
		if errors.Is(err, errFraming) {
			m.metrics.frameError("handshake")
		}
		log.Debugw("inbound handshake failed", "peer", remote, "step", "read hello", "err", err)
		_ = s.Reset()
		return
	}
	in := &inStream{s: s, hello: hello, wake: make(chan bool, 1)}
	m.failures.forget(remote) // it reaches us: no longer unreachable
	if m.cfg.EvictAtLimit {
		m.makeRoom(remote)
	}

	var accept handshake
	for {
		var v verdict
		var reason byte
		v, reason, accept = m.admit(remote, in)
		if v == verdictAccept {
			accepting.Store(true)
			break
		}
		if v == verdictReject {
			rejectStream(s, reason)
			return
		}
		// Parked until our own outbound stream settles.
		t := time.NewTimer(time.Until(deadline))
		select {
		case proceed := <-in.wake:
			t.Stop()
			if !proceed {
				rejectStream(s, rejectDuplicate)
				return
			}
		case <-t.C:
			m.unpark(remote, in)
			_ = s.Reset()
			return
		}
	}

	c, err := m.acceptHandshake(remote, in, accept)
	if errors.Is(err, errResumed) {
		return
	}
	if err != nil {
		log.Debugw("inbound handshake failed", "peer", remote, "err", err)
		return
	}
	m.start(c)
	if c.replaced {
		c.supersede()
	}
}

// maxUnsettledPerPeer bounds the inbound streams of one peer that have not
// settled yet. An honest peer has one (two around a race); a peer opening
// streams it never completes holds no more than this many, each for at most
// ConnectTimeout.
const maxUnsettledPerPeer = 4

func (m *Manager) enterHandshake(remote identity.Identifier) bool {
	m.hsMu.Lock()
	defer m.hsMu.Unlock()
	if m.handshakes[remote] >= maxUnsettledPerPeer {
		return false
	}
	m.handshakes[remote]++
	return true
}

func (m *Manager) leaveHandshake(remote identity.Identifier) {
	m.hsMu.Lock()
	defer m.hsMu.Unlock()
	if m.handshakes[remote]--; m.handshakes[remote] <= 0 {
		delete(m.handshakes, remote)
	}
}

// admit decides what to do with an inbound HELLO, under m.mu, and carries
// the decision out. On accept, the stream is registered as the pending
// inbound stream and holds a slot; the ACCEPT to send is returned.
func (m *Manager) admit(remote identity.Identifier, in *inStream) (v verdict, reason byte, accept handshake) {
	var o helloOutcome[*inStream, *conn]
	var ended *conn // a resuming connection whose session the HELLO ends
	suspend := false
	defer func() {
		switch {
		case o.how == endSuperseded && suspend:
			// The remote lost the stream and resumes the session.
			if !o.end.suspend("remote reconnected", nil) {
				o.end.supersede()
			}
		case o.how == endSuperseded:
			o.end.supersede()
		case o.how == endRestarted:
			o.end.restarted(in.s.Conn())
		}
		if ended != nil {
			cause := "remote began a new session"
			if ended.remoteInc != in.hello.inc {
				cause = "remote restarted"
			}
			ended.endSession(cause, nil)
		}
		if o.reset != nil {
			_ = o.reset.s.Reset()
		}
		if o.reject != nil {
			o.reject.wake <- false
		}
	}()

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return verdictReject, rejectClosing, accept
	}
	st := m.state(remote)
	defer m.changedLocked(remote, st)
	m.pruneLocked(st)
	free := m.cfg.MaxConnections - m.live - m.pending
	if st.resume != nil {
		if h := in.info(); h.ext && h.inc == st.resumeInfo.inc && h.seq <= st.resumeInfo.staleBelow {
			// Sent before the remote had the connection that now resumes.
			return verdictReject, rejectDuplicate, accept
		}
		free++ // the resuming session's slot
	}
	o = st.hello(in, in.info(), time.Now(), free)
	if o.end != nil && o.how == endSuperseded && resumes(in.hello, o.end) && o.end.resumable() {
		st.resume, st.resumeInfo, suspend = o.end, liveInfo{inc: in.hello.inc}, true
	} else if o.end != nil {
		m.live--
		m.h.ConnManager().Unprotect(remote.PeerID(), protectTag)
	}
	if o.reset != nil {
		m.pending--
	}
	if o.orphan != nil {
		o.orphan.orphaned = true
		m.pending--
	}
	switch o.verdict {
	case verdictReject:
		if o.reason == rejectLimit {
			log.Infow("refusing inbound connection: at MaxConnections", "peer", remote, "max", m.cfg.MaxConnections)
		}
		return o.verdict, o.reason, accept
	case verdictPark:
		return o.verdict, 0, accept
	}
	m.pending++
	accept = m.handshakeLocked(msgAccept, o.dupNonce)
	if r := st.resume; r != nil {
		if resumes(in.hello, r) && accept.hasSession {
			accept.session, in.resume = r.session, r
		} else {
			// The remote restarted, or has no such session: ours ends.
			st.resume, ended = nil, r
			m.live--
			m.h.ConnManager().Unprotect(remote.PeerID(), protectTag)
		}
	}
	return verdictAccept, 0, accept
}

// resumes reports whether HELLO h asks to resume c's session: its id, from
// the process c was with.
func resumes(h handshake, c *conn) bool {
	return h.hasSession && h.session != 0 && h.session == c.session && h.inc == c.remoteInc
}

// handshakeLocked builds this node's HELLO or ACCEPT. The caller holds m.mu:
// an ACCEPT carries the number of the latest opening this node has made,
// and a HELLO the next one.
func (m *Manager) handshakeLocked(typ byte, nonce uint64) handshake {
	h := handshake{typ: typ, maxSize: uint64(m.cfg.MaxMessageSize), nonce: nonce}
	if m.version1.Load() {
		return h
	}
	if typ == msgHello {
		m.openings++
	}
	h.ext, h.inc, h.seq, h.caps = true, m.incarnation, m.openings, capClose
	if m.cfg.ResumeWindow >= 0 {
		h.caps |= capAck
		if m.cfg.ResumeWindow > 0 {
			h.caps |= capResume
		}
		h.resend = uint64(m.cfg.ResendBuffer)
		// A new session (PROTOCOL.md, "Resumption"): a HELLO asks for
		// one with id 0, an ACCEPT names it.
		h.hasSession = true
		if typ == msgAccept {
			h.session = rand.Uint64() | 1
		}
	}
	return h
}

// remoteHandshake is h as this node reads it: without the version-2 fields
// when it speaks version 1 only.
func (m *Manager) remoteHandshake(h handshake) handshake {
	if m.version1.Load() {
		h.ext, h.inc, h.seq, h.caps, h.resend = false, 0, 0, 0, 0
		h.session, h.count, h.hasSession = 0, 0, false
	}
	return h
}

// unpark forgets in if it is still parked.
func (m *Manager) unpark(remote identity.Identifier, in *inStream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.peers[remote]; st != nil && st.unpark(in) {
		m.changedLocked(remote, st)
	}
}

// acceptHandshake answers ACCEPT and waits for CONFIRM. The stream must be
// registered as the pending inbound stream.
func (m *Manager) acceptHandshake(remote identity.Identifier, in *inStream, accept handshake) (*conn, error) {
	s := in.s
	if r := in.resume; r != nil {
		// Announce what we received once the lost stream's reader has
		// stopped; if the session ended meanwhile, a new one begins.
		if sp := r.suspension(); sp != nil && sp.stopped(time.Now().Add(m.cfg.ConnectTimeout)) {
			accept.count = r.ack.announce()
		} else {
			accept.session, in.resume = rand.Uint64()|1, nil
		}
	}
	err := writeHandshake(s, accept)
	var confirm handshake
	if err == nil {
		confirm, err = readHandshake(s)
	}
	if err == nil && confirm.typ != msgConfirm {
		err = fmt.Errorf("%w: expected CONFIRM, got message %#x", errFraming, confirm.typ)
	}

	m.mu.Lock()
	st := m.peers[remote]
	if st == nil || st.in != in {
		// Superseded: our own stream settled, or the remote opened another.
		// A stream that resumed a session is not delivered from: the
		// newer one announces the count that says what to resend.
		orphaned := in.orphaned && !m.closed && in.resume == nil
		m.mu.Unlock()
		if orphaned && err == nil {
			// The remote confirmed it before it opened the newer one:
			// what it sent on it is delivered, then it ends.
			_ = s.SetDeadline(timeZero)
			c := newConn(m, remote, s, true, in.hello, accept.caps)
			c.session = accept.session
			c.replaced = true
			m.metrics.connUp(true)
			m.publish(Event{Kind: EventConnected, Peer: remote, Inbound: true, Conn: c})
			return c, nil
		}
		_ = s.Reset()
		return nil, fmt.Errorf("inbound from %s: superseded", remote.Short())
	}
	m.pending--
	if err != nil || m.closed {
		st.inboundFailed(in)
		m.changedLocked(remote, st)
		m.mu.Unlock()
		if err != nil {
			_ = s.Reset()
			return nil, fmt.Errorf("inbound from %s: %w", remote.Short(), err)
		}
		// The manager closed while the opener confirmed: it holds the
		// connection, so close it gracefully (it learns that we left).
		_ = s.SetDeadline(timeZero)
		c := newConn(m, remote, s, true, in.hello, accept.caps)
		m.metrics.connUp(true)
		w := c.wire()
		m.goroutine(func() { c.readLoop(w) })
		_ = c.Close()
		return nil, fmt.Errorf("inbound from %s: %w", remote.Short(), ErrManagerClosed)
	}
	// Clear the handshake deadline before anyone can Close the connection
	// (which sets its own).
	_ = s.SetDeadline(timeZero)
	info := liveInfo{born: time.Now(), ext: in.hello.ext && accept.ext, inc: in.hello.inc, staleBelow: in.hello.seq}
	if r := in.resume; r != nil {
		if st.resume != r || r.dead.Load() {
			// The session ended while CONFIRM was on its way.
			st.inboundFailed(in)
			m.changedLocked(remote, st)
			m.mu.Unlock()
			_ = s.Reset()
			return nil, fmt.Errorf("inbound from %s: the session to resume ended", remote.Short())
		}
		st.resume = nil
		st.confirmed(in, r, info)
		m.failures.forget(remote)
		m.changedLocked(remote, st)
		m.mu.Unlock()
		r.attach(s, in.hello.count)
		return r, errResumed
	}
	c := newConn(m, remote, s, true, in.hello, accept.caps)
	c.session = accept.session
	info.born = c.born
	st.confirmed(in, c, info)
	m.establishLocked(st, c)
	m.mu.Unlock()
	return c, nil
}

// errResumed says an inbound stream settled as the resumption of a
// session: its connection exists and runs already.
var errResumed = errors.New("session resumed")

func rejectStream(s network.Stream, reason byte) {
	if err := writeHandshake(s, handshake{typ: msgReject, reason: reason}); err != nil {
		_ = s.Reset()
		return
	}
	// Close (not only half-close both ways) so the swarm releases the
	// stream and its resource-manager slot; the REJECT still goes out first.
	_ = s.Close()
}

// openStream runs one outbound handshake on s. ctx bounds it: if ctx ends
// before CONFIRM is sent, the stream is reset and the remote drops it.
func (m *Manager) openStream(ctx context.Context, id identity.Identifier, s network.Stream) (*conn, error) {
	if err := attachService(s, m.proto); err != nil {
		_ = s.Reset()
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = s.Reset()
		return nil, ErrManagerClosed
	}
	st := m.state(id)
	m.pruneLocked(st)
	if c, busy := st.open(); c != nil {
		m.mu.Unlock()
		_ = s.Reset()
		return c, nil
	} else if busy {
		m.mu.Unlock()
		_ = s.Reset()
		return nil, errBusy
	}
	if m.live+m.pending >= m.cfg.MaxConnections {
		m.changedLocked(id, st)
		m.mu.Unlock()
		_ = s.Reset()
		return nil, fmt.Errorf("%d connections: %w", m.cfg.MaxConnections, ErrTooManyConnections)
	}
	hello := m.handshakeLocked(msgHello, rand.Uint64()|1)
	if r := st.resume; r != nil && !resumeHello(&hello, r) {
		m.changedLocked(id, st)
		m.mu.Unlock()
		_ = s.Reset()
		return nil, errBusy
	}
	out := &outStream{s: s, nonce: hello.nonce}
	st.opened(out, out.nonce)
	m.pending++
	m.mu.Unlock()
	m.dedupeSoon(s.Conn().RemotePeer())

	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	reply, err := m.helloExchange(s, hello)
	if err == nil && reply.typ == msgAccept {
		if testHookBeforeConfirm != nil {
			testHookBeforeConfirm(ctx)
		}
		// stop can win against a cancellation still propagating down to
		// ctx's watchers, so ask ctx itself too.
		if !stop() || ctx.Err() != nil {
			err = ctx.Err()
		} else if err = writeHandshake(s, handshake{typ: msgConfirm}); err == nil {
			_ = s.SetDeadline(timeZero)
			return m.outboundSettled(id, out, hello, reply)
		}
	}
	stop()
	_ = s.Reset()
	m.outboundFailed(id, out)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	case reply.typ == msgReject && reply.reason == rejectDuplicate:
		return nil, errDuplicate
	case reply.typ == msgReject:
		return nil, fmt.Errorf("%s: %w", rejectReason(reply.reason), ErrRefused)
	default:
		return nil, fmt.Errorf("%w: unexpected reply %#x to HELLO", errFraming, reply.typ)
	}
}

func (m *Manager) helloExchange(s network.Stream, hello handshake) (handshake, error) {
	if err := writeHandshake(s, hello); err != nil {
		return handshake{}, err
	}
	reply, err := readHandshake(s)
	return m.remoteHandshake(reply), err
}

// outboundSettled makes the connection of an accepted outbound stream, or
// carries on the session it resumes.
func (m *Manager) outboundSettled(id identity.Identifier, out *outStream, hello, reply handshake) (*conn, error) {
	info := liveInfo{born: time.Now(), ext: hello.ext && reply.ext, inc: reply.inc, staleBelow: reply.seq, expectDup: reply.nonce}
	m.mu.Lock()
	st := m.state(id)
	if hello.session != 0 && reply.session == hello.session && (st.resume == nil || st.resume.session != hello.session || st.resume.dead.Load()) {
		// The remote resumed a session that ended here meanwhile (closed
		// while the handshake ran): the stream cannot carry it. The
		// remote sees the reset, and its next attempt starts anew.
		m.mu.Unlock()
		_ = out.s.Reset()
		m.outboundFailed(id, out)
		return nil, fmt.Errorf("resume: the session ended during the handshake: %w", ErrConnectionClosed)
	}
	if st.out == out {
		m.pending--
	}
	var resumed, ended *conn
	if r := st.resume; r != nil {
		st.resume = nil
		if hello.session == r.session && reply.hasSession && reply.session == r.session && !r.dead.Load() {
			resumed = r
		} else {
			ended = r // the remote began a new session
			m.live--
		}
	}
	var c *conn
	if resumed != nil {
		c = resumed
	} else {
		c = newConn(m, id, out.s, false, reply, hello.caps)
		info.born = c.born
	}
	oldIn, orphan, parked := st.accepted(out, c, info)
	if oldIn != nil {
		m.pending--
	}
	if orphan != nil {
		orphan.orphaned = true
		m.pending--
	}
	if resumed != nil {
		m.failures.forget(id)
		m.changedLocked(id, st)
	} else {
		m.establishLocked(st, c)
	}
	closed := m.closed
	m.mu.Unlock()
	if oldIn != nil {
		_ = oldIn.s.Reset()
	}
	if parked != nil {
		parked.wake <- false
	}
	if ended != nil {
		ended.endSession("remote began a new session", nil)
	}
	if resumed != nil {
		c.attach(out.s, reply.count)
		if closed {
			_ = c.Close()
		}
		return c, nil
	}
	m.start(c)
	if closed {
		// Close began after CONFIRM went out: the remote has the connection,
		// so end it gracefully rather than leave it out of Close's reach.
		_ = c.Close()
	}
	return c, nil
}

// outboundFailed unregisters a failed outbound stream and lets a parked
// inbound stream proceed in its place.
func (m *Manager) outboundFailed(id identity.Identifier, out *outStream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.peers[id]
	if st == nil {
		return
	}
	p, ok := st.outboundFailed(out)
	if !ok {
		return
	}
	m.pending--
	if p != nil {
		p.wake <- true
	}
	m.changedLocked(id, st)
}
