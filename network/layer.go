package network

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Network is the messaging layer of one node on a p2pconn.ConnectionManager:
// it reads every connection of the manager, hands each message to the
// processor of its channel, and sends through conduits. Create it with New.
// Every method is safe for concurrent use.
type Network struct {
	m     p2pconn.ConnectionManager
	self  identity.Identifier
	cfg   Config
	epoch uint64 // announced in OPEN; tells this Network from earlier ones on the same connections
	caps  uint64 // capabilities announced in OPEN

	metrics *metrics // nil without Config.Metrics

	ctx         context.Context // cancelled by Close: readers, processors, loops
	cancel      context.CancelFunc
	done        chan struct{} // closed when Close starts: calls fail with ErrClosed
	wg          sync.WaitGroup
	tasks       chan func()  // hands a task to a waiting worker (workers.go)
	idle        atomic.Int32 // workers waiting for a task
	closeOnce   sync.Once
	unsubscribe func()

	mu     sync.RWMutex
	closed bool
	regs   map[string]*registration
	links  map[p2pconn.Connection]*link

	calls calls

	// Room of the channels for messages to self; guarded by selfMu.
	selfMu      sync.Mutex
	selfQueued  map[Channel]int
	selfChanged chan struct{}
}

// managers holds the ConnectionManagers that have a Network, so that two
// Networks never read the same connections.
var managers = struct {
	sync.Mutex
	m map[p2pconn.ConnectionManager]struct{}
}{m: make(map[p2pconn.ConnectionManager]struct{})}

// New starts a Network on m. It takes over m.Accept and reads every
// connection of m, whoever opened it and whenever: those open now, those
// queued for Accept, and those opened later by a remote or on m by the
// application (it learns of them through m.Subscribe). m must not have
// another Network that is not closed (ErrManagerInUse), and nothing else
// should call m.Accept or read m's connections while the Network runs. cfg
// is validated; zero fields take their defaults. The Network does not own m:
// close the Network before m.
func New(m p2pconn.ConnectionManager, cfg Config) (*Network, error) {
	return newNetwork(m, cfg, capabilities)
}

// newNetwork is New, announcing the capabilities caps.
func newNetwork(m p2pconn.ConnectionManager, cfg Config, caps uint64) (*Network, error) {
	if m == nil {
		return nil, errors.New("network: new: nil connection manager")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("network: new: %w", err)
	}
	mx, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("network: new: %w", err)
	}
	if reflect.TypeOf(m).Comparable() {
		managers.Lock()
		if _, taken := managers.m[m]; taken {
			managers.Unlock()
			return nil, fmt.Errorf("network: new on %s: %w", m.ID().Short(), ErrManagerInUse)
		}
		managers.m[m] = struct{}{}
		managers.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Network{
		m:           m,
		self:        m.ID(),
		cfg:         cfg.withDefaults(),
		epoch:       rand.Uint64() | 1, // non-zero
		caps:        caps,
		metrics:     mx,
		ctx:         ctx,
		cancel:      cancel,
		done:        make(chan struct{}),
		regs:        make(map[string]*registration),
		links:       make(map[p2pconn.Connection]*link),
		selfQueued:  make(map[Channel]int),
		selfChanged: make(chan struct{}),
		tasks:       make(chan func()),
	}
	// Subscribe before looking at the connections open now, so that none
	// falls between the two; a connection seen twice is read once.
	events, unsubscribe := m.Subscribe()
	n.unsubscribe = unsubscribe
	for _, id := range m.ConnectedPeers() {
		if c, ok := m.GetConnection(id); ok {
			n.linkFor(c)
		}
	}
	n.goroutine(n.acceptLoop)
	n.goroutine(func() { n.eventLoop(events) })
	log.Debugw("network started", "self", n.self, "window", n.cfg.Window)
	return n, nil
}

// ID returns this node's Identifier.
func (n *Network) ID() identity.Identifier { return n.self }

// Manager returns the ConnectionManager the Network runs on.
func (n *Network) Manager() p2pconn.ConnectionManager { return n.m }

// Register installs p as the processor of ch and returns a conduit on ch.
// A channel has one processor: Register of a channel that has one fails with
// ErrChannelTaken. Messages for ch that arrived before Register were dropped
// (and Requests among them answered with ErrNoProcessor).
func (n *Network) Register(ch Channel, p MessageProcessor) (Conduit, error) {
	if err := checkChannel(ch); err != nil {
		return nil, fmt.Errorf("network: register %q: %w", ch, err)
	}
	if p == nil {
		return nil, fmt.Errorf("network: register %q: nil processor", ch)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("network: register %q: %w", ch, ErrClosed)
	}
	if _, taken := n.regs[string(ch)]; taken {
		return nil, fmt.Errorf("network: register %q: %w", ch, ErrChannelTaken)
	}
	n.regs[string(ch)] = &registration{
		n: n, ch: ch, p: p,
		queues:    make(map[identity.Identifier]*senderQueue),
		allowance: int64(n.cfg.WindowLimit - n.cfg.Window),
	}
	log.Debugw("processor registered", "channel", ch)
	return &conduit{n: n, ch: ch}, nil
}

// Conduit returns a conduit on ch, with or without a processor registered
// for it: a node may send on a channel it does not serve, and a processor
// may reach its own channel's conduit without waiting for Register to
// return. ch must be a valid channel name, or every call of the conduit
// fails with ErrInvalidChannel.
func (n *Network) Conduit(ch Channel) Conduit { return &conduit{n: n, ch: ch} }

// Close stops the Network, not its manager. In order: calls in flight and
// later ones fail with ErrClosed; every peer is told, within
// Config.CloseTimeout, that this node's Network has closed (their Sends to
// it then fail fast); the processors' ctx is cancelled and reading stops;
// Close returns once every goroutine of the Network, processors included,
// has returned. Messages queued and not yet processed are dropped; those not
// yet read stay with the connections, for a later Network on the same
// manager. Close is idempotent and always returns nil. It must not be called
// from a processor, whose return it would wait for.
func (n *Network) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		links := make([]*link, 0, len(n.links))
		for _, l := range n.links {
			links = append(links, l)
		}
		n.mu.Unlock()
		close(n.done)

		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.CloseTimeout)
		var wg sync.WaitGroup
		for _, l := range links {
			wg.Go(func() { l.sayClosed(ctx) })
		}
		wg.Wait()
		cancel()

		n.cancel()
		for _, l := range links {
			l.stop()
		}
		n.unsubscribe()
		n.wg.Wait()
		if reflect.TypeOf(n.m).Comparable() {
			managers.Lock()
			delete(managers.m, n.m)
			managers.Unlock()
		}
		log.Debugw("network closed", "self", n.self)
	})
	return nil
}

// goroutine runs f on a goroutine that Close waits for.
func (n *Network) goroutine(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// acceptLoop takes every connection a remote opens.
func (n *Network) acceptLoop() {
	for {
		c, err := n.m.Accept(n.ctx)
		if err != nil {
			if n.ctx.Err() == nil {
				log.Debugw("accept loop ends", "err", err)
			}
			return
		}
		n.linkFor(c)
	}
}

// eventLoop reads every connection the manager announces, such as those the
// application opens with Connect.
func (n *Network) eventLoop(events <-chan p2pconn.Event) {
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Kind == p2pconn.EventConnected {
				n.linkFor(ev.Conn)
			}
		case <-n.ctx.Done():
			return
		}
	}
}

// linkFor returns the link of c, starting to read c if nobody does; nil once
// the Network is closed.
func (n *Network) linkFor(c p2pconn.Connection) *link {
	n.mu.RLock()
	l := n.links[c]
	n.mu.RUnlock()
	if l != nil {
		return l
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	fresh := false
	if l = n.links[c]; l == nil {
		l, fresh = newLink(n, c), true
		n.links[c] = l
		l.queueOpen()
		if l.deliverer == nil {
			n.goroutine(l.run)
		}
	}
	n.mu.Unlock()
	if fresh && l.deliverer != nil {
		// Outside n.mu: the messages already queued are handled here.
		l.deliver()
	}
	return l
}

// forget drops l once its reader has stopped.
func (n *Network) forget(l *link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.links[l.conn] == l {
		delete(n.links, l.conn)
	}
}

// registration returns the processor of the channel named ch, if any.
func (n *Network) registration(ch []byte) *registration {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.regs[string(ch)] // no allocation for the lookup
}

// registrationOf is registration for a Channel.
func (n *Network) registrationOf(ch Channel) *registration {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.regs[string(ch)]
}

// alive returns ErrClosed once Close has started.
func (n *Network) alive() error {
	select {
	case <-n.done:
		return ErrClosed
	default:
		return nil
	}
}

// consumed gives back the room of a processed message.
func (n *Network) consumed(ch Channel, it item) {
	if it.link != nil {
		it.link.consumed(string(ch), it.remote)
		return
	}
	n.selfMu.Lock()
	if n.selfQueued[ch]--; n.selfQueued[ch] <= 0 {
		delete(n.selfQueued, ch)
	}
	close(n.selfChanged)
	n.selfChanged = make(chan struct{})
	n.selfMu.Unlock()
}

// answer hands a reply to the Request waiting for it, or counts it dropped.
func (n *Network) answer(id uint64, m Message) {
	if !n.calls.finish(id, callResult{m: m}) {
		n.metrics.replyDropped()
		log.Debugw("reply nobody waits for: dropped", "from", m.From, "channel", m.Channel)
	}
}

// send sends a DATA on ch to node to: the path of Send, Request and Forward.
func (n *Network) send(ctx context.Context, ch Channel, to identity.Identifier, call CallRef, origin bool, payload []byte, opts []p2pconn.ConnectOption) error {
	if err := n.alive(); err != nil {
		return err
	}
	if to == n.self {
		return n.sendLocal(ctx, ch, call, payload)
	}
	var tried p2pconn.Connection
	for {
		c, err := n.m.Connect(ctx, to, opts...)
		if err != nil {
			if alive := n.alive(); alive != nil {
				return alive
			}
			return err
		}
		l := n.linkFor(c)
		if l == nil {
			return ErrClosed
		}
		err = l.sendData(ctx, ch, call, origin, payload)
		if err == nil {
			n.metrics.sent(ch)
			return nil
		}
		// Nothing was sent on a connection that ended: try once more, on a
		// new one.
		if tried == nil && c.Err() != nil && errors.Is(err, p2pconn.ErrConnectionClosed) {
			tried = c
			continue
		}
		return err
	}
}

// sendLocal queues a message to self, waiting for room in the channel.
func (n *Network) sendLocal(ctx context.Context, ch Channel, call CallRef, payload []byte) error {
	reg := n.registrationOf(ch)
	if reg == nil {
		return fmt.Errorf("this node has no processor on %q: %w", ch, ErrNoProcessor)
	}
	n.selfMu.Lock()
	for n.selfQueued[ch] >= n.cfg.Window {
		changed := n.selfChanged
		n.selfMu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for room: %w", ctx.Err())
		case <-n.done:
			return ErrClosed
		}
		n.selfMu.Lock()
	}
	n.selfQueued[ch]++
	n.selfMu.Unlock()
	m := Message{Channel: ch, From: n.self, Payload: append([]byte{}, payload...), Call: call}
	n.metrics.sent(ch)
	n.metrics.received(ch)
	reg.push(item{m: m})
	return nil
}

// request sends a Request on ch and waits for its reply.
func (n *Network) request(ctx context.Context, ch Channel, to identity.Identifier, payload []byte, opts []p2pconn.ConnectOption) (Message, error) {
	if err := n.alive(); err != nil {
		return Message{}, err
	}
	id, pc := n.calls.add(to, ch)
	defer n.calls.remove(id)
	if err := n.send(ctx, ch, to, CallRef{Origin: n.self, ID: id}, false, payload, opts); err != nil {
		n.metrics.request(ch, err, 0)
		return Message{}, err
	}
	select {
	case r := <-pc.result:
		n.metrics.request(ch, r.err, time.Since(pc.started))
		return r.m, r.err
	case <-ctx.Done():
		n.metrics.request(ch, ctx.Err(), 0)
		return Message{}, fmt.Errorf("waiting for the reply: %w", ctx.Err())
	case <-n.done:
		n.metrics.request(ch, ErrClosed, 0)
		return Message{}, ErrClosed
	}
}

// reply sends the answer to call, from a conduit of ch.
func (n *Network) reply(ctx context.Context, ch Channel, call CallRef, payload []byte) error {
	if err := n.alive(); err != nil {
		return err
	}
	if call.ID == 0 {
		return fmt.Errorf("reply to %s: not a call", call)
	}
	if call.Origin == n.self {
		n.answer(call.ID, Message{Channel: ch, From: n.self, Payload: append([]byte{}, payload...)})
		return nil
	}
	var tried p2pconn.Connection
	for {
		c, err := n.m.Connect(ctx, call.Origin)
		if err != nil {
			return err
		}
		// Read the connection, so that a reply to this node's own
		// Requests on it is seen too.
		if n.linkFor(c) == nil {
			return ErrClosed
		}
		buf := getBuffer(3 + len(ch) + 8 + len(payload))
		*buf = appendReply((*buf)[:0], ch, call.ID, payload)
		err = c.Send(ctx, *buf)
		putBuffer(buf)
		if err == nil {
			n.metrics.sent(ch)
			return nil
		}
		if tried == nil && c.Err() != nil && errors.Is(err, p2pconn.ErrConnectionClosed) {
			tried = c
			continue
		}
		return err
	}
}

// checkChannel reports whether ch is a valid channel name.
func checkChannel(ch Channel) error {
	if len(ch) == 0 || len(ch) > MaxChannelLen {
		return fmt.Errorf("%d bytes, want 1 to %d: %w", len(ch), MaxChannelLen, ErrInvalidChannel)
	}
	return nil
}

// Buffers for encoding envelopes; Connection.Send does not keep them.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuffer is the largest buffer put back in the pool.
const maxPooledBuffer = 1 << 20

func getBuffer(size int) *[]byte {
	b := buffers.Get().(*[]byte)
	if cap(*b) < size {
		*b = make([]byte, 0, size)
	}
	return b
}

func putBuffer(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	buffers.Put(b)
}
