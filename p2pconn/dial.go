package p2pconn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
type dialCall struct {
	done    chan struct{}
	conn    *conn
	err     error
	waiters int
	cancel  context.CancelFunc
}

// startDial starts the shared dial to id. The caller holds m.mu.
func (m *Manager) startDial(id identity.Identifier, st *peerState) *dialCall {
	ctx, cancel := context.WithCancel(m.ctx)
	d := &dialCall{done: make(chan struct{}), cancel: cancel}
	st.dial = d
	m.goroutine(func() {
		c, err := m.dialLoop(ctx, id)
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

// leaveDial drops a waiter that gave up; the last one cancels the dial, and a
// later Connect starts afresh.
func (m *Manager) leaveDial(id identity.Identifier, d *dialCall) {
	m.mu.Lock()
	defer m.mu.Unlock()
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

// dialLoop makes attempts until one succeeds, one fails for good, or
// RetryAttempts retries have failed.
func (m *Manager) dialLoop(ctx context.Context, id identity.Identifier) (*conn, error) {
	var errs []error
	waits := 0
	for attempt := 0; ; {
		changed := m.changedChan(id)
		actx, cancel := context.WithTimeout(ctx, m.cfg.ConnectTimeout)
		m.metrics.attempt(attempt)
		c, err := m.attempt(actx, id)
		cancel()
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, errors.Join(append(errs, ctx.Err())...)
		}
		if (errors.Is(err, errBusy) || errors.Is(err, errDuplicate)) && waits < maxSettleWaits {
			waits++
			// A stream from the remote is settling: wait for it, then look again.
			if err := m.waitChange(ctx, changed, m.cfg.ConnectTimeout); err != nil {
				return nil, errors.Join(append(errs, fmt.Errorf("waiting for the remote's stream: %w", err))...)
			}
			continue
		}
		if c, settling := m.settling(id); c != nil {
			return c, nil
		} else if settling && waits < maxSettleWaits {
			// Our attempt failed because the remote's stream won (the
			// remote closed our libp2p connection): wait for that stream.
			waits++
			if err := m.waitChange(ctx, changed, m.cfg.ConnectTimeout); err != nil {
				return nil, errors.Join(append(errs, fmt.Errorf("waiting for the remote's stream: %w", err))...)
			}
			continue
		}
		attempt++
		err = fmt.Errorf("attempt %d: %w", attempt, err)
		errs = append(errs, err)
		if permanent(err) || attempt > m.cfg.RetryAttempts {
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

// dial makes sure there is a libp2p connection to p: it resolves id's
// addresses and connects, unless a connection exists, or appears while the
// resolver works (the peer dialed us; a DHT lookup may then even answer
// without addresses). When every address of the answer fails, it tells a
// caching resolver to forget the answer (resolver.Invalidator) and dials the
// resolver's next answer with other addresses, if it offers one
// (resolver.Fallback: a chain's later members), within this attempt.
func (m *Manager) dial(ctx context.Context, id identity.Identifier, p peer.ID) error {
	connected := func() bool { return m.h.Network().Connectedness(p) == network.Connected }
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
		err := m.connect(ctx, info)
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
func (m *Manager) attempt(ctx context.Context, id identity.Identifier) (*conn, error) {
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
	if err := m.dial(ctx, id, p); err != nil {
		return nil, err
	}
	s, err := m.h.NewStream(network.WithNoDial(ctx, "skipwire stream"), p, ProtocolID)
	if err != nil {
		var unsupported msmux.ErrNotSupported[protocol.ID]
		if errors.As(err, &unsupported) {
			return nil, fmt.Errorf("open stream: remote does not serve %s: %w: %w", ProtocolID, ErrRefused, err)
		}
		return nil, fmt.Errorf("open stream: %w", err)
	}
	c, err = m.openStream(ctx, id, s)
	if err != nil && !errors.Is(err, errBusy) && !errors.Is(err, errDuplicate) {
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

// backoff returns the wait before retry n (1-based): a random duration in
// [d/2, d) with d = RetryDelay * 2^(n-1), capped at MaxRetryDelay.
func (m *Manager) backoff(n int) time.Duration {
	d := m.cfg.RetryDelay
	for i := 1; i < n && d < m.cfg.MaxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, m.cfg.MaxRetryDelay)
	return d/2 + rand.N(d/2+1)
}

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
