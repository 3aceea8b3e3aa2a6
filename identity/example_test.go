package identity_test

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/identity"
)

func ExampleParse() {
	id, err := identity.Parse("7D1F0B3A9C4E5D6F708192A3B4C5D6E7F8091A2B3C4D5E6F7081920A1B2C3D4E")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(id.String())
	fmt.Println(id.Short())
	// Output:
	// 7d1f0b3a9c4e5d6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081920a1b2c3d4e
	// 7d1f0b3a
}

func ExampleIdentifier_PeerID() {
	id := identity.MustParse("7d1f0b3a9c4e5d6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081920a1b2c3d4e")
	p := id.PeerID()
	back, err := identity.FromPeerID(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p)
	fmt.Println(back == id)
	// Output:
	// 12D3KooWJEnaxqWL36VjGH4a4RH63MFP1WqyvJVUanDwarmUWBLZ
	// true
}

func ExampleFromPeerID() {
	// A fixed key, so the output is the same on every run; a node would use
	// identity.LoadOrCreateKey or identity.GenerateKey.
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	priv, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		fmt.Println(err)
		return
	}

	id, err := identity.FromPeerID(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p)
	fmt.Println(id)
	fmt.Println(id.PeerID() == p)
	// Output:
	// 12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB
	// 03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8
	// true
}

func ExampleLoadOrCreateKey() {
	dir, err := os.MkdirTemp("", "skipwire-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "host.key")

	first, err := identity.LoadOrCreateKey(path) // creates the key file
	if err != nil {
		fmt.Println(err)
		return
	}
	second, err := identity.LoadOrCreateKey(path) // reads it back
	if err != nil {
		fmt.Println(err)
		return
	}
	id1, _ := identity.FromPrivateKey(first)
	id2, _ := identity.FromPrivateKey(second)
	fmt.Println("same Identifier:", id1 == id2)

	info, err := os.Stat(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("mode:", info.Mode().Perm())
	// Output:
	// same Identifier: true
	// mode: -rw-------
}
