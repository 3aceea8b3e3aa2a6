package sg

import (
	"context"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
)

// onMaintenance is the processor of MaintenanceChannel. It answers at once,
// from the table alone: no handler makes a network call but its Reply.
func (n *Node) onMaintenance(ctx context.Context, m network.Message) {
	if n.closed() != nil {
		return
	}
	msg, err := n.received(m)
	if err != nil || m.Call.IsZero() {
		log.Debugw("maintenance message dropped", "from", m.From, "err", err)
		return
	}
	var reply message
	switch msg.kind {
	case kindGetTable:
		reply = n.tableMessage()
	case kindLink:
		reply = n.onLink(m.From, msg)
	case kindLeave:
		n.onLeave(m.From, msg.table)
		reply = message{kind: kindLeaveAck}
	case kindFind:
		// A search can take a while: run it aside, and reply from there.
		call, re := m.Call, msg.id
		n.spawn(func() { n.findFor(call, re, msg.target) })
		return
	default:
		log.Debugw("maintenance message dropped", "from", m.From, "kind", msg.kind)
		return
	}
	reply.re = msg.id
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	if err := n.reply(ctx, n.maint, m.Call, reply); err != nil {
		log.Debugw("maintenance reply not sent", "to", m.From, "kind", reply.kind, "err", err)
	}
}

// findFor searches for target on behalf of a node that joins, and replies
// with the answer. The node that has the answer replies to this node, a
// member of the skip graph that every node can reach, rather than to the
// newcomer, whose address few nodes know yet.
func (n *Node) findFor(call network.CallRef, re uint64, target Key) {
	reply := message{kind: kindFound, re: re, status: statusNoRoute}
	if n.Joined() {
		if r, err := n.search0(n.ctx, target); err == nil {
			reply = message{kind: kindFound, re: re, status: statusOK, peer: r.Node, hops: r.Hops}
		} else {
			log.Debugw("search for a joining node failed", "self", n.self, "for", call.Origin.Short(), "target", target, "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
	defer cancel()
	if err := n.reply(ctx, n.maint, call, reply); err != nil {
		log.Debugw("maintenance reply not sent", "to", call.Origin.Short(), "kind", reply.kind, "err", err)
	}
}

// tableMessage describes this node: its state, table and backups.
func (n *Node) tableMessage() message {
	n.mu.Lock()
	defer n.mu.Unlock()
	// The levels being repaired, whose neighbours may be missing for now.
	dirty := [2]uint64{n.dirty[Left] | n.fixing[Left], n.dirty[Right] | n.fixing[Right]}
	m := message{kind: kindTable, state: n.state, dirty: dirty, table: n.table.Clone()}
	m.near = append(m.near, n.near.side(Left)...)
	m.near = append(m.near, n.near.side(Right)...)
	return m
}

// onLink decides on a node's claim to be this node's neighbour at a level,
// on a side: it is accepted when this node has no neighbour there, or one
// that is farther, gone, or not connected (a neighbour is always
// connected, so that its loss is noticed); otherwise the reply names the
// closer neighbour kept. An accepted claim replies with the neighbour it
// replaced, which a joining node links to next.
func (n *Node) onLink(from identity.Identifier, m message) message {
	c := m.peer
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.state == stateLeaving:
		return message{kind: kindLinkReply, status: statusLeaving}
	case c.ID != from || c.Key == n.self.Key || !toward(m.side, n.self.Key, c.Key) || !c.SharesLevel(n.self, m.level):
		return message{kind: kindLinkReply, status: statusInvalid}
	}
	if g, ok := n.gone[c.ID]; ok && !g.left {
		delete(n.gone, c.ID) // it is alive after all
	}
	cur := n.table.At(m.level).Get(m.side)
	if !cur.IsZero() && cur.ID != c.ID && !n.isGoneLocked(cur.ID) && n.connected(cur.ID) && !closer(m.side, c.Key, cur.Key) {
		return message{kind: kindLinkReply, status: statusCloser, peer: cur}
	}
	n.table.set(m.level, m.side, c)
	// c is also the nearest on that side at every level above whose list it
	// shares with this node, unless a nearer node is there.
	for i := m.level + 1; i < MaxLevels && c.SharesLevel(n.self, i); i++ {
		up := n.table.At(i).Get(m.side)
		if !up.IsZero() && up.ID != c.ID && !n.isGoneLocked(up.ID) && !closer(m.side, c.Key, up.Key) {
			break
		}
		n.table.set(i, m.side, c)
	}
	n.near.add(c)
	if cur.ID != c.ID {
		n.stats.repairs.Add(1)
		log.Debugw("linked", "self", n.self, "level", m.level, "side", m.side, "peer", c, "replaced", cur)
		defer n.wake() // to protect c
	}
	return message{kind: kindLinkReply, status: statusOK, peer: cur}
}

// onLeave splices a leaving node out of the table: wherever it was a
// neighbour, its own neighbour on the same side takes its place. The
// maintenance loop then checks those levels (and links the new
// neighbours).
func (n *Node) onLeave(from identity.Identifier, t Table) {
	if t.Self.ID != from {
		return
	}
	n.mu.Lock()
	n.markGoneLocked(from, true)
	for i := range t.Levels {
		for _, s := range []Side{Left, Right} {
			if n.table.At(i).Get(s).ID != from {
				continue
			}
			r := t.Levels[i].Get(s)
			if r.IsZero() || r.ID == n.self.ID || n.isGoneLocked(r.ID) || !toward(s, n.self.Key, r.Key) {
				r = Peer{}
			}
			n.table.set(i, s, r)
			n.near.add(r)
			n.dirty[s] |= 1 << i
		}
	}
	n.mu.Unlock()
	n.wake()
}

// knownLocked returns what the table or the backups say of id, or zero.
func (n *Node) knownLocked(id identity.Identifier) Peer {
	for _, l := range n.table.Levels {
		for _, p := range []Peer{l.Left, l.Right} {
			if p.ID == id {
				return p
			}
		}
	}
	for _, s := range []Side{Left, Right} {
		for _, p := range n.near.side(s) {
			if p.ID == id {
				return p
			}
		}
	}
	return Peer{}
}

// markGoneLocked records that id failed (or left) and takes it out of the
// table and the backups; the levels it leaves empty are marked for repair.
// The caller holds mu and wakes the maintenance loop.
func (n *Node) markGoneLocked(id identity.Identifier, left bool) {
	if id == n.self.ID {
		return
	}
	if g, ok := n.gone[id]; !ok || left && !g.left {
		at := time.Now()
		if ok {
			at = g.at
		}
		n.gone[id] = goneEntry{at: at, left: left || g.left, peer: n.knownLocked(id)}
	}
	n.near.remove(id)
	removed := false
	for i := range n.table.Levels {
		for _, s := range []Side{Left, Right} {
			if n.table.Levels[i].Get(s).ID == id {
				n.table.Levels[i].set(s, Peer{})
				n.dirty[s] |= 1 << i
				removed = true
			}
		}
	}
	n.table.trim()
	if removed {
		n.stats.dropped.Add(1)
		log.Debugw("neighbour dropped", "self", n.self, "peer", id.Short(), "left", left)
	}
}
