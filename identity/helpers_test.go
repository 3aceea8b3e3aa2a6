package identity_test

import (
	"crypto/rand"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

// randomID returns an Identifier drawn from crypto/rand.
func randomID(t testing.TB) identity.Identifier {
	t.Helper()
	var id identity.Identifier
	_, err := rand.Read(id[:])
	require.NoError(t, err)
	return id
}

// rsaKey is generated once per test binary: 2048-bit RSA generation is slow.
var rsaKey = sync.OnceValues(func() (crypto.PrivKey, error) {
	k, _, err := crypto.GenerateKeyPair(crypto.RSA, 2048)
	return k, err
})

// otherKeys returns one private key of every libp2p key type that is not
// Ed25519, by name.
func otherKeys(t testing.TB) map[string]crypto.PrivKey {
	t.Helper()
	rsa, err := rsaKey()
	require.NoError(t, err)
	ecdsa, _, err := crypto.GenerateECDSAKeyPair(rand.Reader)
	require.NoError(t, err)
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	require.NoError(t, err)
	return map[string]crypto.PrivKey{"RSA": rsa, "ECDSA": ecdsa, "secp256k1": secp}
}
