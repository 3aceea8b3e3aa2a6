package p2pconn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/resolver"
)

// dialCall is one Connect in progress, shared by every caller waiting for the
// same peer. It is cancelled when its last waiter gives up. Fields other than
// done, conn and err are guarded by Manager.mu.
//
// Each caller brings its ConnectSettings. The dial runs with the most
// generous of its callers' (the most retries, the longest attempt timeout,
// raised when a caller joins), and each caller stops waiting on its own
// budget (waitDial).
type dialCall struct {
	done    chan struct{}
	conn    *conn
	err     error
	waiters int
	cancel  context.CancelFunc

	retries  int           // the most RetryAttempts among the callers
	timeout  time.Duration // the longest ConnectTimeout among the callers
	failed   int           // attempts failed so far
	errs     []error       // their errors
	running  bool          // an attempt is under way (not a wait between attempts)
	started  time.Time     // when the current attempt began
	progress chan struct{} // closed and replaced when an attempt starts or fails
}

// join adds a caller with settings s. The caller holds m.mu.
func (d *dialCall) join(s ConnectSettings) {
	d.waiters++
	d.retries = max(d.retries, s.RetryAttempts)
	d.timeout = max(d.timeout, s.ConnectTimeout)
}

// moved wakes the callers waiting for the dial's progress. The caller holds m.mu.
func (d *dialCall) moved() {
	close(d.progress)
	d.progress = make(chan struct{})
}

// startDial starts the shared dial to id. The caller holds m.mu.
func (m *Manager) startDial(id identity.Identifier, st *peerState) *dialCall {
	ctx, cancel := context.WithCancel(m.ctx)
	d := &dialCall{done: make(chan struct{}), cancel: cancel, progress: make(chan struct{})}
	st.dial = d
	m.goroutine(func() {
		c, err := m.dialLoop(ctx, id, d)
		cancel()
		m.metrics.connectResult(err)
		m.mu.Lock()
		if st := m.peers[id]; st != nil && st.dial == d {
			st.dial = nil
			m.changedLocked(id, st)
		}
		m.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("connect %s: %w", id.Short(), err)
		}
		d.conn, d.err = c, err
		close(d.done)
	})
	return d
}

// waitDial waits for the shared dial d on behalf of one Connect with
// settings s. The call counts as failed every attempt of d that failed
// (those before it joined included), and the attempt under way once it has
// run for s.ConnectTimeout since it began or since the call joined,
// whichever is later; after s.RetryAttempts+1 failed attempts it gives up
// with their errors, while d goes on for its other callers. So a fail-fast
// caller (no retry) returns at d's first failure, or after its own timeout.
func (m *Manager) waitDial(ctx context.Context, id identity.Identifier, d *dialCall, s ConnectSettings) (Connection, error) {
	joined := time.Now()
	charged := 0       // attempts this call counts as failed
	var timedOut error // the attempt this call stopped waiting for, if any
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		m.mu.Lock()
		if charged <= d.failed {
			charged, timedOut = d.failed, nil
		}
		if charged > s.RetryAttempts {
			errs := append(slices.Clone(d.errs[:min(charged, d.failed)]), timedOut)
			m.leaveDialLocked(id, d)
			m.mu.Unlock()
			return nil, fmt.Errorf("connect %s: %w", id.Short(), errors.Join(errs...))
		}
		var expire <-chan time.Time
		if d.running && charged == d.failed {
			began := d.started
			if began.Before(joined) {
				began = joined
			}
			wait := time.Until(began.Add(s.ConnectTimeout))
			if wait <= 0 {
				charged++
				timedOut = fmt.Errorf("attempt %d: gave up after %s: %w", charged, s.ConnectTimeout, context.DeadlineExceeded)
				m.mu.Unlock()
				continue
			}
			timer.Reset(wait)
			expire = timer.C
		}
		progress := d.progress
		m.mu.Unlock()
		select {
		case <-d.done:
			if d.err != nil {
				return nil, d.err
			}
			return d.conn, nil
		case <-progress:
		case <-expire:
		case <-ctx.Done():
			m.leaveDial(id, d)
			return nil, fmt.Errorf("connect %s: %w", id.Short(), ctx.Err())
		}
		timer.Stop()
	}
}

// leaveDial drops a waiter that gave up; the last one cancels the dial, and a
// later Connect starts afresh.
func (m *Manager) leaveDial(id identity.Identifier, d *dialCall) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leaveDialLocked(id, d)
}

// leaveDialLocked is leaveDial with m.mu held.
func (m *Manager) leaveDialLocked(id identity.Identifier, d *dialCall) {
	d.waiters--
	if d.waiters > 0 {
		return
	}
	d.cancel()
	if st := m.peers[id]; st != nil && st.dial == d {
		st.dial = nil
		m.changedLocked(id, st)
	}
}

// attemptStarts marks an attempt of d under way, unless one is (a wait for
// the remote's stream goes on with the same attempt), and returns the
// timeout of an attempt.
func (m *Manager) attemptStarts(d *dialCall) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !d.running {
		d.running, d.started = true, time.Now()
		d.moved()
	}
	return d.timeout
}

// attemptFailed records the failure of d's attempt and reports whether the
// dial goes on: err may pass and a caller still has retries left. A dial that
// stops leaves the peer's state at once, so that a Connect from now on starts
// a new one instead of joining a dial that has given up.
func (m *Manager) attemptFailed(id identity.Identifier, d *dialCall, err error) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	d.running = false
	d.failed++
	d.errs = append(d.errs, err)
	if !permanent(err) && m.cfg.UnreachableFor > 0 && d.failed > d.retries {
		// Every caller's retries failed: remember it before they learn,
		// so their next Connects fail at once (Config.UnreachableFor).
		m.failures.record(id, err)
	}
	d.moved()
	if !permanent(err) && d.failed <= d.retries {
		return true
	}
	if st := m.peers[id]; st != nil && st.dial == d {
		st.dial = nil
		m.changedLocked(id, st)
	}
	return false
}

// dialLoop makes attempts until one succeeds, one fails for good, or every
// caller's retries have failed.
func (m *Manager) dialLoop(ctx context.Context, id identity.Identifier, d *dialCall) (*conn, error) {
	var errs []error
	waits := 0
	for attempt := 0; ; {
		timeout := m.attemptStarts(d)
		actx, cancel := context.WithTimeout(ctx, timeout)
		m.metrics.attempt(attempt)
		c, err := m.attempt(actx, id, timeout)
		cancel()
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, errors.Join(append(errs, ctx.Err())...)
		}
		_, settling := m.settling(id)
		if (settling || errors.Is(err, errBusy) || errors.Is(err, errDuplicate)) && waits < maxSettleWaits {
			// Another handshake with the peer is in progress, or the remote
			// chose its own stream (it rejected ours as a duplicate, or
			// closed our libp2p connection): wait for that stream to settle,
			// then look again.
			waits++
			// A duplicate waits for the remote's stream, which may not
			// have arrived yet; otherwise the wait ends as soon as no
			// handshake is in progress, even if its end came before the
			// wait began.
			c, werr := m.awaitSettled(ctx, id, timeout, !errors.Is(err, errDuplicate))
			if c != nil {
				return c, nil
			}
			if ctx.Err() != nil {
				return nil, errors.Join(append(errs, fmt.Errorf("waiting for the remote's stream: %w", werr))...)
			}
			if werr == nil || !errors.Is(err, errDuplicate) && !errors.Is(err, errBusy) {
				continue
			}
			err = fmt.Errorf("%w: no stream of the remote settled within %s", err, timeout)
		}
		attempt++
		err = fmt.Errorf("attempt %d: %w", attempt, err)
		errs = append(errs, err)
		if !m.attemptFailed(id, d, err) {
			if attempt > 1 {
				log.Debugw("connect failed", "peer", id, "attempts", attempt, "err", err)
			}
			return nil, errors.Join(errs...)
		}
		delay := m.backoff(attempt)
		log.Debugw("connect attempt failed, retrying", "peer", id, "attempt", attempt, "delay", delay, "err", err)
		if err := m.waitChange(ctx, m.changedChan(id), delay); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return nil, errors.Join(append(errs, err)...)
		}
	}
}

// awaitSettled waits up to d for a live connection to id: the remote's
// stream, or another Connect's, settling. If untilQuiet, it also returns
// (nil, nil) once no handshake with id is in progress. It looks at the
// state again at every change, taking the change channel under the lock it
// checks under, so no change is missed.
func (m *Manager) awaitSettled(ctx context.Context, id identity.Identifier, d time.Duration, untilQuiet bool) (*conn, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		m.mu.Lock()
		c := m.liveConn(id)
		st := m.state(id)
		quiet := !st.handshaking()
		changed := st.changed
		m.mu.Unlock()
		if c != nil {
			return c, nil
		}
		if untilQuiet && quiet {
			return nil, nil
		}
		select {
		case <-changed:
		case <-t.C:
			return nil, context.DeadlineExceeded
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// dial makes sure there is a libp2p connection to p: it resolves id's
// addresses and connects, unless a connection exists, or appears while the
// resolver works (the peer dialed us; a DHT lookup may then even answer
// without addresses). When every address of the answer fails, it tells a
// caching resolver to forget the answer (resolver.Invalidator) and dials the
// resolver's next answer with other addresses, if it offers one
// (resolver.Fallback: a chain's later members), within this attempt. timeout
// bounds each libp2p dial.
func (m *Manager) dial(ctx context.Context, id identity.Identifier, p peer.ID, timeout time.Duration) error {
	connected := func() bool {
		// A relayed (limited) connection carries skipwire too.
		c := m.h.Network().Connectedness(p)
		return c == network.Connected || c == network.Limited
	}
	if connected() {
		return nil
	}
	info, err := m.resolve(ctx, id, p)
	if err != nil {
		if connected() {
			return nil
		}
		return err
	}
	var tried []ma.Multiaddr
	var failed error
	for {
		err := m.connect(ctx, info, timeout)
		if err == nil {
			return nil
		}
		if failed = thenErr(failed, err); !addressesFailed(ctx, err) {
			return failed
		}
		m.forget(id)
		tried = append(tried, info.Addrs...)
		var ok bool
		if info, ok = m.nextAnswer(ctx, id, p, tried); !ok {
			return failed
		}
	}
}

// maxSettleWaits bounds how often one Connect waits for a stream of the
// remote's to settle instead of making its own attempt.
const maxSettleWaits = 8

// attempt makes one connection attempt: reuse what settled meanwhile, dial
// the libp2p connection if there is none, open the stream and handshake.
func (m *Manager) attempt(ctx context.Context, id identity.Identifier, timeout time.Duration) (*conn, error) {
	m.mu.RLock()
	c := m.liveConn(id)
	st := m.peers[id]
	busy := st != nil && (st.in != nil || st.out != nil)
	m.mu.RUnlock()
	if c != nil {
		return c, nil
	}
	if busy {
		return nil, errBusy
	}

	p := id.PeerID()
	if err := m.dial(ctx, id, p, timeout); err != nil {
		return nil, err
	}
	// A relayed libp2p connection is limited: libp2p opens streams on it
	// only when asked to, and prefers an unlimited connection if there is one.
	sctx := network.WithAllowLimitedConn(network.WithNoDial(ctx, "skipwire stream"), "skipwire stream")
	s, err := m.h.NewStream(sctx, p, m.proto)
	if err != nil {
		if notServed(err) {
			return nil, fmt.Errorf("open stream: remote does not serve %s (no manager, or another NetworkName): %w: %w", m.proto, ErrRefused, err)
		}
		return nil, fmt.Errorf("open stream: %w", err)
	}
	c, err = m.openStream(ctx, id, s)
	if err != nil && !errors.Is(err, errBusy) && !errors.Is(err, errDuplicate) {
		if notServed(err) {
			// Negotiated lazily (identify had listed the protocol): the
			// remote no longer serves it, which is as final as above.
			return nil, fmt.Errorf("handshake: remote does not serve %s: %w: %w", m.proto, ErrRefused, err)
		}
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return c, err
}

// settling returns the live connection to id, if any, else whether a
// stream from the remote is being set up.
func (m *Manager) settling(id identity.Identifier) (*conn, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if c := m.liveConn(id); c != nil {
		return c, false
	}
	st := m.peers[id]
	return nil, st != nil && (st.in != nil || st.parked != nil)
}

// notServed reports whether opening a stream failed because the remote does
// not serve the protocol: an eager negotiation's answer, or a lazy one's
// (the first read or write fails, or the remote resets the stream with
// StreamProtocolNegotiationFailed).
func notServed(err error) bool {
	var unsupported msmux.ErrNotSupported[protocol.ID]
	var se *network.StreamError
	return errors.As(err, &unsupported) ||
		errors.As(err, &se) && se.Remote && se.ErrorCode == network.StreamProtocolNegotiationFailed
}

// permanent reports whether an attempt failed in a way no retry can fix.
func permanent(err error) bool {
	for _, target := range []error{
		resolver.ErrNotFound, ErrPeerMismatch, ErrRefused, ErrSelfConnect,
		ErrTooManyConnections, ErrManagerClosed, swarm.ErrGaterDisallowedConnection,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// backoff returns the wait before retry n (1-based): Config.RetryBackoff.
func (m *Manager) backoff(n int) time.Duration { return m.cfg.RetryBackoff(n) }

// changedChan returns the channel closed at the next change of id's state.
func (m *Manager) changedChan(id identity.Identifier) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state(id).changed
}

// waitChange waits until changed is closed (nil), d passes
// (context.DeadlineExceeded) or ctx ends (its error).
func (m *Manager) waitChange(ctx context.Context, changed <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
		return nil
	case <-t.C:
		return context.DeadlineExceeded
	case <-ctx.Done():
		return ctx.Err()
	}
}
