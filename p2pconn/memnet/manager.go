package memnet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/eventq"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// Manager is one node of a Network: an in-memory p2pconn.ConnectionManager.
// Create it with Network.NewManager. Every method is safe for concurrent use.
// A Manager starts no goroutines but one per event subscription and, with
// Config.IdleTimeout, one that closes idle connections; Close and Crash end
// them all.
//
// The connection policy of p2pconn.Config applies as with the libp2p
// Manager: IdleTimeout closes connections that carried no message for that
// long, EvictAtLimit makes room at MaxConnections by closing the least
// recently used connection, both without loss (see Conn) and sparing the
// peers given to Protect, and UnreachableFor remembers a peer that a Connect
// could not reach across a partition. A connection is used when it opens,
// when a Send of either side commits a message and when Next hands one out;
// one with messages waiting for Next on this side, or with a Send of either
// side in progress, is never idle. A connection whose session is resuming
// (Config.ResumeWindow, see Conn) is neither closed idle nor evicted, and
// counts against MaxConnections.
type Manager struct {
	net      *Network
	id       identity.Identifier
	cfg      p2pconn.Config // defaults filled in
	quit     chan struct{}  // closed when the manager closes or crashes
	idleDone chan struct{}  // closed when closeIdle has returned; nil without IdleTimeout
	events   eventq.Hub[p2pconn.Event]

	// Guarded by net.mu.
	conns       map[identity.Identifier]*Conn // the pool: live connections only
	protected   map[identity.Identifier]struct{}
	unreachable map[identity.Identifier]failure // peers a Connect failed to reach lately
	pipes       map[*pipe]struct{}              // every connection of this node not yet settled
	accepts     []*Conn                         // opened by remotes, not yet accepted
	acceptCh    chan struct{}                   // closed and cleared when accepts grows or the manager closes
	closed      bool
	closeDone   chan struct{} // closed when Close (or Crash) has finished
}

// failure is the last failed Connect to a peer, for Config.UnreachableFor.
type failure struct {
	at    time.Time // when the last attempt failed
	cause error     // why
}

var _ p2pconn.ConnectionManager = (*Manager)(nil)

// ID returns the Identifier this manager joined the Network with.
func (m *Manager) ID() identity.Identifier { return m.id }

// Connect returns the live connection to id, opening one if there is none;
// the connection may have been opened by id, in which case it is the one id's
// Accept yields. An attempt never blocks: it returns the cached connection, a
// new one, or an error at once, so ConnectTimeout never cuts one. It fails
// with an error wrapping p2pconn.ErrSelfConnect for the manager's own
// Identifier, resolver.ErrNotFound for an Identifier no live manager of the
// Network uses, p2pconn.ErrRefused for a manager of another
// Config.NetworkName, ErrUnreachable across a partition,
// p2pconn.ErrTooManyConnections when this manager holds MaxConnections
// connections, p2pconn.ErrRefused when the remote does, and
// p2pconn.ErrManagerClosed after Close. A ctx that has ended fails a Connect
// that would open a connection.
//
// With Config.EvictAtLimit, a manager at MaxConnections (this one, or the
// remote for the connection it is asked to take) makes room instead of
// refusing: it closes its least recently used connection whose peer is not
// protected, without loss (see Conn). It refuses as without EvictAtLimit
// when every connection is protected.
//
// A connection whose session is resuming (see Conn) is returned once it has
// resumed: Connect reconnects at once, an attempt like any other, which
// fails across a partition (the connection stays, resuming) and, when the
// remote no longer holds the session, ends it and opens a new connection.
//
// A partition is the one failure that may pass: across it, Connect retries
// RetryAttempts times (the Config's, or WithRetryAttempts for this call),
// waiting Config.RetryBackoff between attempts, so a Heal meanwhile lets it
// succeed; the wait is the only time Connect blocks, and ctx and Close end it.
// Concurrent Connects each make their own attempts, as attempts are instant.
//
// When a Connect fails so, after its last attempt, the peer is remembered
// for Config.UnreachableFor: until then, Connects to it that would open a
// connection and not retry fail at once with a *p2pconn.UnreachableError,
// which matches p2pconn.ErrUnreachable and the last attempt's error
// (ErrUnreachable of this package); Connects with retries count it as their
// first failed attempt and wait for the window to end; Connects with
// p2pconn.IgnoreRecentFailure try at once. A connection the
// peer opens, a successful Connect and Network.Heal of the pair clear it.
func (m *Manager) Connect(ctx context.Context, id identity.Identifier, opts ...p2pconn.ConnectOption) (p2pconn.Connection, error) {
	s := m.cfg.ConnectSettings(opts...)
	c, err := m.connectOnce(ctx, id, !s.IgnoreRecentFailure)
	var recent *p2pconn.UnreachableError
	if errors.As(err, &recent) && s.RetryAttempts > 0 {
		// The remembered failure counts as the first attempt: wait for its
		// window to end, then go on with one retry less.
		t := time.NewTimer(time.Until(recent.LastTried.Add(m.cfg.UnreachableFor)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("connect %s: %w (%w)", id.Short(), ctx.Err(), err)
		case <-m.quit:
			t.Stop()
			return nil, fmt.Errorf("connect %s: %w", id.Short(), p2pconn.ErrManagerClosed)
		}
		s.RetryAttempts--
		c, err = m.connectOnce(ctx, id, false)
	}
	if err == nil || !errors.Is(err, ErrUnreachable) || errors.Is(err, p2pconn.ErrUnreachable) {
		return c, err // done, a failure that does not pass, or a recent one
	}
	last := time.Now()
	errs := []error{fmt.Errorf("attempt 1: %w", err)}
	for retry := 1; retry <= s.RetryAttempts; retry++ {
		t := time.NewTimer(m.cfg.RetryBackoff(retry))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			m.remember(id, last, err)
			return nil, fmt.Errorf("connect %s: %w", id.Short(), errors.Join(append(errs, ctx.Err())...))
		case <-m.quit:
			t.Stop()
			return nil, fmt.Errorf("connect %s: %w", id.Short(), errors.Join(append(errs, p2pconn.ErrManagerClosed)...))
		}
		c, err = m.connectOnce(ctx, id, false)
		if err == nil || !errors.Is(err, ErrUnreachable) {
			return c, err
		}
		last = time.Now()
		errs = append(errs, fmt.Errorf("attempt %d: %w", retry+1, err))
	}
	m.remember(id, last, err)
	if len(errs) == 1 {
		return nil, err
	}
	return nil, fmt.Errorf("connect %s: %w", id.Short(), errors.Join(errs...))
}

// connectOnce makes one attempt of Connect; checkRecent makes it fail at once
// if a failure to reach id is remembered.
func (m *Manager) connectOnce(ctx context.Context, id identity.Identifier, checkRecent bool) (p2pconn.Connection, error) {
	n := m.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("connect %s: %w", id.Short(), p2pconn.ErrManagerClosed)
	}
	cur := m.conns[id]
	if cur != nil && !cur.resuming() {
		return cur, nil
	}
	if id == m.id {
		return nil, fmt.Errorf("connect %s: %w", id.Short(), p2pconn.ErrSelfConnect)
	}
	if checkRecent {
		if err := m.recentFailureLocked(id); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", id.Short(), err)
	}
	r := n.nodes[id]
	if r == nil {
		return nil, fmt.Errorf("connect %s: resolve: %w", id.Short(), resolver.ErrNotFound)
	}
	if r.cfg.NetworkName != m.cfg.NetworkName {
		return nil, fmt.Errorf("connect %s: open: remote does not serve %s: %w", id.Short(), p2pconn.ProtocolFor(m.cfg.NetworkName), p2pconn.ErrRefused)
	}
	if n.cutLocked(m.id, id) {
		return nil, fmt.Errorf("connect %s: dial: %w", id.Short(), ErrUnreachable)
	}
	// A session with id that resumes, on either side, resumes now or ends.
	if cur != nil {
		n.reconnectLocked(cur.p)
		if cur.IsAlive() {
			return cur, nil
		}
	}
	if rc := r.conns[m.id]; rc != nil {
		n.reconnectLocked(rc.p)
	}
	// Both sides must be able to take the connection before either evicts.
	var evict []*Conn
	if len(m.conns) >= m.cfg.MaxConnections {
		v := m.victimLocked()
		if v == nil {
			return nil, fmt.Errorf("connect %s: %w (limit %d)", id.Short(), p2pconn.ErrTooManyConnections, m.cfg.MaxConnections)
		}
		evict = append(evict, v)
	}
	if len(r.conns) >= r.cfg.MaxConnections {
		v := r.victimLocked()
		if v == nil {
			return nil, fmt.Errorf("connect %s: open: %w (remote at its limit of %d connections)", id.Short(), p2pconn.ErrRefused, r.cfg.MaxConnections)
		}
		evict = append(evict, v)
	}
	if !r.makeAcceptRoomLocked() {
		return nil, fmt.Errorf("connect %s: open: %w (remote's accept queue holds %d connections)", id.Short(), p2pconn.ErrRefused, len(r.accepts))
	}
	for _, v := range evict {
		v.p.mu.Lock()
		v.retireLocked("evicted at MaxConnections")
		v.p.mu.Unlock()
	}
	c, rc := newPipe(m, r)
	m.conns[id], r.conns[m.id] = c, rc
	m.pipes[c.p], r.pipes[c.p] = struct{}{}, struct{}{}
	delete(m.unreachable, id)
	delete(r.unreachable, m.id)
	r.accepts = append(r.accepts, rc)
	r.notifyAcceptLocked()
	m.events.Publish(p2pconn.Event{Kind: p2pconn.EventConnected, Peer: id, Conn: c})
	r.events.Publish(p2pconn.Event{Kind: p2pconn.EventConnected, Peer: m.id, Inbound: true, Conn: rc})
	log.Debugf("%s: connected to %s", m.id.Short(), id.Short())
	return c, nil
}

// Subscribe returns a channel of connection events, as the libp2p Manager's:
// EventConnected on both sides when a Connect opens a connection (Inbound on
// the remote's side), EventDisconnected when one dies, with Event.Err saying
// why. Events of one connection arrive in order; a reader that falls behind
// never blocks the Network (events queue, up to a bound, then the oldest are
// dropped). cancel ends the subscription and closes the channel; Close and
// Crash end every subscription.
func (m *Manager) Subscribe() (events <-chan p2pconn.Event, cancel func()) {
	return m.events.Subscribe()
}

// Accept blocks until a remote node opens a connection, ctx ends or the
// manager closes, and returns each such connection once, in the order they
// were opened, even one that has died since (its queued messages stay
// readable). The queue holds at most MaxConnections connections; when it is
// full, a new inbound connection pushes out the oldest dead one. After Close it
// fails with p2pconn.ErrManagerClosed.
func (m *Manager) Accept(ctx context.Context) (p2pconn.Connection, error) {
	n := m.net
	n.mu.Lock()
	for {
		if m.closed {
			n.mu.Unlock()
			return nil, fmt.Errorf("accept: %w", p2pconn.ErrManagerClosed)
		}
		if len(m.accepts) > 0 {
			c := m.accepts[0]
			m.accepts[0] = nil
			m.accepts = m.accepts[1:]
			n.mu.Unlock()
			return c, nil
		}
		if m.acceptCh == nil {
			m.acceptCh = make(chan struct{})
		}
		ch := m.acceptCh
		n.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("accept: %w", ctx.Err())
		}
		n.mu.Lock()
	}
}

// GetConnection returns the live connection to id, inbound or outbound, if
// any. It does not block.
func (m *Manager) GetConnection(id identity.Identifier) (p2pconn.Connection, bool) {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	c, ok := m.conns[id]
	if !ok {
		return nil, false
	}
	return c, true
}

// Disconnect closes the connection to id gracefully, as Conn.Close does, and
// returns what Conn.Close returns. Disconnecting a peer without a live
// connection returns nil.
func (m *Manager) Disconnect(id identity.Identifier) error {
	m.net.mu.Lock()
	c := m.conns[id]
	m.net.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.Close()
}

// CloseAll closes every live connection gracefully, all at once, and returns
// after they are closed: within CloseTimeout, however many there are. The
// manager stays usable. It always returns nil.
func (m *Manager) CloseAll() error {
	m.net.mu.Lock()
	conns := m.beginCloseAllLocked(false)
	m.net.mu.Unlock()
	finishCloseAll(conns, time.Now().Add(m.cfg.CloseTimeout))
	return nil
}

// ConnectionCount returns the number of live connections. It does not block.
func (m *Manager) ConnectionCount() int {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	return len(m.conns)
}

// ConnectedPeers returns the Identifiers of the live connections, in no
// particular order. It does not block.
func (m *Manager) ConnectedPeers() []identity.Identifier {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	ids := make([]identity.Identifier, 0, len(m.conns))
	for id := range m.conns {
		ids = append(ids, id)
	}
	return ids
}

// Close stops the manager for good. In order: it leaves the Network (so
// Connects to its Identifier fail with resolver.ErrNotFound and the Identifier
// may join again), drops its accept queue and wakes blocked Accepts and
// Connects, closes every connection as CloseAll does, except that its peers
// learn that this node left (their side ends with an error matching
// p2pconn.ErrPeerLeft, after the messages they had received; a connection
// whose session is resuming ends on this side only, see Conn.Close), ends
// every event subscription, stops idle closing, and returns once all of that
// is done. Later Connect and Accept calls fail with p2pconn.ErrManagerClosed;
// Disconnect and CloseAll have nothing left to close and return nil. Close
// is idempotent: every call returns nil after the first has finished.
func (m *Manager) Close() error {
	n := m.net
	n.mu.Lock()
	if m.closed {
		done := m.closeDone
		n.mu.Unlock()
		<-done
		return nil
	}
	if n.nodes[m.id] == m {
		delete(n.nodes, m.id)
	}
	m.shutdownLocked()
	conns := m.beginCloseAllLocked(true)
	n.mu.Unlock()
	finishCloseAll(conns, time.Now().Add(m.cfg.CloseTimeout))
	m.events.Close()
	m.waitIdleCloser()
	close(m.closeDone)
	log.Debugf("%s: manager closed", m.id.Short())
	return nil
}

// shutdownLocked marks m closed and empties its accept queue.
func (m *Manager) shutdownLocked() {
	m.closed = true
	close(m.quit)
	m.closeDone = make(chan struct{})
	m.accepts = nil
	m.notifyAcceptLocked()
}

// closeJob is a Close that beginCloseAllLocked started, or one that another
// caller started and that finishCloseAll waits for.
type closeJob struct {
	c       *Conn
	started bool
	closing chan struct{}
}

// beginCloseAllLocked starts closing every connection of the pool, which it
// empties, and returns them for finishCloseAll. leaving says that the manager
// is closing (its peers see p2pconn.ErrPeerLeft).
func (m *Manager) beginCloseAllLocked(leaving bool) []closeJob {
	jobs := make([]closeJob, 0, len(m.conns))
	for _, c := range m.conns {
		c.p.mu.Lock()
		started, _ := c.beginCloseLocked(leaving)
		jobs = append(jobs, closeJob{c: c, started: started, closing: c.closing})
		c.p.mu.Unlock()
	}
	return jobs
}

// finishCloseAll completes the closes that beginCloseAllLocked started, with
// one deadline for all of them, so that they run in parallel in effect.
func finishCloseAll(jobs []closeJob, deadline time.Time) {
	for _, j := range jobs {
		if j.started {
			j.c.finishClose(deadline)
		} else {
			<-j.closing
		}
	}
}

// makeAcceptRoomLocked makes room in the accept queue for one more
// connection, dropping the oldest dead one if the queue is full, and reports
// whether there is room.
func (m *Manager) makeAcceptRoomLocked() bool {
	if len(m.accepts) < m.cfg.MaxConnections {
		return true
	}
	for i, c := range m.accepts {
		if !c.IsAlive() {
			log.Warnf("%s: accept queue full (%d): dropping the unaccepted dead connection from %s",
				m.id.Short(), len(m.accepts), c.remote.Short())
			m.accepts = slices.Delete(m.accepts, i, i+1)
			return true
		}
	}
	return false
}

// notifyAcceptLocked wakes every blocked Accept.
func (m *Manager) notifyAcceptLocked() {
	if m.acceptCh != nil {
		close(m.acceptCh)
		m.acceptCh = nil
	}
}

// dropLocked removes c from the pool if it is there.
func (m *Manager) dropLocked(c *Conn) {
	if m.conns[c.remote] == c {
		delete(m.conns, c.remote)
	}
}
