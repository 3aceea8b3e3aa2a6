package network

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/skipwire/skipwire/identity"
)

// CallRef names one Request: the node waiting for the reply and a number it
// chose. It travels hop by hop (with Forward, or inside application payloads
// in its binary form), so that the node that finds the answer replies
// straight to the origin with Conduit.Reply.
type CallRef struct {
	// Origin is the node waiting for the reply.
	Origin identity.Identifier
	// ID is non-zero and unguessable: it comes from a cryptographic random
	// source, so only nodes the call was shown to can answer it.
	ID uint64
}

// CallRefSize is the length of a CallRef's binary form: Origin, then ID in
// 8 big-endian bytes.
const CallRefSize = identity.Size + 8

// IsZero reports whether r is the zero CallRef: no call.
func (r CallRef) IsZero() bool { return r == CallRef{} }

// String returns the origin's short form and the ID in hex, for logs.
func (r CallRef) String() string {
	if r.IsZero() {
		return "call(none)"
	}
	return fmt.Sprintf("call(%s/%016x)", r.Origin.Short(), r.ID)
}

// MarshalBinary returns the CallRefSize bytes of r: Origin, then ID
// big-endian. It never fails.
func (r CallRef) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, CallRefSize))
}

// AppendBinary appends the binary form of r to b. It never fails.
func (r CallRef) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, r.Origin[:]...)
	return binary.BigEndian.AppendUint64(b, r.ID), nil
}

// UnmarshalBinary sets r from exactly CallRefSize bytes, as MarshalBinary
// writes them. It accepts the zero CallRef (all bytes zero) and any CallRef
// with a non-zero ID; a zero ID with a non-zero Origin, or another length, is
// an error, and r is left unchanged.
func (r *CallRef) UnmarshalBinary(b []byte) error {
	if len(b) != CallRefSize {
		return fmt.Errorf("network: call reference: %d bytes, want %d", len(b), CallRefSize)
	}
	var c CallRef
	copy(c.Origin[:], b[:identity.Size])
	c.ID = binary.BigEndian.Uint64(b[identity.Size:])
	if c.ID == 0 && !c.IsZero() {
		return fmt.Errorf("network: call reference: zero ID with origin %s", c.Origin.Short())
	}
	*r = c
	return nil
}

// newCallID returns a random non-zero call ID from crypto/rand.
func newCallID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}
