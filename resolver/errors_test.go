package resolver

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
)

// TestErrorsRead: a resolver's error names the Identifier once and each
// resolver by its name, on one line, without saying "resolve" twice.
func TestErrorsRead(t *testing.T) {
	id := newID(t)
	h := testkit.NewHost(t, nil, "")
	ps := NewPeerstore(h.Peerstore())
	for _, tc := range []struct {
		name string
		r    AddressResolver
		want string
	}{
		{"static", NewStatic(), "resolve " + id.Short() + ": static: no address found"},
		{"peerstore", ps, "resolve " + id.Short() + ": peerstore: no address found"},
		{"chain", NewChain(NewStatic(), ps), "resolve " + id.Short() + ": chain: static: no address found; peerstore: no address found"},
		{"cache of chain", NewCache(NewChain(NewStatic(), ps), time.Minute, time.Minute), "resolve " + id.Short() + ": chain: static: no address found; peerstore: no address found"},
		{"empty chain", NewChain(), "resolve " + id.Short() + ": chain: no member: no address found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.r.Resolve(context.Background(), id)
			require.ErrorIs(t, err, ErrNotFound)
			require.Equal(t, tc.want, err.Error())
			var re *Error
			require.ErrorAs(t, err, &re)
			require.Equal(t, id, re.ID)
		})
	}
}
