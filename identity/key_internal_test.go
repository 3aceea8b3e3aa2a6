package identity

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWriteNewNeverReplaces pins the property LoadOrCreateKey's concurrent
// creators rely on: writeNew fails with fs.ErrExist instead of replacing a key
// that is already there, and cleans up its temporary file either way.
func TestWriteNewNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "host.key")

	require.NoError(t, writeNew(path, []byte("first")))
	err := writeNew(path, []byte("second"))
	require.ErrorIs(t, err, fs.ErrExist)

	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "first", string(got))
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), info.Mode().Perm())

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the key file remains: %v", entries)
}
