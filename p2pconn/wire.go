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

// handshake is a decoded handshake message.
type handshake struct {
	typ     byte
	maxSize uint64 // HELLO, ACCEPT
	nonce   uint64 // HELLO: dial nonce; ACCEPT: nonce of the acceptor's own pending dial, 0 if none
	reason  byte   // REJECT
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
	var body [1 + maxHeaderSize + 8]byte
	body[0] = m.typ
	n := 1
	switch m.typ {
	case msgHello, msgAccept:
		n += varint.PutUvarint(body[n:], m.maxSize)
		binary.BigEndian.PutUint64(body[n:], m.nonce)
		n += 8
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
	body, err := fr.next()
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
