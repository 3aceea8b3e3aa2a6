package memnet

import (
	"fmt"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/session"
	"github.com/skipwire/skipwire/p2pconn"
)

// Session resumption (p2pconn.Config.ResumeWindow), as the libp2p Manager
// does it.
//
// A message is acknowledged once it is in the receiver's queue, and in
// memory a Send on a working link puts it there at once: nothing is ever
// waiting for an acknowledgement then. When the link goes down
// (Network.Partition, or the remote's Crash, which the survivor cannot
// tell from a partition), each side that resumes suspends: its connection
// stays the peer's connection, its Sends commit their messages to a resend
// buffer (a session.Out bounded by Config.ResendBuffer), its Next returns
// what had arrived and then waits. The Network reconnects whenever the pair
// can talk again (Heal, a new manager under the remote's Identifier, a
// Connect): if both sides still hold the session, each side's resend buffer
// goes to the other's queue, in order after what it had received, and both
// go on; if only one does (the other side was closed, its window passed, it
// does not resume, or its node restarted), that side's session ends. A
// session that ends says which messages never reached the remote: exactly
// those in its resend buffer.

// suspension is one side's resumption in progress.
type suspension struct {
	since time.Time
	cause error        // the loss, which EventResuming carries
	out   *session.Out // committed while resuming, not in the remote's queue
	timer *time.Timer  // ends the session when ResumeWindow passes
}

// resumableLocked reports whether a loss of the link suspends c instead of
// ending it: both sides acknowledge (ResumeWindow not negative), c's
// manager resumes (ResumeWindow positive) and runs, and c is alive. n.mu
// and p.mu are held.
func (c *Conn) resumableLocked() bool {
	return c.p.acks && c.mgr.cfg.ResumeWindow > 0 && c.err == nil && !c.mgr.closed
}

// resuming reports whether c's session is resuming. It takes p.mu.
func (c *Conn) resuming() bool {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.susp != nil
}

// suspendLocked makes c resume its session after the loss of the link, for
// why, and announces it (EventResuming). n.mu and p.mu are held.
func (c *Conn) suspendLocked(why string) {
	sp := &suspension{
		since: time.Now(),
		cause: fmt.Errorf("connection to %s: %s: %w", c.remote.Short(), why, p2pconn.ErrConnectionLost),
		out:   session.NewOut(c.mgr.cfg.ResendBuffer),
	}
	sp.timer = time.AfterFunc(c.mgr.cfg.ResumeWindow, func() { c.expire(sp) })
	c.susp = sp
	c.mgr.events.Publish(p2pconn.Event{Kind: p2pconn.EventResuming, Peer: c.remote, Inbound: c.inbound(), Conn: c, Err: sp.cause})
	log.Debugf("%s: connection to %s: %s; resuming the session", c.mgr.id.Short(), c.remote.Short(), why)
}

// expire ends c's session if sp, its resumption, is still in progress when
// ResumeWindow has passed.
func (c *Conn) expire(sp *suspension) {
	n := c.mgr.net
	n.mu.Lock()
	defer n.mu.Unlock()
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	if c.susp != sp {
		return
	}
	c.endSessionLocked(fmt.Errorf("session not resumed within ResumeWindow (%s): %w", c.mgr.cfg.ResumeWindow, sp.cause))
}

// endSessionLocked ends c's session, which did not resume: c dies with a
// *p2pconn.NotDeliveredError listing the messages of its resend buffer, or
// with cause alone if there are none, and its Next returns what had arrived,
// then that error. The pipe is lost once neither side resumes. n.mu and
// p.mu are held.
func (c *Conn) endSessionLocked(cause error) {
	c.dropSessionLocked(cause)
	p := c.p
	if c.peer().susp == nil {
		p.down, p.lost = false, true
		p.forgetLocked()
	}
	p.broadcastLocked()
}

// dropSessionLocked is endSessionLocked without the pipe's bookkeeping.
func (c *Conn) dropSessionLocked(cause error) {
	sp := c.susp
	c.susp = nil
	sp.timer.Stop()
	err := cause
	if msgs := sp.out.Pending(); len(msgs) > 0 {
		err = &p2pconn.NotDeliveredError{Peer: c.remote, Messages: msgs, Cause: cause}
	}
	c.die(err)
	c.ended = true
	log.Debugf("%s: connection to %s: session ended after %s: %v",
		c.mgr.id.Short(), c.remote.Short(), time.Since(sp.since).Round(time.Millisecond), err)
}

// resumeLocked carries the session of both sides on: each side's resend
// buffer goes to the other's queue (beyond ReceiveBuffer if need be, as the
// libp2p Manager's inbox takes a stream window beyond it), after what it
// had received, and both announce EventResumed. Both sides resume; n.mu
// and p.mu are held.
func (p *pipe) resumeLocked() {
	for _, c := range p.ends {
		sp := c.susp
		c.susp = nil
		sp.timer.Stop()
		r := c.peer()
		r.queue = append(r.queue, sp.out.Pending()...)
		log.Debugf("%s: connection to %s: session resumed after %s, %d messages resent",
			c.mgr.id.Short(), c.remote.Short(), time.Since(sp.since).Round(time.Millisecond), sp.out.PendingCount())
	}
	p.down = false
	p.usedLocked(p.ends[0].mgr.net)
	p.broadcastLocked()
	for _, c := range p.ends {
		c.mgr.events.Publish(p2pconn.Event{Kind: p2pconn.EventResumed, Peer: c.remote, Inbound: c.inbound(), Conn: c})
	}
}

// reconnectLocked tries to carry p's session on, as the libp2p Manager's
// reconnection does, if p's link is down: when the pair is not cut and the
// remote node runs, the session resumes if both sides still hold it, and
// ends on the side that does if the other does not (that side was closed,
// its ResumeWindow passed or it does not resume: the remote has no such
// session; or its node restarted). n.mu is held.
func (n *Network) reconnectLocked(p *pipe) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.down {
		return
	}
	a, b := p.ends[0], p.ends[1]
	if n.cutLocked(a.mgr.id, b.mgr.id) {
		return
	}
	if a.susp != nil && b.susp != nil {
		p.resumeLocked()
		return
	}
	for _, c := range p.ends {
		if c.susp == nil {
			continue
		}
		rm := n.nodes[c.remote]
		if rm == nil {
			return // no process to reach: the session waits
		}
		why := "remote has no such session"
		if rm != c.peer().mgr {
			why = "remote restarted"
		}
		c.endSessionLocked(fmt.Errorf("session not resumed: %s: %w", why, c.susp.cause))
	}
}

// reconnectPairLocked tries to carry on every session between a and b
// whose link is down. n.mu is held.
func (n *Network) reconnectPairLocked(a, b identity.Identifier) {
	for _, id := range []identity.Identifier{a, b} {
		m := n.nodes[id]
		if m == nil {
			continue
		}
		for p := range m.pipes {
			if p.joins(a, b) {
				n.reconnectLocked(p)
			}
		}
	}
}
