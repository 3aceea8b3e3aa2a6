package p2pconn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	s     network.Stream
	hello handshake
	wake  chan bool // parked only: true = proceed, false = reject as duplicate
}

// verdict is what admitting an inbound HELLO decided.
type verdict int

const (
	verdictAccept verdict = iota
	verdictReject
	verdictPark
)

// handleStream serves a stream a remote opened on ProtocolID.
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
	if !m.enterHandshake(remote) {
		log.Debugw("refusing stream: too many unsettled streams from the peer", "peer", remote, "max", maxUnsettledPerPeer)
		_ = s.Reset()
		return
	}
	defer m.leaveHandshake(remote)
	deadline := time.Now().Add(m.cfg.ConnectTimeout)
	_ = s.SetDeadline(deadline)
	stop := context.AfterFunc(m.ctx, func() { _ = s.Reset() })
	defer stop()

	hello, err := readHandshake(s)
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
	in := &inStream{s: s, hello: hello}

	var dupNonce uint64
	for {
		var v verdict
		var reason byte
		v, reason, dupNonce = m.admit(remote, in)
		if v == verdictAccept {
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

	c, err := m.acceptHandshake(remote, in, dupNonce)
	if err != nil {
		log.Debugw("inbound handshake failed", "peer", remote, "err", err)
		return
	}
	m.start(c)
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

// admit decides what to do with an inbound HELLO, under m.mu. On accept, the
// stream is registered as st.inbound and holds a slot.
func (m *Manager) admit(remote identity.Identifier, in *inStream) (v verdict, reason byte, dupNonce uint64) {
	var replaced, superseded *conn
	var supersededIn *inStream
	defer func() {
		if replaced != nil {
			replaced.supersede()
		}
		if superseded != nil {
			_ = superseded.s.Reset()
		}
		if supersededIn != nil {
			_ = supersededIn.s.Reset()
		}
	}()

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return verdictReject, rejectClosing, 0
	}
	st := m.state(remote)
	defer m.changedLocked(remote, st)

	if c := st.conn; c != nil && !c.dead.Load() {
		// A HELLO the remote sent before it learned of this connection is
		// stale: the one it told us to expect, or any that reaches us
		// within ConnectTimeout of the connection's birth (an opening that
		// failed on the remote's side, say on a duplicate libp2p connection
		// we closed, may still deliver its HELLO; no opening outlives
		// ConnectTimeout).
		if in.hello.nonce == st.expectDup || time.Since(c.born) < m.cfg.ConnectTimeout {
			return verdictReject, rejectDuplicate, 0
		}
		// The remote has no connection to us any more: ours is stale.
		st.conn = nil
		m.live--
		replaced = c
	}
	if st.outbound != nil {
		if m.self.Compare(remote) < 0 {
			// We are the smaller: our stream wins if it settles; hold theirs
			// until it does.
			if old := st.parked; old != nil {
				old.wake <- false
			}
			in.wake = make(chan bool, 1)
			st.parked = in
			return verdictPark, 0, 0
		}
		// We are the larger: theirs wins; tell them to reject ours.
		dupNonce = st.outbound.nonce
	}
	if old := st.inbound; old != nil {
		// The remote gave up on that stream and opened this one.
		st.inbound = nil
		m.pending--
		supersededIn = old
	}
	if m.live+m.pending >= m.cfg.MaxConnections {
		log.Infow("refusing inbound connection: at MaxConnections", "peer", remote, "max", m.cfg.MaxConnections)
		return verdictReject, rejectLimit, 0
	}
	st.inbound = in
	m.pending++
	return verdictAccept, 0, dupNonce
}

// unpark forgets in if it is still parked.
func (m *Manager) unpark(remote identity.Identifier, in *inStream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.peers[remote]; st != nil && st.parked == in {
		st.parked = nil
		m.changedLocked(remote, st)
	}
}

// acceptHandshake answers ACCEPT and waits for CONFIRM. The stream must be
// registered as st.inbound.
func (m *Manager) acceptHandshake(remote identity.Identifier, in *inStream, dupNonce uint64) (*conn, error) {
	s := in.s
	err := writeHandshake(s, handshake{typ: msgAccept, maxSize: uint64(m.cfg.MaxMessageSize), nonce: dupNonce})
	var confirm handshake
	if err == nil {
		confirm, err = readHandshake(s)
	}
	if err == nil && confirm.typ != msgConfirm {
		err = fmt.Errorf("%w: expected CONFIRM, got message %#x", errFraming, confirm.typ)
	}

	m.mu.Lock()
	st := m.peers[remote]
	if st == nil || st.inbound != in {
		// Superseded: our own stream settled, or the remote opened another.
		m.mu.Unlock()
		_ = s.Reset()
		return nil, fmt.Errorf("inbound from %s: superseded", remote.Short())
	}
	st.inbound = nil
	m.pending--
	if err != nil || m.closed {
		m.changedLocked(remote, st)
		m.mu.Unlock()
		_ = s.Reset()
		if err == nil {
			err = ErrManagerClosed
		}
		return nil, fmt.Errorf("inbound from %s: %w", remote.Short(), err)
	}
	// Clear the handshake deadline before anyone can Close the connection
	// (which sets its own).
	_ = s.SetDeadline(timeZero)
	c := newConn(m, remote, s, true, in.hello.maxSize)
	m.establishLocked(st, c)
	m.mu.Unlock()
	return c, nil
}

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
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = s.Reset()
		return nil, ErrManagerClosed
	}
	st := m.state(id)
	if c := st.conn; c != nil && !c.dead.Load() {
		m.mu.Unlock()
		_ = s.Reset()
		return c, nil
	}
	if st.inbound != nil || st.outbound != nil {
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
	out := &outStream{s: s, nonce: rand.Uint64() | 1}
	st.outbound = out
	m.pending++
	m.mu.Unlock()
	m.dedupeSoon(s.Conn().RemotePeer())

	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	reply, err := m.helloExchange(s, out.nonce)
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
			return m.outboundSettled(id, out, reply), nil
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

func (m *Manager) helloExchange(s network.Stream, nonce uint64) (handshake, error) {
	if err := writeHandshake(s, handshake{typ: msgHello, maxSize: uint64(m.cfg.MaxMessageSize), nonce: nonce}); err != nil {
		return handshake{}, err
	}
	return readHandshake(s)
}

// outboundSettled makes the connection of an accepted outbound stream.
func (m *Manager) outboundSettled(id identity.Identifier, out *outStream, reply handshake) *conn {
	c := newConn(m, id, out.s, false, reply.maxSize)
	var oldIn, parked *inStream
	m.mu.Lock()
	st := m.state(id)
	if st.outbound == out {
		st.outbound = nil
		m.pending--
	}
	st.expectDup = reply.nonce
	if in := st.inbound; in != nil {
		// The remote accepted our stream, so it gave up on this one.
		st.inbound = nil
		m.pending--
		oldIn = in
	}
	parked, st.parked = st.parked, nil
	m.establishLocked(st, c)
	closed := m.closed
	m.mu.Unlock()
	if oldIn != nil {
		_ = oldIn.s.Reset()
	}
	if parked != nil {
		parked.wake <- false
	}
	m.start(c)
	if closed {
		// Close began after CONFIRM went out: the remote has the connection,
		// so end it gracefully rather than leave it out of Close's reach.
		_ = c.Close()
	}
	return c
}

// outboundFailed unregisters a failed outbound stream and lets a parked
// inbound stream proceed in its place.
func (m *Manager) outboundFailed(id identity.Identifier, out *outStream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.peers[id]
	if st == nil || st.outbound != out {
		return
	}
	st.outbound = nil
	m.pending--
	if p := st.parked; p != nil {
		st.parked = nil
		p.wake <- true
	}
	m.changedLocked(id, st)
}
