package identity_test

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

func FuzzParse(f *testing.F) {
	valid := "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210"
	for _, s := range []string{
		valid,
		strings.ToUpper(valid),
		strings.ToUpper(valid[:32]) + valid[32:],
		"",
		valid[:63],
		valid + "0",
		strings.Repeat("zz", identity.Size),
		strings.Repeat("é", identity.Size),
		"0x" + valid[:62],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := identity.Parse(s)
		if err != nil {
			require.ErrorIs(t, err, identity.ErrInvalid)
			require.True(t, id.IsZero())
			require.Panics(t, func() { identity.MustParse(s) })
			return
		}
		require.Equal(t, strings.ToLower(s), id.String())
		require.Equal(t, id, identity.MustParse(s))

		text, err := id.MarshalText()
		require.NoError(t, err)
		var back identity.Identifier
		require.NoError(t, back.UnmarshalText(text))
		require.Equal(t, id, back)
	})
}

func FuzzFromPeerID(f *testing.F) {
	// Deterministic seeds: a real Ed25519 peer ID, a secp256k1 one (inlined
	// key of another type), a SHA2-256 one (hashed key), and broken ones.
	edKey, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	require.NoError(f, err)
	edID, err := peer.IDFromPrivateKey(edKey)
	require.NoError(f, err)
	secpKey, err := crypto.UnmarshalSecp256k1PrivateKey([]byte("0123456789abcdef0123456789abcdef"))
	require.NoError(f, err)
	secpID, err := peer.IDFromPrivateKey(secpKey)
	require.NoError(f, err)
	hashed := append([]byte{0x12, 0x20}, make([]byte, 32)...)

	var max identity.Identifier
	for i := range max {
		max[i] = 0xff
	}
	for _, b := range [][]byte{
		[]byte(edID),
		[]byte(secpID),
		hashed,
		[]byte(identity.Identifier{}.PeerID()),
		[]byte(max.PeerID()),
		[]byte(edID)[:len(edID)-1],
		[]byte(edID.String()),
		{},
		{0x00},
		{0x00, 0x00},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := peer.ID(b)
		id, err := identity.FromPeerID(p)
		if err != nil {
			require.True(t, errors.Is(err, identity.ErrInvalid) || errors.Is(err, identity.ErrNotEd25519),
				"error wraps neither sentinel: %v", err)
			require.True(t, id.IsZero())
			return
		}
		// Injective: only the canonical peer ID of id maps to id.
		require.Equal(t, p, id.PeerID())
		back, err := identity.FromPeerID(id.PeerID())
		require.NoError(t, err)
		require.Equal(t, id, back)

		pk, err := p.ExtractPublicKey()
		require.NoError(t, err)
		require.True(t, p.MatchesPublicKey(pk))
	})
}
