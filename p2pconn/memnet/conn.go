package memnet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// pipe is one connection between two nodes: the two Conns, one per side, and
// the state they share.
type pipe struct {
	ends [2]*Conn // ends[0] opened the connection

	acks bool // both sides acknowledge (ResumeWindow not negative): a lost session may resume

	mu      sync.Mutex
	changed chan struct{} // closed and cleared on every change a waiter may await
	lost    bool          // ended by Partition or Crash: nothing more is delivered
	down    bool          // the link is down and a side resumes its session (resume.go)
	retired bool          // closed idle or evicted: nothing more is committed either way
	usedAt  time.Time     // when the connection last carried a message, or opened
	useSeq  uint64        // Network.uses at usedAt: orders uses for eviction
}

// Conn is one side of an in-memory connection: a p2pconn.Connection. Managers
// hand it out; it is never created directly. Every method is safe for
// concurrent use.
//
// Messages travel by copy straight into the receiver's queue, which holds at
// most the receiver's Config.ReceiveBuffer messages: a Send to a full queue
// blocks until the receiver reads, ctx ends or the connection dies.
//
// A connection closed by its manager's policy (Config.IdleTimeout or
// Config.EvictAtLimit) is closed without loss on either side: the closing
// side's Sends fail from then on, but its Next still returns every message
// the remote had sent, then an error matching p2pconn.ErrConnectionClosed;
// the remote sees a clean remote close.
//
// With a positive Config.ResumeWindow on this side (and a remote that does
// not turn acknowledgements off), a loss of the link (Network.Partition, or
// the remote's Crash) does not end the connection: its session resumes, as
// with the libp2p Manager. The loss is announced at once
// (p2pconn.EventResuming, whose Err matches p2pconn.ErrConnectionLost), and
// meanwhile the connection stays the peer's connection: IsAlive is true, Done
// is not closed, Err is nil, RemoteAddr is unchanged, the manager counts it
// (ConnectionCount, MaxConnections) and returns it (GetConnection, Connect),
// and neither idle closing nor eviction takes it. Send copies the message
// into a resend buffer and returns nil, waiting (up to its ctx, and then
// committing nothing) while the messages there cost Config.ResendBuffer
// bytes (each its length plus 32), unless the buffer is empty; Next returns
// what had arrived, then waits. When the pair can talk again within
// ResumeWindow, the same Conn goes on (p2pconn.EventResumed): the remote
// receives the resend buffer in order, after what it had received, so
// every message whose Send returned nil arrives exactly once and in order.
// When the window passes, the remote's node restarted, or the remote no
// longer holds the session, the connection ends (p2pconn.EventDisconnected)
// with a *p2pconn.NotDeliveredError listing the resend buffer's messages,
// which the remote never received (with the loss alone, matching
// p2pconn.ErrConnectionLost, if it is empty). Close while resuming ends it
// at once, without the remote knowing, and returns that error.
type Conn struct {
	p      *pipe
	mgr    *Manager // the local side
	remote identity.Identifier
	addr   string
	maxMsg int // the smaller MaxMessageSize of both sides
	cap    int // this side's ReceiveBuffer
	done   chan struct{}

	// Guarded by p.mu.
	queue   [][]byte      // received, not yet read
	err     error         // nil while alive, then why it died
	ended   bool          // the remote will deliver nothing more: Next returns err once queue is empty
	closed  bool          // closed locally: Send and Next fail at once
	sending int           // Sends of this side in progress
	abort   bool          // Close gave up waiting for the Sends in progress
	closing chan struct{} // non-nil once Close started; closed when it has finished
	susp    *suspension   // the session's resumption in progress, nil if none
}

var _ p2pconn.Connection = (*Conn)(nil)

// newPipe connects a (the opener) to b and returns each side's Conn.
func newPipe(a, b *Manager) (*Conn, *Conn) {
	p := &pipe{acks: a.cfg.ResumeWindow >= 0 && b.cfg.ResumeWindow >= 0}
	p.usedLocked(a.net)
	maxMsg := min(a.cfg.MaxMessageSize, b.cfg.MaxMessageSize)
	end := func(local, remote *Manager) *Conn {
		return &Conn{
			p:      p,
			mgr:    local,
			remote: remote.id,
			addr:   "/memnet/" + remote.id.String(),
			maxMsg: maxMsg,
			cap:    local.cfg.ReceiveBuffer,
			done:   make(chan struct{}),
		}
	}
	p.ends = [2]*Conn{end(a, b), end(b, a)}
	return p.ends[0], p.ends[1]
}

// RemoteAddr returns "/memnet/" followed by the remote Identifier in hex, or
// "" once the connection is dead. It does not block.
func (c *Conn) RemoteAddr() string {
	if !c.IsAlive() {
		return ""
	}
	return c.addr
}

// RemoteID returns the Identifier of the remote node. It keeps working after
// Close.
func (c *Conn) RemoteID() identity.Identifier { return c.remote }

// Send copies msg into the remote's receive queue as one message. It blocks
// while that queue is full, until the remote reads, ctx ends (Send returns
// ctx's error and the message is not delivered) or the connection dies. A
// message larger than the smaller of both sides' MaxMessageSize fails with
// p2pconn.ErrMessageTooLarge and the connection stays alive. On a dead
// connection Send fails at once with an error matching
// p2pconn.ErrConnectionClosed, and p2pconn.ErrConnectionLost after a loss.
// A Send blocked on the full queue fails the same way, its message not
// delivered, when the connection dies, except under this side's Close,
// which gives it up to CloseTimeout (see Close). While the session resumes
// (see Conn), Send commits msg to the resend buffer instead, and one
// blocked on the full queue when the link went down does too.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.err != nil {
		return fmt.Errorf("send: %w", c.err)
	}
	if len(msg) > c.maxMsg {
		return fmt.Errorf("send to %s: %d bytes, limit %d: %w", c.remote.Short(), len(msg), c.maxMsg, p2pconn.ErrMessageTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send to %s: %w", c.remote.Short(), err)
	}
	r := c.peer()
	c.sending++
	defer func() {
		c.sending--
		p.broadcastLocked()
	}()
	for {
		if sp := c.susp; sp != nil {
			if sp.out.Room(len(msg)) {
				sp.out.Add(msg)
				p.usedLocked(c.mgr.net)
				return nil
			}
			if !p.waitLocked(ctx.Done()) {
				return fmt.Errorf("send to %s: waiting for room in the resend buffer: %w", c.remote.Short(), ctx.Err())
			}
			continue
		}
		// A Send that started before a local Close still delivers, unless
		// that Close gave up on it; nothing reaches a remote that closed,
		// and nothing is committed once the connection was retired, or
		// across a link that is down.
		if p.lost || p.retired || p.down || r.closed || c.abort {
			return fmt.Errorf("send: %w", c.err)
		}
		if len(r.queue) < r.cap {
			cp := make([]byte, len(msg)) // never nil, even for an empty message
			copy(cp, msg)
			r.queue = append(r.queue, cp)
			p.usedLocked(c.mgr.net)
			p.broadcastLocked()
			return nil
		}
		if !p.waitLocked(ctx.Done()) {
			return fmt.Errorf("send to %s: %w", c.remote.Short(), ctx.Err())
		}
	}
}

// Next returns the next message, blocking until one arrives, ctx ends or the
// connection dies. A Next that ctx ends loses nothing. Once the remote has
// closed the connection, it was lost, or this side's manager closed it idle
// or evicted it, Next returns the queued messages, then the cause: an error
// matching io.EOF and p2pconn.ErrConnectionClosed, p2pconn.ErrPeerLeft too
// when the remote's manager closed, and p2pconn.ErrConnectionLost after a
// loss. After a local Close it fails at once with
// p2pconn.ErrConnectionClosed.
func (c *Conn) Next(ctx context.Context) ([]byte, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if c.closed {
			return nil, fmt.Errorf("next: %w", c.err)
		}
		if len(c.queue) > 0 {
			msg := c.queue[0]
			c.queue[0] = nil
			c.queue = c.queue[1:]
			p.usedLocked(c.mgr.net)
			p.broadcastLocked()
			return msg, nil
		}
		if c.ended {
			return nil, fmt.Errorf("next: %w", c.err)
		}
		if !p.waitLocked(ctx.Done()) {
			return nil, fmt.Errorf("next from %s: %w", c.remote.Short(), ctx.Err())
		}
	}
}

// IsAlive reports whether the connection can still send. It does not block.
func (c *Conn) IsAlive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Done returns a channel that is closed when the connection dies: local or
// remote close, Partition or Crash.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is alive, then why it died: an error
// matching p2pconn.ErrConnectionClosed, naming the remote; it also matches
// p2pconn.ErrPeerLeft when the remote's manager closed, and
// p2pconn.ErrConnectionLost after a Partition or Crash.
func (c *Conn) Err() error {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.err
}

// Close closes the connection on both sides and discards the messages not
// yet read on this side. The remote can no longer send, and its Next returns
// every message sent before the close, then an error matching io.EOF and
// p2pconn.ErrConnectionClosed, but not p2pconn.ErrConnectionLost (nor
// p2pconn.ErrPeerLeft, unless the Close is part of Manager.Close).
//
// A Send of this side blocked on the remote's full queue when Close is called
// is given up to Config.CloseTimeout to complete; after that it fails with
// p2pconn.ErrConnectionClosed and its message is not delivered.
//
// A connection whose session is resuming (see Conn) ends at once, and only
// on this side, since the link is down: its Sends waiting for room in the
// resend buffer fail, and Close returns the *p2pconn.NotDeliveredError of
// the messages in the resend buffer, if there are any (its Cause matches
// p2pconn.ErrConnectionLost). The remote's session ends when the pair can
// talk again, or when its ResumeWindow passes.
//
// Close is idempotent and safe to call from any goroutine; every later call
// returns nil once the connection is closed.
func (c *Conn) Close() error {
	n := c.mgr.net
	n.mu.Lock()
	c.p.mu.Lock()
	started, err := c.beginCloseLocked(false)
	closing := c.closing
	c.p.mu.Unlock()
	n.mu.Unlock()
	if !started {
		<-closing
		return nil
	}
	c.finishClose(time.Now().Add(c.mgr.cfg.CloseTimeout))
	return err
}

// beginCloseLocked starts a local close, with n.mu and p.mu held, and reports
// whether it did: false if a Close had started already. Both sides die at
// once and leave their pools; finishClose ends the stream. leaving says that
// the local manager is closing, which the remote learns as
// p2pconn.ErrPeerLeft. A side whose session resumes ends alone, and err is
// then its *p2pconn.NotDeliveredError, if any.
func (c *Conn) beginCloseLocked(leaving bool) (started bool, err error) {
	if c.closing != nil {
		return false, nil
	}
	c.closing = make(chan struct{})
	if c.susp != nil {
		c.endSessionLocked(fmt.Errorf("connection to %s closed locally while the session was resuming: %w",
			c.remote.Short(), c.susp.cause))
		if errors.Is(c.err, p2pconn.ErrNotDelivered) {
			err = c.err
		}
	} else if c.err == nil {
		c.die(fmt.Errorf("connection to %s closed: %w", c.remote.Short(), p2pconn.ErrConnectionClosed))
		if r := c.peer(); r.err == nil {
			if leaving {
				r.die(fmt.Errorf("connection to %s: remote node left: %w", r.remote.Short(), p2pconn.ErrPeerLeft))
			} else {
				r.die(fmt.Errorf("connection to %s closed by remote: %w", r.remote.Short(), p2pconn.ErrConnectionClosed))
			}
		}
	}
	c.closed = true
	c.queue = nil
	c.p.broadcastLocked()
	log.Debugf("%s: closing connection to %s", c.mgr.id.Short(), c.remote.Short())
	return true, err
}

// finishClose waits until deadline for the Sends of this side in progress,
// fails those still blocked, then tells the remote that nothing more comes.
// Only the caller whose beginCloseLocked returned true calls it.
func (c *Conn) finishClose(deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	p := c.p
	p.mu.Lock()
	for c.sending > 0 && !c.abort {
		if !p.waitLocked(ctx.Done()) {
			c.abort = true
			p.broadcastLocked()
			log.Debugf("%s: close of connection to %s: gave up on a Send in progress after CloseTimeout",
				c.mgr.id.Short(), c.remote.Short())
		}
	}
	for c.sending > 0 { // aborted Sends return without blocking
		p.waitLocked(nil)
	}
	if !p.down { // else the remote resumes, and learns nothing
		c.peer().ended = true
	}
	p.broadcastLocked()
	close(c.closing)
	settled := p.settledLocked()
	p.mu.Unlock()
	if settled {
		c.mgr.net.forget(p)
	}
}

// die marks c dead with err and removes it from its manager's pool. n.mu and
// p.mu are held.
func (c *Conn) die(err error) {
	c.err = err
	close(c.done)
	c.mgr.dropLocked(c)
	c.mgr.events.Publish(p2pconn.Event{Kind: p2pconn.EventDisconnected, Peer: c.remote, Inbound: c.inbound(), Conn: c, Err: err})
}

// inbound reports whether the remote opened the connection.
func (c *Conn) inbound() bool { return c.p.ends[1] == c }

// retireLocked closes c for its manager's policy (idle closing, eviction),
// with n.mu and p.mu held, losing nothing on either side: no Send of either
// side commits a message any more (those in progress fail), but both sides'
// Next still return what they had received, then the error: a plain close on
// this side, a clean remote close on the other. c must be alive.
func (c *Conn) retireLocked(why string) {
	p := c.p
	p.retired = true
	c.die(fmt.Errorf("connection to %s closed (%s): %w", c.remote.Short(), why, p2pconn.ErrConnectionClosed))
	r := c.peer()
	r.die(fmt.Errorf("connection to %s closed by remote: %w", r.remote.Short(), p2pconn.ErrConnectionClosed))
	c.ended, r.ended = true, true
	p.broadcastLocked()
	p.forgetLocked()
	log.Debugf("%s: closed connection to %s (%s)", c.mgr.id.Short(), c.remote.Short(), why)
}

// peer returns the other side of the connection.
func (c *Conn) peer() *Conn {
	if c.p.ends[0] == c {
		return c.p.ends[1]
	}
	return c.p.ends[0]
}

// loseLocked takes p's link down, with n.mu held; gone is the manager that
// crashed, if that is why. A live side that can resume its session
// suspends (resume.go); every other side dies with an error matching
// p2pconn.ErrConnectionLost whose reason why(side) gives, and its blocked
// Sends fail. The crashed side ends whatever it was doing. Once no side
// resumes, p is lost and leaves its managers' pipe sets. Messages already
// queued stay readable, except on a side closed locally. A link already
// down stays so.
func (p *pipe) loseLocked(why func(*Conn) string, gone *Manager) {
	p.mu.Lock()
	for _, c := range p.ends {
		switch {
		case c.mgr == gone && c.susp != nil:
			c.dropSessionLocked(fmt.Errorf("connection to %s: %s: %w", c.remote.Short(), why(c), c.susp.cause))
		case c.susp != nil:
			// Resuming already: the link was down.
		case c.err != nil:
			c.ended = true
		case c.mgr != gone && !p.down && c.resumableLocked():
			c.suspendLocked(why(c))
		default:
			c.die(fmt.Errorf("connection to %s: %s: %w", c.remote.Short(), why(c), p2pconn.ErrConnectionLost))
			c.ended = true
		}
	}
	p.down = p.ends[0].susp != nil || p.ends[1].susp != nil
	p.lost = !p.down
	p.broadcastLocked()
	p.mu.Unlock()
	if p.lost {
		p.forgetLocked()
	}
}

// settledLocked reports whether nothing can happen on p any more that
// Partition or Crash would change: it was lost, or both sides are dead and no
// Close is waiting for a Send.
func (p *pipe) settledLocked() bool {
	if p.lost {
		return true
	}
	for _, c := range p.ends {
		if c.err == nil {
			return false
		}
		if c.closing != nil {
			select {
			case <-c.closing:
			default:
				return false
			}
		}
	}
	return true
}

// usedLocked records that p carried a message now, with p.mu held (or
// before p is shared).
func (p *pipe) usedLocked(n *Network) {
	p.usedAt = time.Now()
	p.useSeq = n.uses.Add(1)
}

// forgetLocked removes p from both managers' pipe sets, with n.mu held.
func (p *pipe) forgetLocked() {
	for _, c := range p.ends {
		delete(c.mgr.pipes, p)
	}
}

// joins reports whether p connects a and b.
func (p *pipe) joins(a, b identity.Identifier) bool {
	x, y := p.ends[0].mgr.id, p.ends[1].mgr.id
	return (x == a && y == b) || (x == b && y == a)
}

// waitLocked releases p.mu until p changes or stop is closed, then takes it
// again. It reports false if stop was closed. A nil stop never fires.
func (p *pipe) waitLocked(stop <-chan struct{}) bool {
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	ch := p.changed
	p.mu.Unlock()
	defer p.mu.Lock()
	select {
	case <-ch:
		return true
	case <-stop:
		return false
	}
}

// broadcastLocked wakes every waitLocked.
func (p *pipe) broadcastLocked() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}
