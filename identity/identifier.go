package identity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// Size is the length of an Identifier in bytes.
const Size = 32

// Identifier names a skipwire node: the raw 32-byte Ed25519 public key of its
// libp2p host key, compared bytewise as a big-endian number. The zero value is a
// valid Identifier (the all-zero key) but names no usable node.
type Identifier [Size]byte

// ErrNotEd25519 is returned, wrapped, when a peer ID or key is not Ed25519 and so
// has no Identifier.
var ErrNotEd25519 = errors.New("identity: not an Ed25519 key")

// ErrInvalid is returned, wrapped, when text or bytes do not encode an Identifier.
var ErrInvalid = errors.New("identity: invalid identifier")

// peerIDPrefix is the start of every Ed25519 peer ID: an identity multihash
// (0x00) of length 36 (0x24) over a protobuf PublicKey with KeyType Ed25519
// (0x08 0x01) and a 32-byte Data field (0x12 0x20).
var peerIDPrefix = [...]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// String returns the Identifier as 64 lowercase hexadecimal characters.
func (id Identifier) String() string {
	return hex.EncodeToString(id[:])
}

// Short returns the first 8 hexadecimal characters, for logs and displays.
func (id Identifier) Short() string {
	return hex.EncodeToString(id[:4])
}

// Compare returns -1, 0 or +1 as id is less than, equal to or greater than
// other, comparing the bytes as a big-endian number.
func (id Identifier) Compare(other Identifier) int {
	return bytes.Compare(id[:], other[:])
}

// IsZero reports whether id is the all-zero Identifier.
func (id Identifier) IsZero() bool {
	return id == Identifier{}
}

// PeerID returns the libp2p peer ID whose public key is id. It is total: every
// 32-byte value maps to a distinct, well-formed peer ID, and FromPeerID inverts it.
func (id Identifier) PeerID() peer.ID {
	var b [len(peerIDPrefix) + Size]byte
	copy(b[:], peerIDPrefix[:])
	copy(b[len(peerIDPrefix):], id[:])
	return peer.ID(b[:])
}

// PublicKey returns id as a libp2p Ed25519 public key.
func (id Identifier) PublicKey() (crypto.PubKey, error) {
	k, err := crypto.UnmarshalEd25519PublicKey(id[:])
	if err != nil {
		return nil, fmt.Errorf("identity: public key of %s: %w", id.Short(), err)
	}
	return k, nil
}

// Parse returns the Identifier written as 64 hexadecimal characters (either
// case), the inverse of String. Any other input is an error wrapping ErrInvalid.
func Parse(s string) (Identifier, error) {
	var id Identifier
	if len(s) != 2*Size {
		return id, fmt.Errorf("%w: %q has %d characters, want %d hex digits", ErrInvalid, truncate(s), len(s), 2*Size)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return Identifier{}, fmt.Errorf("%w: %q: %v", ErrInvalid, truncate(s), err)
	}
	return id, nil
}

// MustParse is like Parse but panics on error. It is meant for constants in
// tests and examples.
func MustParse(s string) Identifier {
	id, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return id
}

// FromBytes returns the Identifier held in b, which must be exactly Size bytes
// long; any other length is an error wrapping ErrInvalid.
func FromBytes(b []byte) (Identifier, error) {
	var id Identifier
	if len(b) != Size {
		return id, fmt.Errorf("%w: %d bytes, want %d", ErrInvalid, len(b), Size)
	}
	copy(id[:], b)
	return id, nil
}

// FromPeerID returns the Identifier of an Ed25519 peer ID. A peer ID of any
// other key type is an error wrapping ErrNotEd25519; a malformed one is an error
// wrapping ErrInvalid.
func FromPeerID(p peer.ID) (Identifier, error) {
	s := string(p)
	if len(s) == len(peerIDPrefix)+Size && s[:len(peerIDPrefix)] == string(peerIDPrefix[:]) {
		var id Identifier
		copy(id[:], s[len(peerIDPrefix):])
		return id, nil
	}
	k, err := p.ExtractPublicKey()
	if err != nil {
		if errors.Is(err, peer.ErrNoPublicKey) && isSHA256(p) {
			// The key is hashed, not embedded, which libp2p only does for
			// keys too large to inline: RSA and ECDSA, never Ed25519.
			return Identifier{}, fmt.Errorf("peer %s: %w", p, ErrNotEd25519)
		}
		// Not a multihash, or one of a kind libp2p never makes a peer ID of.
		return Identifier{}, fmt.Errorf("%w: peer ID %q: %v", ErrInvalid, truncate(s), err)
	}
	id, err := FromPublicKey(k)
	if err != nil {
		return Identifier{}, fmt.Errorf("peer %s: %w", p, err)
	}
	if id.PeerID() != p {
		// An Ed25519 key in a protobuf encoding other than libp2p's own
		// (fields reordered, repeated or padded). No host has this peer ID,
		// and accepting it would let many peer IDs alias one Identifier.
		return Identifier{}, fmt.Errorf("%w: peer ID %q is not the canonical peer ID of Ed25519 key %s", ErrInvalid, truncate(s), id.Short())
	}
	return id, nil
}

// isSHA256 reports whether p is a SHA2-256 multihash, the form libp2p gives
// the peer ID of every key it does not inline.
func isSHA256(p peer.ID) bool {
	d, err := mh.Decode([]byte(p))
	return err == nil && d.Code == mh.SHA2_256 && d.Length == 32
}

// FromPublicKey returns the Identifier of an Ed25519 public key; any other key
// type is an error wrapping ErrNotEd25519.
func FromPublicKey(k crypto.PubKey) (Identifier, error) {
	if k == nil || k.Type() != crypto.Ed25519 {
		return Identifier{}, fmt.Errorf("%w: key type %s", ErrNotEd25519, keyType(k))
	}
	raw, err := k.Raw()
	if err != nil {
		return Identifier{}, fmt.Errorf("identity: raw public key: %w", err)
	}
	return FromBytes(raw)
}

// MarshalText implements encoding.TextMarshaler with the String form, so
// Identifiers work in JSON, YAML and flags.
func (id Identifier) MarshalText() ([]byte, error) {
	b := make([]byte, 2*Size)
	hex.Encode(b, id[:])
	return b, nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts what Parse accepts.
func (id *Identifier) UnmarshalText(text []byte) error {
	parsed, err := Parse(string(text))
	if err != nil {
		return err
	}
	*id = parsed
	return nil
}

func keyType(k crypto.PubKey) string {
	if k == nil {
		return "<nil>"
	}
	return k.Type().String()
}

// truncate shortens s for error messages so hostile input cannot flood logs.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
