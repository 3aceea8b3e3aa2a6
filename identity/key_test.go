package identity_test

import (
	"crypto/ed25519"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

// requireEntries fails unless dir holds exactly the named entries: in
// particular no temporary ".key-*" file was left behind.
func requireEntries(t testing.TB, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	got := make([]string, 0, len(entries))
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if names == nil {
		names = []string{}
	}
	require.ElementsMatch(t, names, got)
	stray, err := filepath.Glob(filepath.Join(dir, ".key-*"))
	require.NoError(t, err)
	require.Empty(t, stray, "temporary files left behind")
}

// marshal returns k in libp2p's marshalled form.
func marshal(t testing.TB, k crypto.PrivKey) []byte {
	t.Helper()
	b, err := crypto.MarshalPrivateKey(k)
	require.NoError(t, err)
	return b
}

func TestGenerateKey(t *testing.T) {
	k1, err := identity.GenerateKey()
	require.NoError(t, err)
	k2, err := identity.GenerateKey()
	require.NoError(t, err)
	require.True(t, k1.Type() == crypto.Ed25519, "key type %s", k1.Type())
	require.False(t, crypto.KeyEqual(k1, k2), "two generated keys are equal")

	id1, err := identity.FromPrivateKey(k1)
	require.NoError(t, err)
	id2, err := identity.FromPrivateKey(k2)
	require.NoError(t, err)
	require.NotEqual(t, id1, id2)
	require.False(t, id1.IsZero())

	msg := []byte("hello")
	sig, err := k1.Sign(msg)
	require.NoError(t, err)
	pk, err := id1.PublicKey()
	require.NoError(t, err)
	ok, err := pk.Verify(msg, sig)
	require.NoError(t, err)
	require.True(t, ok, "the Identifier verifies the key's signatures")
}

func TestLoadOrCreateKeyCreatesThenLoads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "host.key")

	k1, err := identity.LoadOrCreateKey(path)
	require.NoError(t, err)
	require.True(t, k1.Type() == crypto.Ed25519, "key type %s", k1.Type())

	info, err := os.Stat(path)
	require.NoError(t, err)
	require.True(t, info.Mode().IsRegular())
	require.Equal(t, fs.FileMode(0o600), info.Mode().Perm())
	stored, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, marshal(t, k1), stored, "the file holds the returned key")
	requireEntries(t, dir, "host.key")

	k2, err := identity.LoadOrCreateKey(path)
	require.NoError(t, err)
	require.True(t, crypto.KeyEqual(k1, k2))
	id1, err := identity.FromPrivateKey(k1)
	require.NoError(t, err)
	id2, err := identity.FromPrivateKey(k2)
	require.NoError(t, err)
	require.Equal(t, id1, id2)

	again, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, stored, again, "loading does not rewrite the file")
	requireEntries(t, dir, "host.key")
}

func TestLoadOrCreateKeyLoadsExisting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "host.key")
	want, err := identity.GenerateKey()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, marshal(t, want), 0o600))

	got, err := identity.LoadOrCreateKey(path)
	require.NoError(t, err)
	require.True(t, crypto.KeyEqual(want, got))
}

func TestLoadOrCreateKeyRejectsCorrupt(t *testing.T) {
	good, err := identity.GenerateKey()
	require.NoError(t, err)
	valid := marshal(t, good) // 08 01 12 40, then seed and public key
	require.Len(t, valid, 4+ed25519.PrivateKeySize)

	// Deterministic "random" bytes, so the case is the same on every run.
	noise := make([]byte, 68)
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = rng.Read(noise)

	flip := func(i int) []byte {
		b := append([]byte(nil), valid...)
		b[i] ^= 0x01
		return b
	}
	// The 96-byte form libp2p also reads, with a redundant public key that
	// does not match.
	redundant := append(append([]byte{0x08, 0x01, 0x12, 0x60}, valid[4:]...), make([]byte, 32)...)

	tests := []struct {
		name string
		data []byte
	}{
		{"random bytes", noise},
		{"empty", []byte{}},
		{"one byte", []byte{0x08}},
		{"text", []byte("this is not a key\n")},
		{"header only", valid[:4]},
		{"type only", valid[:2]},
		{"truncated by one", valid[:len(valid)-1]},
		{"truncated to half", valid[:len(valid)/2]},
		{"trailing garbage", append(append([]byte(nil), valid...), 0xff)},
		{"mismatched redundant public key", redundant},
		// Bytes 4..35 are the seed, 36..67 the public key derived from it. A
		// flipped public key bit would name an Identifier this key cannot
		// sign for.
		{"public key bit flipped", flip(len(valid) - 1)},
		{"seed bit flipped", flip(4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "host.key")
			require.NoError(t, os.WriteFile(path, tt.data, 0o600))

			k, err := identity.LoadOrCreateKey(path)
			require.Error(t, err)
			require.Nil(t, k)
			require.NotErrorIs(t, err, identity.ErrNotEd25519)

			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, tt.data, after, "a corrupt key file must be left untouched")
			requireEntries(t, dir, "host.key")
		})
	}
}

func TestLoadOrCreateKeyRejectsOtherKeyTypes(t *testing.T) {
	for name, k := range otherKeys(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "host.key")
			data := marshal(t, k)
			require.NoError(t, os.WriteFile(path, data, 0o600))

			got, err := identity.LoadOrCreateKey(path)
			require.ErrorIs(t, err, identity.ErrNotEd25519)
			require.Nil(t, got)

			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, data, after)
			requireEntries(t, dir, "host.key")
		})
	}
}

func TestLoadOrCreateKeyBadPaths(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "missing", "host.key")
		k, err := identity.LoadOrCreateKey(path)
		require.Error(t, err)
		require.ErrorIs(t, err, fs.ErrNotExist)
		require.Nil(t, k)
		requireEntries(t, dir) // the directory is not created
	})
	t.Run("directory at path", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "host.key")
		require.NoError(t, os.Mkdir(path, 0o700))
		k, err := identity.LoadOrCreateKey(path)
		require.Error(t, err)
		require.Nil(t, k)
		info, err := os.Stat(path)
		require.NoError(t, err)
		require.True(t, info.IsDir())
		requireEntries(t, path)
		requireEntries(t, dir, "host.key")
	})
	t.Run("dangling symlink", func(t *testing.T) {
		// Reading follows the link and finds nothing, but the link itself
		// exists, so the key can never be created at path: this must be an
		// error, not an endless retry.
		dir := t.TempDir()
		path := filepath.Join(dir, "host.key")
		require.NoError(t, os.Symlink(filepath.Join(dir, "nowhere"), path))

		type result struct {
			k   crypto.PrivKey
			err error
		}
		done := make(chan result, 1)
		go func() {
			k, err := identity.LoadOrCreateKey(path)
			done <- result{k, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("LoadOrCreateKey did not return for a dangling symlink")
		}
		require.Error(t, r.err)
		require.Nil(t, r.k)
		info, err := os.Lstat(path)
		require.NoError(t, err)
		require.True(t, info.Mode()&fs.ModeSymlink != 0, "the link is left as it was")
		requireEntries(t, dir, "host.key")
	})
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	const goroutines = 16
	for round := range 5 {
		dir := t.TempDir()
		path := filepath.Join(dir, "host.key")

		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			keys  [goroutines]crypto.PrivKey
			errs  [goroutines]error
		)
		for i := range goroutines {
			wg.Go(func() {
				<-start
				keys[i], errs[i] = identity.LoadOrCreateKey(path)
			})
		}
		close(start)
		wg.Wait()

		for i := range goroutines {
			require.NoError(t, errs[i], "round %d goroutine %d", round, i)
			require.True(t, crypto.KeyEqual(keys[0], keys[i]), "round %d goroutine %d got another key", round, i)
		}
		stored, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, marshal(t, keys[0]), stored)
		info, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o600), info.Mode().Perm())
		requireEntries(t, dir, "host.key")
	}
}
