package sg

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
)

// Stats counts what a node did.
type Stats struct {
	Routed          int64 // search messages this node routed (one per hop it took part in)
	HopFailures     int64 // Forwards to a next hop that failed: the search went another way
	Requests        int64 // maintenance Requests sent
	RequestFailures int64 // maintenance Requests without a reply
	Repairs         int64 // table entries that maintenance changed after the join
	Dropped         int64 // peers dropped as failed or gone
}

type stats struct {
	routed, hopFailures, requests, requestFailures, repairs, dropped atomic.Int64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	return Stats{
		Routed:          n.stats.routed.Load(),
		HopFailures:     n.stats.hopFailures.Load(),
		Requests:        n.stats.requests.Load(),
		RequestFailures: n.stats.requestFailures.Load(),
		Repairs:         n.stats.repairs.Load(),
		Dropped:         n.stats.dropped.Load(),
	}
}

// request sends m to node to on the maintenance channel, with the
// maintenance Connect options, and returns the reply, telling the
// Observer. It waits at most RequestTimeout.
func (n *Node) request(ctx context.Context, to identity.Identifier, m message) (message, error) {
	return n.requestWith(ctx, to, m, n.cfg.RequestTimeout, n.cfg.MaintenanceConnect)
}

// requestWith is request with a timeout and Connect options of its own.
// A request also ends, with the connection's error, when the connection to
// to dies while the reply is awaited: a node that crashes never answers.
func (n *Node) requestWith(ctx context.Context, to identity.Identifier, m message, timeout time.Duration, opts []p2pconn.ConnectOption) (message, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m.id = n.newID()
	n.stats.requests.Add(1)
	var conn p2pconn.Connection
	var err error
	if to != n.self.ID {
		if conn, err = n.mgr.Connect(ctx, to, opts...); err == nil {
			watching := make(chan struct{})
			defer close(watching)
			go func() {
				select {
				case <-conn.Done():
					// Lost, or the node left: no reply will come. A clean
					// close (idle closing) racing the request is not the
					// end: the reply comes on a new connection.
					if lostOrLeft(conn.Err()) {
						cancel()
					}
				case <-watching:
				}
			}()
		}
	}
	var r network.Message
	if err == nil {
		r, err = n.maint.Request(ctx, to, m.encode(), opts...)
		if err != nil && conn != nil && lostOrLeft(conn.Err()) {
			err = fmt.Errorf("%s to %s: %w", m.kind, to.Short(), conn.Err())
		}
	}
	if err != nil {
		n.stats.requestFailures.Add(1)
		if n.obs != nil && to != n.self.ID {
			n.obs.RequestFailed(to, m.id, m.kind.String(), err)
		}
		return message{}, err
	}
	reply, err := decode(r.Payload)
	if n.obs != nil && to != n.self.ID {
		n.obs.Sent(to, m.id, m.re, m.kind.String())
		if r.From != n.self.ID && err == nil {
			n.obs.Received(r.From, reply.id, reply.kind.String())
		}
	}
	if err != nil {
		return message{}, fmt.Errorf("%s to %s: reply: %w", m.kind, to.Short(), err)
	}
	return reply, nil
}

// reply answers call on conduit c with m (whose re names what it
// answers), telling the Observer.
func (n *Node) reply(ctx context.Context, c network.Conduit, call network.CallRef, m message) error {
	m.id = n.newID()
	err := c.Reply(ctx, call, m.encode())
	if err == nil && n.obs != nil && call.Origin != n.self.ID {
		n.obs.Sent(call.Origin, m.id, m.re, m.kind.String())
	}
	return err
}

// forward passes a search on to node to, telling the Observer.
func (n *Node) forward(ctx context.Context, to identity.Identifier, call network.CallRef, m message) error {
	m.id = n.newID()
	err := n.search.Forward(ctx, to, call, m.encode())
	if err == nil && n.obs != nil && to != n.self.ID {
		n.obs.Sent(to, m.id, m.re, m.kind.String())
	}
	return err
}

// received decodes a message a processor got, telling the Observer.
func (n *Node) received(m network.Message) (message, error) {
	msg, err := decode(m.Payload)
	if err != nil {
		return message{}, fmt.Errorf("from %s on %q: %w", m.From.Short(), m.Channel, err)
	}
	if n.obs != nil && m.From != n.self.ID {
		n.obs.Received(m.From, msg.id, msg.kind.String())
	}
	return msg, nil
}

// lostOrLeft reports whether err says that a connection was lost or that
// its remote left, rather than closed cleanly (by idle closing, say).
func lostOrLeft(err error) bool {
	return errors.Is(err, p2pconn.ErrConnectionLost) || errors.Is(err, p2pconn.ErrPeerLeft)
}
