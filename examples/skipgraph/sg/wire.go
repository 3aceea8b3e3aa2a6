package sg

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/skipwire/skipwire/identity"
)

// The skip graph's messages, on two network channels: SearchChannel carries
// searches hop by hop (a Request at the origin, Forwards along the route,
// the Reply from the node that has the answer), MaintenanceChannel the
// Requests that build and repair tables.
//
// Every message starts with its kind (1 byte), an ID (8 bytes, big-endian)
// unique among the sender's messages, and the ID of the message it answers
// or belongs to (8 bytes; 0 for none): a reply names its request, a search
// hop and the answer name the search as its origin numbered it. Then, by
// kind:
//
//	search     target key (8), hops so far (2)
//	found      status (1), the answer (peer), hops (2)
//	getTable   nothing
//	table      state (1), levels under repair (8 for the left side, 8 for
//	           the right, a bit per level), table, backups (1-byte count,
//	           then peers)
//	link       level (1), side of the receiver the sender claims (1), the sender (peer)
//	linkReply  status (1), a peer: the neighbour replaced, or the closer one kept
//	leave      the leaver's table
//	leaveAck   nothing
//	find       target key (8): a search run for a node that joins
//
// A peer is its Identifier (32), key (8) and membership vector (8). A table
// is its node (peer), a level count (1), then per level a flags byte (bit 0:
// a left neighbour follows, bit 1: a right one) and those peers.
type kind byte

const (
	kindSearch kind = iota + 1
	kindFound
	kindGetTable
	kindTable
	kindLink
	kindLinkReply
	kindLeave
	kindLeaveAck
	kindFind
)

func (k kind) String() string {
	names := [...]string{"", "search", "found", "getTable", "table", "link", "linkReply", "leave", "leaveAck", "find"}
	if int(k) < len(names) && k != 0 {
		return names[k]
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Status of a found or linkReply message.
const (
	statusOK      byte = 1 // found: the answer; linkReply: accepted
	statusNoRoute byte = 2 // found: the search could not go on
	statusCloser  byte = 3 // linkReply: refused, a closer neighbour is kept (the peer)
	statusLeaving byte = 4 // linkReply: refused, the node is leaving
	statusInvalid byte = 5 // linkReply: refused, the claim cannot hold (wrong side or level)
)

// Node states, in a table message.
const (
	stateJoining byte = iota + 1
	stateJoined
	stateLeaving
)

const peerSize = identity.Size + 8 + 8

// message is any of the skip graph's messages; the fields its kind uses
// are set.
type message struct {
	kind kind
	id   uint64
	re   uint64 // the request this answers, or the search this belongs to

	target Key // search, find
	hops   int // search, found
	status byte
	peer   Peer      // found, link, linkReply
	level  int       // link
	side   Side      // link
	state  byte      // table
	dirty  [2]uint64 // table: by side, the levels being repaired
	table  Table     // table, leave
	near   []Peer
}

var errMalformed = errors.New("skipgraph: malformed message")

func (m *message) encode() []byte {
	b := make([]byte, 0, 64)
	b = append(b, byte(m.kind))
	b = binary.BigEndian.AppendUint64(b, m.id)
	b = binary.BigEndian.AppendUint64(b, m.re)
	switch m.kind {
	case kindSearch:
		b = binary.BigEndian.AppendUint64(b, uint64(m.target))
		b = binary.BigEndian.AppendUint16(b, uint16(m.hops))
	case kindFind:
		b = binary.BigEndian.AppendUint64(b, uint64(m.target))
	case kindFound:
		b = append(b, m.status)
		b = appendPeer(b, m.peer)
		b = binary.BigEndian.AppendUint16(b, uint16(m.hops))
	case kindTable:
		b = append(b, m.state)
		b = binary.BigEndian.AppendUint64(b, m.dirty[Left])
		b = binary.BigEndian.AppendUint64(b, m.dirty[Right])
		b = appendTable(b, m.table)
		b = append(b, byte(len(m.near)))
		for _, p := range m.near {
			b = appendPeer(b, p)
		}
	case kindLink:
		b = append(b, byte(m.level), byte(m.side))
		b = appendPeer(b, m.peer)
	case kindLinkReply:
		b = append(b, m.status)
		b = appendPeer(b, m.peer)
	case kindLeave:
		b = appendTable(b, m.table)
	}
	return b
}

func decode(b []byte) (message, error) {
	d := decoder{b: b}
	m := message{kind: kind(d.byte()), id: d.uint64(), re: d.uint64()}
	switch m.kind {
	case kindSearch:
		m.target = Key(d.uint64())
		m.hops = int(d.uint16())
	case kindFind:
		m.target = Key(d.uint64())
	case kindFound:
		m.status = d.byte()
		m.peer = d.peer()
		m.hops = int(d.uint16())
	case kindGetTable, kindLeaveAck:
	case kindTable:
		m.state = d.byte()
		m.dirty[Left] = d.uint64()
		m.dirty[Right] = d.uint64()
		m.table = d.table()
		n := int(d.byte())
		for range n {
			if d.err != nil {
				break
			}
			m.near = append(m.near, d.peer())
		}
	case kindLink:
		m.level = int(d.byte())
		m.side = Side(d.byte())
		m.peer = d.peer()
		if m.side != Left && m.side != Right || m.level >= MaxLevels {
			d.fail()
		}
	case kindLinkReply:
		m.status = d.byte()
		m.peer = d.peer()
	case kindLeave:
		m.table = d.table()
	default:
		d.fail()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return message{}, fmt.Errorf("%w (%d bytes, kind %s)", d.err, len(b), m.kind)
	}
	return m, nil
}

func appendPeer(b []byte, p Peer) []byte {
	b = append(b, p.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Key))
	return binary.BigEndian.AppendUint64(b, uint64(p.MV))
}

func appendTable(b []byte, t Table) []byte {
	b = appendPeer(b, t.Self)
	b = append(b, byte(len(t.Levels)))
	for _, l := range t.Levels {
		var flags byte
		if !l.Left.IsZero() {
			flags |= 1
		}
		if !l.Right.IsZero() {
			flags |= 2
		}
		b = append(b, flags)
		if flags&1 != 0 {
			b = appendPeer(b, l.Left)
		}
		if flags&2 != 0 {
			b = appendPeer(b, l.Right)
		}
	}
	return b
}

// decoder reads a message; the first short read sets err, and every read
// after it returns zero.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err = errMalformed }

func (d *decoder) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) uint16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) uint64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) peer() Peer {
	v := d.take(peerSize)
	if v == nil {
		return Peer{}
	}
	var p Peer
	copy(p.ID[:], v)
	p.Key = Key(binary.BigEndian.Uint64(v[identity.Size:]))
	p.MV = MembershipVector(binary.BigEndian.Uint64(v[identity.Size+8:]))
	return p
}

func (d *decoder) table() Table {
	t := Table{Self: d.peer()}
	n := int(d.byte())
	if n > MaxLevels {
		d.fail()
		return Table{}
	}
	for range n {
		flags := d.byte()
		var l Level
		if flags&1 != 0 {
			l.Left = d.peer()
		}
		if flags&2 != 0 {
			l.Right = d.peer()
		}
		if d.err != nil {
			return Table{}
		}
		t.Levels = append(t.Levels, l)
	}
	return t
}
