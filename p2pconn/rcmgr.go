package p2pconn

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ServiceName is the libp2p resource-manager service skipwire's streams
// belong to: each stream is attached to it, as libp2p's ping attaches its
// own, and the memory of the messages a connection has read and Next has
// not taken (the frame being read included) is reserved in the stream's
// scope before it is allocated, and released once Next took the message
// (a busy connection keeps what it used within the last health-check
// round, KeepaliveInterval / 20, reserved for its next messages).
// It therefore counts against the resource manager's limits for the
// stream, the peer, the protocol and this service (for the peer and in
// all), and the system. Set them with the resource manager's
// configuration, e.g. rcmgr.PartialLimitConfig{Service:
// map[string]rcmgr.ResourceLimits{p2pconn.ServiceName: {Memory: 256 <<
// 20}}}; HostOptions leaves room for one connection's worst case in each
// and keeps libp2p's scaled default for the service as a whole.
//
// When the resource manager refuses a reservation, the connection stops
// reading its stream, as when ReceiveBuffer messages wait: the stream's
// flow control holds the remote's Sends back, and nothing is lost. Reading
// resumes when memory is released: when Next takes a message, or when
// memory frees elsewhere (retried with backoff up to every 100 ms). Only
// when no message waits for Next, so that none of the connection's memory
// can be freed, and the refusal lasts KeepaliveInterval + KeepaliveTimeout
// (the bound on a stalled frame), does the connection end, as lost, with
// an error that wraps the resource manager's
// (network.ErrResourceLimitExceeded). Messages read beyond ReceiveBuffer,
// only to see the remote's close sooner, are reserved at
// network.ReservationPriorityMedium, the others at
// network.ReservationPriorityAlways. Each refusal is counted
// (skipwire_limited_total{limit="memory"}); the first one of a connection
// is logged. When a stream ends, libp2p releases what its scope held:
// messages still queued after that no longer count.
const ServiceName = "skipwire"

// attachService attaches stream s, on protocol proto, to ServiceName in the
// host's resource manager, as libp2p's own protocols attach theirs.
func attachService(s network.Stream, proto protocol.ID) error {
	if s.Protocol() == "" {
		if err := s.SetProtocol(proto); err != nil {
			return fmt.Errorf("resource manager: protocol %s: %w", proto, err)
		}
	}
	if err := s.Scope().SetService(ServiceName); err != nil {
		return fmt.Errorf("resource manager: service %s: %w", ServiceName, err)
	}
	return nil
}

// Memory reservations follow a stream's recent needs rather than each
// message, since the resource manager takes several locks and reports to
// its metrics on each call (microseconds, more than reading a small
// message). A reservation asks for at least a step, which starts at the
// size of the frame that needs it (at least minMemStep) and doubles, up to
// maxMemStep, each time the stream needs more. What Next releases stays
// reserved, for the next messages, up to the most the stream used since
// the health loop's last round, which gives the rest back (and everything,
// for a stream that went quiet, whose step starts small again); only a
// release that leaves more than maxMemSlack unused gives it back at once.
// So a stream holds reserved, beyond what it uses, at most its peak of the
// last round and a step.
const (
	minMemStep  = 4 << 10
	maxMemStep  = 256 << 10
	maxMemSlack = 1 << 20
)

// connMemory is the most a connection holds in received messages: its
// reader reads a frame while fewer than ReceiveBuffer messages wait for
// Next, or while they hold fewer than readAheadLimit bytes (inbox.go), so
// the queue holds at most ReceiveBuffer messages of MaxMessageSize, or
// readAheadLimit bytes plus one message, whichever is larger; the frame
// being read is one of them. Add the reader's read buffer.
func connMemory(cfg Config) int64 {
	m := int64(cfg.MaxMessageSize)
	return max(int64(cfg.ReceiveBuffer)*m, readAheadLimit+m) + readBufSize
}

// memAccount reserves, in the resource-manager scope of one stream, the
// memory of the message buffers its reader allocates: the frame being read
// and the messages waiting in the inbox. The reader reserves before each
// allocation; Next releases a message's bytes when it takes it. When the
// stream ends, libp2p releases whatever its scope still holds (and
// ReleaseMemory does nothing any more): messages that stay in the inbox
// after that no longer count.
type memAccount struct {
	scope network.ResourceScope // nil: no accounting

	mu       sync.Mutex
	reserved int  // bytes reserved in scope
	used     int  // bytes of buffers the account covers, forced ones included
	peak     int  // the most used since the last round
	step     int  // the current reservation step
	waiting  bool // the reader waits for a release
	freed    chan struct{}
}

func (a *memAccount) init(scope network.ResourceScope) {
	a.scope = scope
	a.freed = make(chan struct{}, 1)
}

// cover takes n bytes from what is reserved already, if that is enough.
func (a *memAccount) cover(n int) bool {
	if a.scope == nil {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.used+n > a.reserved {
		return false
	}
	a.use(n)
	return true
}

// use counts n more bytes as used. The caller holds a.mu.
func (a *memAccount) use(n int) {
	a.used += n
	a.peak = max(a.peak, a.used)
}

// reserve reserves n bytes more, at priority prio, asking the resource
// manager for at least one step. On error nothing is reserved, and the
// next release signals freed.
func (a *memAccount) reserve(n int, prio uint8) error {
	if a.scope == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	need := a.used + n - a.reserved
	if need <= 0 {
		a.use(n)
		return nil
	}
	a.step = min(max(2*a.step, n, minMemStep), maxMemStep)
	grant := max(need, a.step)
	err := a.scope.ReserveMemory(grant, prio)
	if err != nil && grant > need {
		grant = need
		err = a.scope.ReserveMemory(grant, prio)
	}
	if err != nil {
		a.waiting = true
		return err
	}
	a.reserved += grant
	a.use(n)
	return nil
}

// force covers n bytes without asking the resource manager: for frames the
// reader reads whatever the limits (the connection is closed or dead, so
// what arrives is bounded by what the remote had sent).
func (a *memAccount) force(n int) {
	if a.scope == nil {
		return
	}
	a.mu.Lock()
	a.use(n)
	a.mu.Unlock()
}

// release gives back n bytes the reader covered: a message Next took, or a
// frame the reader dropped. They stay reserved for the next messages,
// unless that leaves more than maxMemSlack unused.
func (a *memAccount) release(n int) {
	if a.scope == nil || n == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.used -= n
	if slack := a.reserved - a.used; slack > maxMemSlack {
		a.scope.ReleaseMemory(slack - a.step)
		a.reserved -= slack - a.step
	}
	if a.waiting {
		a.waiting = false
		signal(a.freed)
	}
}

// round gives back what is reserved beyond the most the stream used since
// the last round, and starts a new round: the health loop calls it
// periodically, so a stream's reservation follows its needs, and a quiet
// stream's falls to what its queued messages use.
func (a *memAccount) round() {
	if a.scope == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if extra := a.reserved - max(a.peak, a.used); extra > 0 {
		a.scope.ReleaseMemory(extra)
		a.reserved -= extra
	}
	if a.peak == a.used {
		a.step = 0 // quiet: start small again
	}
	a.peak = a.used
}

// errNoMemory marks a connection the reader ended because the resource
// manager refused memory for a frame for too long while no message waited
// for Next: nothing this connection holds could be freed.
var errNoMemory = errors.New("the resource manager refused memory for a message")

// readerMemory is a connection's frameMemory for the reader of stream w.
type readerMemory struct {
	c *conn
	w *wire
}

func (rm readerMemory) reserve(n int) error {
	if rm.w.mem.cover(n) {
		return nil
	}
	return rm.c.reserveMemory(rm.w, n)
}

func (rm readerMemory) release(n int) { rm.w.mem.release(n) }

// reserveMemory reserves n bytes for the payload of a frame in w's scope,
// on the slow path, where the resource manager is asked; when it refuses,
// the reader waits as ServiceName says. The error of a reader that gives
// up wraps errNoMemory. A closed or dead connection reads on without
// reserving, as it does without waiting for room.
func (c *conn) reserveMemory(w *wire, n int) error {
	err := w.mem.reserve(n, c.memPriority())
	if err == nil {
		return nil
	}
	if errors.Is(err, network.ErrResourceScopeClosed) {
		w.mem.force(n) // the stream ended: the read that follows fails
		return nil
	}
	c.m.metrics.limited(limitMemory)
	if c.memLogged.CompareAndSwap(false, true) {
		log.Infow("resource manager refused memory for a message: reading paused until memory is released",
			"peer", c.id, "bytes", n, "err", err)
	}
	// The pause is ours, not a stalled frame of the remote's.
	inFrame := c.inFrame.Swap(false)
	defer func() {
		c.received.Add(1) // a sign of life: the silence counts from now
		c.inFrame.Store(inFrame)
	}()
	giveUp := c.m.cfg.KeepaliveInterval + c.m.cfg.KeepaliveTimeout
	since := time.Now()
	delay := time.Millisecond
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-w.mem.freed:
		case <-t.C:
			delay = min(2*delay, 100*time.Millisecond)
			t.Reset(delay)
		case <-c.closing:
			w.mem.force(n)
			return nil
		case <-c.done:
			w.mem.force(n)
			return nil
		case <-w.gone:
			return errStreamLeft
		}
		if err = w.mem.reserve(n, c.memPriority()); err == nil || errors.Is(err, network.ErrResourceScopeClosed) {
			if err != nil {
				w.mem.force(n)
			}
			return nil
		}
		if !c.in.empty() {
			since = time.Now()
		} else if wait := time.Since(since); wait >= giveUp {
			return fmt.Errorf("%w: %d bytes, refused for %s with no message waiting for Next: %w",
				errNoMemory, n, wait.Round(time.Millisecond), err)
		}
	}
}

// memPriority is the priority of a reservation for the next frame.
func (c *conn) memPriority() uint8 {
	if c.in.full() {
		return network.ReservationPriorityMedium
	}
	return network.ReservationPriorityAlways
}

// errStreamLeft stops a reader whose connection left its stream.
var errStreamLeft = errors.New("the connection left the stream")

// memoryRound runs a round of c's stream's memory account (see
// memAccount.round) and of its resend buffer (ackState.round); the health
// loop calls it for every connection.
func (c *conn) memoryRound() {
	if w := c.wire(); w != nil {
		w.mem.round()
	}
	if c.ack != nil {
		c.ack.round()
	}
}
