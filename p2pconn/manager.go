package p2pconn

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/eventq"
	"github.com/skipwire/skipwire/resolver"
)

// protectTag is the tag under which managed peers are protected in libp2p's
// connection manager.
const protectTag = "skipwire"

// Manager is the libp2p ConnectionManager. It keeps one skipwire stream per
// remote node, on a single libp2p connection, whichever side opened it; see
// PROTOCOL.md for how simultaneous opens settle. Create it with NewManager.
type Manager struct {
	h    host.Host
	r    resolver.AddressResolver
	cfg  Config
	self identity.Identifier

	// proto is the protocol ID of the stream, served and opened:
	// ProtocolFor(cfg.NetworkName).
	proto protocol.ID

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.RWMutex
	closed   bool
	peers    map[identity.Identifier]*peerState
	live     int    // connections in the pool
	pending  int    // handshakes in progress, each holding a slot of MaxConnections
	openings uint64 // HELLOs sent, numbering them (PROTOCOL.md, "Extensions")

	// incarnation names this manager instance on the wire, so that peers
	// tell a restarted node from a live one (PROTOCOL.md, "Extensions").
	incarnation uint64
	version1    atomic.Bool // speak the version-1 handshake only (tests)

	persistent map[identity.Identifier]context.CancelFunc // guarded by mu
	protected  map[identity.Identifier]struct{}           // guarded by mu
	failures   failures                                   // peers that failed recently

	hsMu       sync.Mutex
	handshakes map[identity.Identifier]int // inbound streams not settled yet, per peer
	hsLimit    handshakeLimiter            // HandshakeRate

	accept acceptQueue
	dedupe dedupeWorker
	notify network.Notifiee

	events eventq.Hub[Event]

	metrics *metrics // nil when Config.Metrics is nil

	closeOnce sync.Once
}

var _ ConnectionManager = (*Manager)(nil)

// peerState is everything the manager knows about one remote node: the
// settling rules' state (settle.go) and the Connect in progress. Guarded by
// Manager.mu.
type peerState struct {
	settler[*outStream, *inStream, *conn]
	dial    *dialCall // the Connect in progress, shared by its callers
	changed chan struct{}
	// resume is the connection whose session resumes (resume.go): the
	// peer's connection while no stream carries it; the settling rules
	// then see no live connection.
	resume     *conn
	resumeInfo liveInfo // what the settling rules knew of it
}

func (st *peerState) idle() bool {
	return st.settler.idle() && st.dial == nil && st.resume == nil
}

// current returns the peer's live or resuming connection, nil if none.
func (st *peerState) current() *conn {
	if st.conn != nil && !st.conn.dead.Load() {
		return st.conn
	}
	if st.resume != nil && !st.resume.dead.Load() {
		return st.resume
	}
	return nil
}

// NewManager returns a Manager serving its Protocol() on h, resolving addresses
// with r. h must have an Ed25519 key (its public key is this node's
// Identifier). If r is nil, addresses come from h's peerstore only. cfg is
// validated; zero fields take their defaults. The Manager does not own h:
// close the Manager before the host.
func NewManager(h host.Host, r resolver.AddressResolver, cfg Config) (*Manager, error) {
	if h == nil {
		return nil, fmt.Errorf("p2pconn: new manager: nil host")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("p2pconn: new manager: %w", err)
	}
	self, err := identity.FromPeerID(h.ID())
	if err != nil {
		return nil, fmt.Errorf("p2pconn: new manager: host key: %w", err)
	}
	if r == nil {
		r = resolver.NewPeerstore(h.Peerstore())
	}
	var mx *metrics
	if cfg.Metrics != nil {
		if mx, err = newMetrics(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("p2pconn: new manager: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		metrics: mx,
		h:       h,
		r:       r,
		cfg:     cfg.withDefaults(),
		self:    self,
		proto:   ProtocolFor(cfg.NetworkName),
		ctx:     ctx,
		cancel:  cancel,
		peers:   make(map[identity.Identifier]*peerState),

		incarnation: rand.Uint64() | 1,

		persistent: make(map[identity.Identifier]context.CancelFunc),
		protected:  make(map[identity.Identifier]struct{}),
		handshakes: make(map[identity.Identifier]int),
	}
	m.events.OnDrop = logEventDrop
	m.hsLimit.init(m.cfg)
	m.accept.init()
	m.dedupe.init()
	m.notify = &network.NotifyBundle{ConnectedF: m.connected}
	h.Network().Notify(m.notify)
	h.SetStreamHandler(m.proto, m.handleStream)
	m.goroutine(m.dedupeLoop)
	m.goroutine(m.healthLoop)
	log.Debugw("manager started", "self", self, "peer", h.ID())
	return m, nil
}

// ID returns this node's Identifier.
func (m *Manager) ID() identity.Identifier { return m.self }

// Host returns the libp2p host the manager serves on.
func (m *Manager) Host() host.Host { return m.h }

// Config returns the manager's configuration, defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// goroutine runs f on a goroutine that Close waits for.
func (m *Manager) goroutine(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

// enter registers a goroutine started by libp2p (a stream handler), unless
// the manager is closed.
func (m *Manager) enter() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

// state returns the state of id, creating it. The caller holds m.mu.
func (m *Manager) state(id identity.Identifier) *peerState {
	st := m.peers[id]
	if st == nil {
		st = &peerState{changed: make(chan struct{})}
		st.smaller = m.self.Compare(id) < 0
		st.connectTimeout = m.cfg.ConnectTimeout
		m.peers[id] = st
	}
	return st
}

// changedLocked wakes everything waiting on st and drops st if it is idle. The
// caller holds m.mu.
func (m *Manager) changedLocked(id identity.Identifier, st *peerState) {
	close(st.changed)
	st.changed = make(chan struct{})
	if st.idle() && m.peers[id] == st {
		delete(m.peers, id)
	}
}

// liveConn returns the live connection to id. The caller holds m.mu.
func (m *Manager) liveConn(id identity.Identifier) *conn {
	if st := m.peers[id]; st != nil && st.conn != nil && !st.conn.dead.Load() {
		return st.conn
	}
	return nil
}

// Connect implements ConnectionManager.
func (m *Manager) Connect(ctx context.Context, id identity.Identifier, opts ...ConnectOption) (Connection, error) {
	m.mu.RLock()
	if c := m.liveConn(id); c != nil {
		m.mu.RUnlock()
		return c, nil
	}
	m.mu.RUnlock()
	if id == m.self {
		return nil, fmt.Errorf("connect %s: %w", id.Short(), ErrSelfConnect)
	}

	return m.open(ctx, id, m.cfg.ConnectSettings(opts...), false)
}

// open is Connect past the cached connection and self; evicted says a
// connection was already closed to make room for this one.
func (m *Manager) open(ctx context.Context, id identity.Identifier, s ConnectSettings, evicted bool) (Connection, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, fmt.Errorf("connect %s: %w", id.Short(), ErrManagerClosed)
	}
	if c := m.liveConn(id); c != nil {
		m.mu.Unlock()
		return c, nil
	}
	st := m.state(id)
	d := st.dial
	if d == nil {
		if f, ok := m.recentFailure(id, s); ok {
			m.changedLocked(id, st)
			changed := st.changed // closed if a handshake with the peer settles
			m.mu.Unlock()
			s, err := m.waitOutFailure(ctx, id, s, f, changed)
			if err != nil {
				return nil, err
			}
			return m.open(ctx, id, s, evicted)
		}
		full := m.live+m.pending >= m.cfg.MaxConnections && st.in == nil && st.resume == nil
		if full && m.cfg.EvictAtLimit && !evicted {
			m.changedLocked(id, st)
			m.mu.Unlock()
			m.makeRoom(id)
			return m.open(ctx, id, s, true)
		}
		if full {
			m.changedLocked(id, st)
			m.mu.Unlock()
			return nil, fmt.Errorf("connect %s: %d connections: %w", id.Short(), m.cfg.MaxConnections, ErrTooManyConnections)
		}
		d = m.startDial(id, st)
	}
	d.join(s)
	m.mu.Unlock()
	return m.waitDial(ctx, id, d, s)
}

// GetConnection implements ConnectionManager.
// A connection whose session is resuming is returned.
func (m *Manager) GetConnection(id identity.Identifier) (Connection, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if st := m.peers[id]; st != nil {
		if c := st.current(); c != nil {
			return c, true
		}
	}
	return nil, false
}

// Accept implements ConnectionManager.
func (m *Manager) Accept(ctx context.Context) (Connection, error) {
	c, err := m.accept.pop(ctx, m.ctx.Done())
	if err != nil {
		if m.ctx.Err() != nil {
			return nil, fmt.Errorf("accept: %w", ErrManagerClosed)
		}
		return nil, fmt.Errorf("accept: %w", err)
	}
	return c, nil
}

// Disconnect implements ConnectionManager. It may block up to
// ConnectTimeout: a handshake with id in progress, on a stream of either
// side (the remote's Connect may return before this side has settled), is
// waited for, and the connection it yields is closed. If it fails, none
// settles within ConnectTimeout, or the manager closes, Disconnect returns
// nil and closes nothing. A Connect of this side that has not opened its stream yet
// (it is resolving or dialing) is not waited for. Closing the connection
// then takes what Connection.Close takes.
func (m *Manager) Disconnect(id identity.Identifier) error {
	deadline := time.NewTimer(m.cfg.ConnectTimeout)
	defer deadline.Stop()
	for {
		m.mu.RLock()
		c := m.liveConn(id)
		var changed chan struct{}
		if st := m.peers[id]; c == nil && st != nil && (st.in != nil || st.out != nil) {
			changed = st.changed
		}
		m.mu.RUnlock()
		if c != nil {
			return c.Close()
		}
		if changed == nil {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil
		case <-m.ctx.Done():
			return nil
		}
	}
}

// CloseAll implements ConnectionManager.
func (m *Manager) CloseAll() error {
	m.mu.RLock()
	conns := make([]*conn, 0, m.live)
	for _, st := range m.peers {
		if st.conn != nil {
			conns = append(conns, st.conn)
		}
		if st.resume != nil {
			conns = append(conns, st.resume)
		}
	}
	m.mu.RUnlock()
	return closeConns(conns)
}

// closeConns closes conns in parallel. A connection whose half-close cannot
// be written was lost meanwhile: its peer sees the loss, and closing the
// others is not a failure for it.
func closeConns(conns []*conn) error {
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			if err := c.Close(); err != nil {
				log.Debugw("close: connection lost while closing", "peer", c.id, "err", err)
			}
		})
	}
	wg.Wait()
	return nil
}

// ConnectionCount implements ConnectionManager. A connection that is dying
// (marked dead, not yet out of the pool) is not counted; one whose session
// is resuming is.
func (m *Manager) ConnectionCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, st := range m.peers {
		if st.current() != nil {
			n++
		}
	}
	return n
}

// ConnectedPeers implements ConnectionManager.
func (m *Manager) ConnectedPeers() []identity.Identifier {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := make([]identity.Identifier, 0, m.live)
	for id, st := range m.peers {
		if st.current() != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// Close implements ConnectionManager. Shutdown order: refuse new work (closed
// flag, stream handler removed), cancel every dial and handshake, close every
// connection gracefully, wait for every goroutine, then stop listening to the
// network.
func (m *Manager) Close() error {
	var err error
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		m.h.RemoveStreamHandler(m.proto)
		m.cancel()
		err = m.CloseAll()
		m.closeSubscriptions()
		m.wg.Wait()
		m.h.Network().StopNotify(m.notify)
		log.Debugw("manager closed", "self", m.self)
	})
	return err
}

// connDied takes c out of the pool.
func (m *Manager) connDied(c *conn, err error) {
	m.mu.Lock()
	st := m.peers[c.id]
	if st != nil && st.resume == c {
		st.resume = nil
		m.live--
		m.h.ConnManager().Unprotect(c.id.PeerID(), protectTag)
		m.changedLocked(c.id, st)
	} else if st != nil && st.died(c) {
		m.live--
		m.h.ConnManager().Unprotect(c.id.PeerID(), protectTag)
		m.changedLocked(c.id, st)
	}
	m.mu.Unlock()
	if isLost(err) {
		log.Infow("connection lost", "peer", c.id, "addr", c.addr, "err", err)
	}
}

// pruneLocked takes a connection that died but is not out of the pool yet
// (its connDied is on its way) out of st. The caller holds m.mu.
func (m *Manager) pruneLocked(st *peerState) {
	if c := st.conn; c != nil && c.dead.Load() && st.died(c) {
		m.live--
		m.h.ConnManager().Unprotect(c.id.PeerID(), protectTag)
	}
	if c := st.resume; c != nil && c.dead.Load() {
		st.resume = nil
		m.live--
		m.h.ConnManager().Unprotect(c.id.PeerID(), protectTag)
	}
}

// establishLocked counts c, which the settling rules made the live
// connection, in the pool. The caller holds m.mu.
func (m *Manager) establishLocked(st *peerState, c *conn) {
	m.failures.forget(c.id)
	m.live++
	m.h.ConnManager().Protect(c.id.PeerID(), protectTag)
	m.changedLocked(c.id, st)
	m.metrics.connUp(c.inbound)
	m.publish(Event{Kind: EventConnected, Peer: c.id, Inbound: c.inbound, Conn: c})
}

// start runs c's reader and, for an inbound connection, queues it for Accept.
func (m *Manager) start(c *conn) {
	w := c.wire()
	m.goroutine(func() { c.readLoop(w) })
	if c.inbound {
		m.accept.push(c, m.cfg.MaxConnections)
	}
	log.Debugw("connection established", "peer", c.id, "addr", c.addr, "inbound", c.inbound)
	m.dedupeSoon(w.s.Conn().RemotePeer())
}
