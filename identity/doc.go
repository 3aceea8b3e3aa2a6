// Package identity defines the Identifier that names a skipwire node and its
// one-to-one mapping to libp2p peer IDs and keys.
//
// A node's Identifier is the raw 32-byte Ed25519 public key of its libp2p host
// key. An Ed25519 libp2p peer ID embeds that key verbatim (an identity multihash),
// so the mapping is a pure function in both directions and no lookup table is
// ever needed:
//
//	id, _ := identity.FromPeerID(h.ID()) // the host's own Identifier
//	p := id.PeerID()                      // and back; p == h.ID()
//
// Because libp2p's secure handshakes (Noise, TLS) prove possession of the
// private key behind a peer ID, the remote Identifier of a libp2p connection is
// authenticated: nobody can claim an Identifier without its private key.
//
// An Identifier is byte-compatible with skipgraph-go's model.Identifier
// ([32]byte, big-endian, hex string form), so overlays convert between the two
// with a plain type conversion.
package identity
