package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// GenerateKey returns a new Ed25519 private key from crypto/rand. Its public key
// is the node's Identifier.
func GenerateKey() (crypto.PrivKey, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	return k, nil
}

// FromPrivateKey returns the Identifier of an Ed25519 private key; any other key
// type is an error wrapping ErrNotEd25519.
func FromPrivateKey(k crypto.PrivKey) (Identifier, error) {
	if k == nil {
		return Identifier{}, fmt.Errorf("%w: key type <nil>", ErrNotEd25519)
	}
	return FromPublicKey(k.GetPublic())
}

// LoadOrCreateKey reads the Ed25519 private key stored at path, in libp2p's
// marshalled form (crypto.MarshalPrivateKey). If no file exists there, it
// generates a key and writes it atomically (a temporary file in the same
// directory, then a rename) with mode 0600. A file that exists but does not
// hold an Ed25519 key is an error, and the file is left untouched.
func LoadOrCreateKey(path string) (crypto.PrivKey, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		return decodeKey(path, data)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("identity: read key %s: %w", path, err)
	}

	k, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	data, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("identity: marshal key: %w", err)
	}
	if err := writeNew(path, data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created the key first: use theirs. Read it
			// once, without retrying: a path that exists but reads as
			// missing (a dangling symlink) would otherwise loop forever.
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("identity: read key %s: %w", path, err)
			}
			return decodeKey(path, data)
		}
		return nil, fmt.Errorf("identity: write key %s: %w", path, err)
	}
	return k, nil
}

func decodeKey(path string, data []byte) (crypto.PrivKey, error) {
	k, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("identity: key file %s is corrupt: %w", path, err)
	}
	if k.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("identity: key file %s: %w: key type %s", path, ErrNotEd25519, k.Type())
	}
	if err := checkEd25519(k); err != nil {
		return nil, fmt.Errorf("identity: key file %s is corrupt: %w", path, err)
	}
	return k, nil
}

// checkEd25519 returns an error unless the public half of the Ed25519 private
// key k is the one its seed derives. libp2p's unmarshalling does not check
// this, and a mismatched key would claim an Identifier it cannot sign for.
func checkEd25519(k crypto.PrivKey) error {
	raw, err := k.Raw()
	if err != nil {
		return err
	}
	if len(raw) != ed25519.PrivateKeySize ||
		subtle.ConstantTimeCompare(raw, ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])) != 1 {
		return errors.New("public key does not match private key")
	}
	return nil
}

// writeNew writes data to path through a synced temporary file and a hard
// link, so readers never see a partial key and an existing file is never
// replaced (the link fails with fs.ErrExist instead).
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}
