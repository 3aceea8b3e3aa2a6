package p2pconn

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/multiformats/go-varint"
)

// Handshake messages, as PROTOCOL.md describes them. Each is one frame whose
// payload starts with a type byte; trailing bytes a version does not know are
// ignored, so later versions can extend a message.
const (
	msgHello   byte = 0x01 // opener -> acceptor: max message size, dial nonce
	msgAccept  byte = 0x02 // acceptor -> opener: max message size, duplicate nonce
	msgReject  byte = 0x03 // acceptor -> opener: reason
	msgConfirm byte = 0x04 // opener -> acceptor: the stream carries the connection

	maxHandshakeSize = 64
)

// Reasons a REJECT gives.
const (
	rejectDuplicate byte = 0x01 // another stream carries, or will carry, the connection
	rejectLimit     byte = 0x02 // the acceptor is at its MaxConnections
	rejectClosing   byte = 0x03 // the acceptor is shutting down
)

// Extension fields of HELLO and ACCEPT (PROTOCOL.md, "Extensions"): each is
// uvarint(key) || uvarint(length) || value, after the version-1 fields.
const (
	extIncarnation uint64 = 0x01 // 8 bytes: the sender's incarnation, non-zero
	extSeq         uint64 = 0x02 // uvarint: HELLO: the opening's number; ACCEPT: the acceptor's highest
	extCaps        uint64 = 0x03 // uvarint: capability bits
	extResend      uint64 = 0x04 // uvarint: the sender's resend limit in bytes (capAck)
	extSession     uint64 = 0x05 // 8 bytes session id, then uvarint(count) (capAck)
)

// Capability bits of the caps field.
const (
	capClose  uint64 = 1 << 0 // control frames and CLOSE
	capAck    uint64 = 1 << 1 // ACK control frames (acknowledgements)
	capResume uint64 = 1 << 2 // the side keeps a lost session for resumption

	// capsSupported is what this version can announce.
	capsSupported = capClose | capAck | capResume
)

// Control frames (PROTOCOL.md, "Control frames"): on a connection where both
// sides announced the feature, a frame whose length is ctrlBase + n carries
// an n-byte control message instead of a user message: a type byte, then
// fields.
const (
	ctrlBase    uint64 = 1 << 32
	maxCtrlSize        = 64

	ctrlClose byte = 0x01 // the sender half-closes next; field: why
	ctrlAck   byte = 0x02 // uvarint: messages received so far (capAck)
)

// Reasons a CLOSE gives.
const (
	closeApp     byte = 0x01 // the application closed the connection
	closeIdle    byte = 0x02 // idle closing (Config.IdleTimeout)
	closeEvicted byte = 0x03 // room for another connection (Config.EvictAtLimit)
	closeLeft    byte = 0x04 // the node is leaving: its manager is closing
)

func closeReason(r byte) string {
	switch r {
	case closeApp:
		return "closed by remote"
	case closeIdle:
		return "closed by remote: idle"
	case closeEvicted:
		return "closed by remote: evicted"
	case closeLeft:
		return "remote node left"
	default:
		return "closed by remote"
	}
}

// appendControl appends a control frame with payload body to b.
func appendControl(b []byte, body ...byte) []byte {
	var hdr [maxHeaderSize]byte
	b = append(b, hdr[:varint.PutUvarint(hdr[:], ctrlBase+uint64(len(body)))]...)
	return append(b, body...)
}

// handshake is a decoded handshake message.
type handshake struct {
	typ     byte
	maxSize uint64 // HELLO, ACCEPT
	nonce   uint64 // HELLO: dial nonce; ACCEPT: nonce of the acceptor's own pending dial, 0 if none

	// Version 2 (HELLO, ACCEPT): set when the message carries both an
	// incarnation and a sequence number; otherwise all zero.
	ext    bool
	inc    uint64
	seq    uint64
	caps   uint64
	resend uint64 // the sender's resend limit (capAck), 0 if absent

	// Session (capAck): HELLO: the session to resume, 0 for a new one;
	// ACCEPT: the connection's session. count: messages the sender has
	// received in that session. hasSession: the field was present.
	session    uint64
	count      uint64
	hasSession bool

	reason byte // REJECT
}

func rejectReason(r byte) string {
	switch r {
	case rejectDuplicate:
		return "duplicate stream"
	case rejectLimit:
		return "at connection limit"
	case rejectClosing:
		return "shutting down"
	default:
		return fmt.Sprintf("reason %#x", r)
	}
}

// appendHandshake appends m as one frame to b.
func appendHandshake(b []byte, m handshake) []byte {
	var body [maxHandshakeSize]byte
	body[0] = m.typ
	n := 1
	switch m.typ {
	case msgHello, msgAccept:
		n += varint.PutUvarint(body[n:], m.maxSize)
		binary.BigEndian.PutUint64(body[n:], m.nonce)
		n += 8
		if m.ext {
			n += putExt(body[n:], extIncarnation, binary.BigEndian.AppendUint64(nil, m.inc))
			n += putExt(body[n:], extSeq, varint.ToUvarint(m.seq))
			if m.caps != 0 {
				n += putExt(body[n:], extCaps, varint.ToUvarint(m.caps))
			}
			if m.resend != 0 {
				n += putExt(body[n:], extResend, varint.ToUvarint(m.resend))
			}
			if m.hasSession {
				v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+varint.MaxLenUvarint63), m.session)
				n += putExt(body[n:], extSession, append(v, varint.ToUvarint(m.count)...))
			}
		}
	case msgReject:
		body[n] = m.reason
		n++
	}
	var hdr [maxHeaderSize]byte
	b = append(b, hdr[:putHeader(hdr[:], n)]...)
	return append(b, body[:n]...)
}

// writeHandshake writes m to w in one Write.
func writeHandshake(w io.Writer, m handshake) error {
	_, err := w.Write(appendHandshake(make([]byte, 0, 32), m))
	return err
}

// readHandshake reads one handshake frame from r.
func readHandshake(r io.Reader) (handshake, error) {
	fr := frameReader{r: r, max: maxHandshakeSize}
	body, _, err := fr.next()
	if err != nil {
		if err == io.EOF {
			return handshake{}, fmt.Errorf("%w: stream ended before the handshake", errFraming)
		}
		return handshake{}, err
	}
	return decodeHandshake(body)
}

// decodeHandshake parses the payload of a handshake frame.
func decodeHandshake(body []byte) (handshake, error) {
	if len(body) == 0 {
		return handshake{}, fmt.Errorf("%w: empty handshake message", errFraming)
	}
	m := handshake{typ: body[0]}
	rest := body[1:]
	switch m.typ {
	case msgHello, msgAccept:
		size, n, err := varint.FromUvarint(rest)
		if err != nil {
			return handshake{}, fmt.Errorf("%w: handshake max message size: %w", errFraming, err)
		}
		rest = rest[n:]
		if len(rest) < 8 {
			return handshake{}, fmt.Errorf("%w: handshake message %#x cut short", errFraming, m.typ)
		}
		if size == 0 {
			return handshake{}, fmt.Errorf("%w: handshake max message size is 0", errFraming)
		}
		m.maxSize = size
		m.nonce = binary.BigEndian.Uint64(rest)
		if err := m.decodeExt(rest[8:]); err != nil {
			return handshake{}, err
		}
	case msgReject:
		if len(rest) < 1 {
			return handshake{}, fmt.Errorf("%w: reject without a reason", errFraming)
		}
		m.reason = rest[0]
	case msgConfirm:
	default:
		return handshake{}, fmt.Errorf("%w: unknown handshake message %#x", errFraming, m.typ)
	}
	return m, nil
}

// putExt writes one extension field into b and returns its length. The
// fields a node sends are bounded so that a handshake fits in 64 bytes
// (TestSessionField); one that does not is a bug, not input.
func putExt(b []byte, key uint64, value []byte) int {
	if len(b) < varint.UvarintSize(key)+varint.UvarintSize(uint64(len(value)))+len(value) {
		panic(fmt.Sprintf("p2pconn: handshake field %#x does not fit in %d bytes", key, maxHandshakeSize))
	}
	n := varint.PutUvarint(b, key)
	n += varint.PutUvarint(b[n:], uint64(len(value)))
	return n + copy(b[n:], value)
}

// decodeExt parses the extension fields after the version-1 fields of HELLO
// or ACCEPT. Unknown keys are skipped; a known key with a malformed value,
// or a field cut short, is a framing error.
func (m *handshake) decodeExt(b []byte) error {
	var inc, seq, caps, resend, session, count uint64
	var hasSession bool
	var hasInc, hasSeq bool
	for len(b) > 0 {
		key, n, err := varint.FromUvarint(b)
		if err != nil {
			return fmt.Errorf("%w: handshake extension key: %w", errFraming, err)
		}
		b = b[n:]
		size, n, err := varint.FromUvarint(b)
		if err != nil || size > uint64(len(b)-n) {
			return fmt.Errorf("%w: handshake extension %#x cut short", errFraming, key)
		}
		value := b[n : n+int(size)]
		b = b[n+int(size):]
		switch key {
		case extIncarnation:
			if len(value) != 8 || binary.BigEndian.Uint64(value) == 0 {
				return fmt.Errorf("%w: handshake incarnation must be 8 non-zero bytes", errFraming)
			}
			inc, hasInc = binary.BigEndian.Uint64(value), true
		case extSession:
			if len(value) < 9 {
				return fmt.Errorf("%w: handshake session cut short", errFraming)
			}
			v, k, err := varint.FromUvarint(value[8:])
			if err != nil || 8+k != len(value) {
				return fmt.Errorf("%w: handshake session count: malformed uvarint", errFraming)
			}
			session, count, hasSession = binary.BigEndian.Uint64(value), v, true
		case extSeq, extCaps, extResend:
			v, k, err := varint.FromUvarint(value)
			if err != nil || k != len(value) {
				return fmt.Errorf("%w: handshake extension %#x: malformed uvarint", errFraming, key)
			}
			switch key {
			case extSeq:
				seq, hasSeq = v, true
			case extCaps:
				caps = v
			default:
				resend = v
			}
		}
	}
	if hasInc && hasSeq {
		m.ext, m.inc, m.seq, m.caps, m.resend = true, inc, seq, caps, resend
		m.session, m.count, m.hasSession = session, count, hasSession
	}
	return nil
}
