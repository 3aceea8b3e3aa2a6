package network

import (
	"encoding/binary"
	"fmt"

	"github.com/multiformats/go-varint"

	"github.com/skipwire/skipwire/identity"
)

// The envelope is the first bytes of every skipwire message a Network sends:
// a kind byte, then fields (PROTOCOL.md, "Network envelope", has them byte by
// byte). This file only encodes and decodes; it does no I/O.

// kind is the first byte of an envelope.
type kind byte

const (
	kindData        kind = 0x01 // a message for a channel's processor
	kindReply       kind = 0x02 // the answer to a call
	kindNoProcessor kind = 0x03 // a call reached a node without a processor on its channel
	kindCredit      kind = 0x04 // room freed in the sender's queue for a channel
	kindOpen        kind = 0x05 // a Network reads this connection; its epoch, window and ack
	kindClosed      kind = 0x06 // the Network that read this connection has closed
	kindBlocked     kind = 0x07 // a Send waits for room on a channel (capGrow)
)

// Capability bits of an OPEN.
const (
	// capGrow: this Network says BLOCKED when a Send waits for room, takes a
	// CREDIT for more than it sent as more room, and grows the windows of
	// senders its processors keep up with.
	capGrow = 0x01
)

// capabilities are what a Network's OPEN announces.
const capabilities = capGrow

// Flags of a DATA envelope.
const (
	flagCall   = 0x01 // a call ID follows the channel
	flagOrigin = 0x02 // the call's origin follows the call ID (a Forward); else the origin is the sender
	knownFlags = flagCall | flagOrigin
)

// Reasons an envelope is rejected, as counted in the rejected metric.
const (
	rejectMalformed   = "malformed"    // too short, bad flags, bad varint, trailing bytes
	rejectUnknownKind = "unknown_kind" // a kind byte this version does not know
	rejectBadChannel  = "bad_channel"  // an empty channel name or one longer than the envelope
	rejectForgedCall  = "forged_call"  // a call ID of zero, or a call answer from a node not asked
	rejectOverWindow  = "over_window"  // a DATA beyond the window the sender was granted
	rejectBadCredit   = "bad_credit"   // credits for messages never sent
	rejectStale       = "stale"        // a DATA sent to an earlier Network of this node
)

// envelope is a decoded envelope. Byte slices point into the decoded message.
type envelope struct {
	kind    kind
	channel []byte
	call    CallRef // DATA with flagCall (Origin set only with flagOrigin), REPLY, NO_PROCESSOR: ID
	origin  bool    // DATA: the call's Origin was on the wire
	payload []byte  // DATA, REPLY
	credits int     // CREDIT
	epoch   uint64  // OPEN, CLOSED
	ack     uint64  // OPEN: the remote epoch this OPEN acknowledges, or 0
	window  int     // OPEN
	caps    uint64  // OPEN: capability bits
}

// rejectError says why an envelope was rejected.
type rejectError struct {
	reason string
	detail string
}

func (e *rejectError) Error() string {
	return fmt.Sprintf("envelope rejected (%s): %s", e.reason, e.detail)
}

func reject(reason, format string, args ...any) error {
	return &rejectError{reason: reason, detail: fmt.Sprintf(format, args...)}
}

// dataHeaderMax is the longest DATA header: kind, flags, channel length,
// channel, call ID, origin.
const dataHeaderMax = 3 + MaxChannelLen + 8 + identity.Size

// appendData appends a DATA envelope. call.ID == 0 means no call; with
// origin, the call's Origin is written too.
func appendData(b []byte, ch Channel, call CallRef, origin bool, payload []byte) []byte {
	var flags byte
	if call.ID != 0 {
		flags |= flagCall
		if origin {
			flags |= flagOrigin
		}
	}
	b = append(b, byte(kindData), flags)
	b = appendChannel(b, ch)
	if flags&flagCall != 0 {
		b = binary.BigEndian.AppendUint64(b, call.ID)
	}
	if flags&flagOrigin != 0 {
		b = append(b, call.Origin[:]...)
	}
	return append(b, payload...)
}

// appendReply appends a REPLY envelope: the answer to call id, from a
// conduit of channel ch.
func appendReply(b []byte, ch Channel, id uint64, payload []byte) []byte {
	b = append(b, byte(kindReply))
	b = appendChannel(b, ch)
	b = binary.BigEndian.AppendUint64(b, id)
	return append(b, payload...)
}

// appendNoProcessor appends a NO_PROCESSOR envelope for call id on ch.
func appendNoProcessor(b []byte, ch Channel, id uint64) []byte {
	b = append(b, byte(kindNoProcessor))
	b = appendChannel(b, ch)
	return binary.BigEndian.AppendUint64(b, id)
}

// appendCredit appends a CREDIT envelope of n messages on ch.
func appendCredit(b []byte, ch Channel, n int) []byte {
	b = append(b, byte(kindCredit))
	b = appendChannel(b, ch)
	return binary.AppendUvarint(b, uint64(n))
}

// appendOpen appends an OPEN envelope.
func appendOpen(b []byte, epoch, ack uint64, window int, caps uint64) []byte {
	b = append(b, byte(kindOpen))
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint64(b, ack)
	b = binary.AppendUvarint(b, uint64(window))
	return binary.AppendUvarint(b, caps)
}

// appendBlocked appends a BLOCKED envelope for ch.
func appendBlocked(b []byte, ch Channel) []byte {
	b = append(b, byte(kindBlocked))
	return appendChannel(b, ch)
}

// appendClosed appends a CLOSED envelope.
func appendClosed(b []byte, epoch uint64) []byte {
	b = append(b, byte(kindClosed))
	return binary.BigEndian.AppendUint64(b, epoch)
}

func appendChannel(b []byte, ch Channel) []byte {
	b = append(b, byte(len(ch)))
	return append(b, ch...)
}

// decode parses one envelope. An error is a *rejectError.
func decode(msg []byte) (envelope, error) {
	var e envelope
	if len(msg) == 0 {
		return e, reject(rejectMalformed, "empty message")
	}
	e.kind = kind(msg[0])
	r := reader{b: msg[1:]}
	switch e.kind {
	case kindData:
		flags, ok := r.byte()
		if !ok {
			return e, reject(rejectMalformed, "DATA without flags")
		}
		if flags&^knownFlags != 0 || flags == flagOrigin {
			return e, reject(rejectMalformed, "DATA flags %#02x", flags)
		}
		if e.channel, ok = r.channel(); !ok {
			return e, reject(rejectBadChannel, "DATA channel")
		}
		if flags&flagCall != 0 {
			if e.call.ID, ok = r.callID(); !ok {
				return e, callError("DATA", r)
			}
		}
		if flags&flagOrigin != 0 {
			o, ok := r.take(identity.Size)
			if !ok {
				return e, reject(rejectMalformed, "DATA origin truncated")
			}
			copy(e.call.Origin[:], o)
			if e.call.Origin == (identity.Identifier{}) {
				return e, reject(rejectForgedCall, "DATA with a zero origin")
			}
			e.origin = true
		}
		e.payload = r.rest()
	case kindReply:
		var ok bool
		if e.channel, ok = r.channel(); !ok {
			return e, reject(rejectBadChannel, "REPLY channel")
		}
		if e.call.ID, ok = r.callID(); !ok {
			return e, callError("REPLY", r)
		}
		e.payload = r.rest()
	case kindNoProcessor:
		var ok bool
		if e.channel, ok = r.channel(); !ok {
			return e, reject(rejectBadChannel, "NO_PROCESSOR channel")
		}
		if e.call.ID, ok = r.callID(); !ok {
			return e, callError("NO_PROCESSOR", r)
		}
		if !r.done() {
			return e, reject(rejectMalformed, "NO_PROCESSOR with %d trailing bytes", len(r.b))
		}
	case kindCredit:
		var ok bool
		if e.channel, ok = r.channel(); !ok {
			return e, reject(rejectBadChannel, "CREDIT channel")
		}
		n, err := r.uvarint()
		if err != nil || n == 0 || n > MaxWindow {
			return e, reject(rejectMalformed, "CREDIT count %d (%v)", n, err)
		}
		if !r.done() {
			return e, reject(rejectMalformed, "CREDIT with %d trailing bytes", len(r.b))
		}
		e.credits = int(n)
	case kindOpen:
		var ok bool
		if e.epoch, ok = r.uint64(); !ok || e.epoch == 0 {
			return e, reject(rejectMalformed, "OPEN epoch")
		}
		if e.ack, ok = r.uint64(); !ok {
			return e, reject(rejectMalformed, "OPEN ack")
		}
		w, err := r.uvarint()
		if err != nil || w == 0 || w > MaxWindow {
			return e, reject(rejectMalformed, "OPEN window %d (%v)", w, err)
		}
		e.window = int(w)
		if e.caps, err = r.uvarint(); err != nil {
			return e, reject(rejectMalformed, "OPEN capabilities: %v", err)
		}
		// Later versions may append fields: the rest is ignored.
	case kindClosed:
		var ok bool
		if e.epoch, ok = r.uint64(); !ok || e.epoch == 0 {
			return e, reject(rejectMalformed, "CLOSED epoch")
		}
		if !r.done() {
			return e, reject(rejectMalformed, "CLOSED with %d trailing bytes", len(r.b))
		}
	case kindBlocked:
		var ok bool
		if e.channel, ok = r.channel(); !ok {
			return e, reject(rejectBadChannel, "BLOCKED channel")
		}
		if !r.done() {
			return e, reject(rejectMalformed, "BLOCKED with %d trailing bytes", len(r.b))
		}
	default:
		return e, reject(rejectUnknownKind, "kind %#02x", msg[0])
	}
	return e, nil
}

// callError explains a call ID that could not be read: missing or zero.
func callError(what string, r reader) error {
	if len(r.b) >= 8 {
		return reject(rejectForgedCall, "%s with call ID 0", what)
	}
	return reject(rejectMalformed, "%s call ID truncated", what)
}

// reader consumes an envelope's fields.
type reader struct{ b []byte }

func (r *reader) byte() (byte, bool) {
	if len(r.b) == 0 {
		return 0, false
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, true
}

func (r *reader) take(n int) ([]byte, bool) {
	if len(r.b) < n {
		return nil, false
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out, true
}

// channel reads a channel: a length byte, 1 to 255, and that many bytes.
func (r *reader) channel() ([]byte, bool) {
	n, ok := r.byte()
	if !ok || n == 0 {
		return nil, false
	}
	return r.take(int(n))
}

func (r *reader) uint64() (uint64, bool) {
	b, ok := r.take(8)
	if !ok {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// callID reads a non-zero call ID; a zero one is left unread.
func (r *reader) callID() (uint64, bool) {
	if len(r.b) < 8 || binary.BigEndian.Uint64(r.b) == 0 {
		return 0, false
	}
	id, _ := r.uint64()
	return id, true
}

// uvarint reads a minimally encoded uvarint.
func (r *reader) uvarint() (uint64, error) {
	v, n, err := varint.FromUvarint(r.b)
	if err != nil {
		return 0, err
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) rest() []byte {
	out := r.b
	r.b = nil
	return out
}

func (r *reader) done() bool { return len(r.b) == 0 }
