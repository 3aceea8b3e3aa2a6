package resolver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

func TestLoadGood(t *testing.T) {
	a, b, c := newID(t), newID(t), newID(t)
	text := fmt.Sprintf("\ufeff# skipwire peers\n"+
		"\n"+
		"%s /ip4/10.0.0.1/tcp/4001 /ip4/10.0.0.1/udp/4001/quic-v1\n"+
		"   \t  \n"+
		"%s\t/dns4/node-b.example/tcp/4001/p2p/%s   # trailing comment\r\n"+
		"  # indented comment\n"+
		"%s /ip4/10.0.0.1/tcp/4001 /ip4/10.0.0.1/tcp/4002\n"+ // same id again: merged, duplicate dropped
		"%s /ip4/127.0.0.1/tcp/9000 #/ip4/127.0.0.1/tcp/9001\n",
		a, strings.ToUpper(b.String()), b.PeerID(), a, c)

	s := NewStatic()
	require.NoError(t, s.Load(strings.NewReader(text)))
	require.Equal(t, 3, s.Len())
	require.Equal(t, []ma.Multiaddr{
		mustAddr(t, "/ip4/10.0.0.1/tcp/4001"),
		mustAddr(t, "/ip4/10.0.0.1/udp/4001/quic-v1"),
		mustAddr(t, "/ip4/10.0.0.1/tcp/4002"),
	}, s.Addrs(a))
	// The /p2p component naming b itself is stripped.
	require.Equal(t, []ma.Multiaddr{mustAddr(t, "/dns4/node-b.example/tcp/4001")}, s.Addrs(b))
	require.Equal(t, []ma.Multiaddr{mustAddr(t, "/ip4/127.0.0.1/tcp/9000")}, s.Addrs(c))

	// Load adds to what the table holds.
	d := newID(t)
	require.NoError(t, s.Load(strings.NewReader(d.String()+" /ip4/10.0.0.4/tcp/1\n")))
	require.Equal(t, 4, s.Len())
	require.NoError(t, s.Load(strings.NewReader("")))
	require.Equal(t, 4, s.Len())
}

func TestLoadBadLines(t *testing.T) {
	id, other := newID(t), newID(t)
	good := id.String() + " /ip4/10.0.0.1/tcp/4001\n"
	for _, tc := range []struct {
		name   string
		line   string
		want   string // in the error
		target error  // matched by errors.Is, if set
	}{
		{"short identifier", "abcd /ip4/10.0.0.1/tcp/1", "bad identifier", identity.ErrInvalid},
		{"non-hex identifier", strings.Repeat("zz", 32) + " /ip4/10.0.0.1/tcp/1", "bad identifier", identity.ErrInvalid},
		{"peer ID instead of identifier", id.PeerID().String() + " /ip4/10.0.0.1/tcp/1", "bad identifier", identity.ErrInvalid},
		{"missing address", id.String(), "missing address", nil},
		{"missing address before comment", id.String() + " # /ip4/10.0.0.1/tcp/1", "missing address", nil},
		{"bad multiaddr", id.String() + " /ip4/10.0.0.300/tcp/1", "bad multiaddr", nil},
		{"not a multiaddr", id.String() + " 10.0.0.1:4001", "bad multiaddr", nil},
		{"second multiaddr bad", id.String() + " /ip4/10.0.0.1/tcp/1 /tcp", "bad multiaddr", nil},
		{"p2p of another peer", id.String() + " /ip4/10.0.0.1/tcp/1/p2p/" + other.PeerID().String(), "names peer", ErrPeerMismatch},
		{"p2p only", id.String() + " /p2p/" + id.PeerID().String(), "no transport address", nil},
		{"line too long", id.String() + " /ip4/10.0.0.1/tcp/1" + strings.Repeat(" ", maxLineLen), "longer than", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStatic()
			// Two good lines and a comment first: the bad line is line 4.
			err := s.Load(strings.NewReader(good + "# comment\n" + good + tc.line + "\n" + good))
			require.Error(t, err)
			var le *LineError
			require.ErrorAs(t, err, &le)
			require.Equal(t, 4, le.Line)
			require.ErrorContains(t, err, "line 4: ")
			require.ErrorContains(t, err, tc.want)
			if tc.target != nil {
				require.ErrorIs(t, err, tc.target)
			}
			require.Zero(t, s.Len(), "a bad table must add nothing")
		})
	}
}

func TestLoadReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	s := NewStatic()
	r := iotest.TimeoutReader(strings.NewReader(newID(t).String() + " /ip4/10.0.0.1/tcp/1\n"))
	err := s.Load(errReader{r: r, err: boom})
	require.ErrorIs(t, err, boom)
	require.Zero(t, s.Len())
}

// errReader reads r, then fails with err instead of io.EOF.
type errReader struct {
	r   interface{ Read([]byte) (int, error) }
	err error
}

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		return n, e.err
	}
	return n, nil
}

func TestLoadStaticFile(t *testing.T) {
	dir := t.TempDir()
	id := newID(t)

	path := filepath.Join(dir, "peers.txt")
	require.NoError(t, os.WriteFile(path, []byte(id.String()+" /ip4/10.0.0.1/tcp/4001\n"), 0o600))
	s, err := LoadStaticFile(path)
	require.NoError(t, err)
	require.Equal(t, 1, s.Len())

	_, err = LoadStaticFile(filepath.Join(dir, "absent.txt"))
	require.ErrorIs(t, err, fs.ErrNotExist)

	bad := filepath.Join(dir, "bad.txt")
	require.NoError(t, os.WriteFile(bad, []byte("# ok\nnot-an-identifier /ip4/10.0.0.1/tcp/4001\n"), 0o600))
	_, err = LoadStaticFile(bad)
	require.ErrorContains(t, err, bad)
	require.ErrorContains(t, err, "line 2: bad identifier")
	require.ErrorIs(t, err, identity.ErrInvalid)
}

func FuzzLoad(f *testing.F) {
	id := identity.MustParse(strings.Repeat("ab", 32))
	f.Add(id.String() + " /ip4/10.0.0.1/tcp/4001\n# c\n\n")
	f.Add(id.String() + " /ip4/10.0.0.1/tcp/4001/p2p/" + id.PeerID().String())
	f.Add(id.String() + " /p2p/" + id.PeerID().String())
	f.Add(id.String() + " /dns/x/tcp/1 # /ip4/1.2.3.4/tcp/1")
	f.Add("\ufeff" + id.String() + "\t/ip6/::1/udp/1/quic-v1\r\n")
	f.Fuzz(func(t *testing.T, text string) {
		s := NewStatic()
		err := s.Load(strings.NewReader(text))
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			if s.Len() != 0 {
				t.Fatalf("failed Load added %d entries", s.Len())
			}
			return
		}
		for _, line := range strings.Split(text, "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			id, err := identity.Parse(strings.TrimPrefix(fields[0], "\ufeff"))
			if err != nil {
				continue // a line that starts with a BOM after the first
			}
			addrs := s.Addrs(id)
			if len(addrs) == 0 {
				t.Fatalf("no address for %s", id)
			}
			for _, a := range addrs {
				if _, p := peer.SplitAddr(a); p != "" {
					t.Fatalf("address %s kept its /p2p part", a)
				}
			}
		}
	})
}
