package identity_test

import (
	"bytes"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

var (
	_ encoding.TextMarshaler   = identity.Identifier{}
	_ encoding.TextUnmarshaler = (*identity.Identifier)(nil)
	_ fmt.Stringer             = identity.Identifier{}
)

// ed25519PeerIDPrefix is the documented start of every Ed25519 peer ID
// (ARCHITECTURE.md, "Identity").
var ed25519PeerIDPrefix = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

func filled(b byte) identity.Identifier {
	var id identity.Identifier
	for i := range id {
		id[i] = b
	}
	return id
}

func TestStringParseRoundTrip(t *testing.T) {
	ids := []identity.Identifier{{}, filled(0xff), filled(0x0f), filled(0xf0)}
	for range 200 {
		ids = append(ids, randomID(t))
	}
	for _, id := range ids {
		s := id.String()
		require.Len(t, s, 2*identity.Size)
		require.Equal(t, hex.EncodeToString(id[:]), s)
		require.Equal(t, strings.ToLower(s), s, "String must be lowercase")
		require.Equal(t, s, fmt.Sprint(id), "fmt must use String")

		for name, text := range map[string]string{
			"lower": s,
			"upper": strings.ToUpper(s),
			"mixed": strings.ToUpper(s[:32]) + s[32:],
		} {
			got, err := identity.Parse(text)
			require.NoError(t, err, "%s %q", name, text)
			require.Equal(t, id, got, "%s %q", name, text)
			require.Equal(t, id, identity.MustParse(text))
		}
	}
}

func TestParseFixed(t *testing.T) {
	const s = "00112233445566778899AABBCCDDEEFF0123456789abcdefFEDCBA9876543210"
	id, err := identity.Parse(s)
	require.NoError(t, err)
	want := identity.Identifier{
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
		0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
	}
	require.Equal(t, want, id)
	require.Equal(t, strings.ToLower(s), id.String())
}

func TestParseErrors(t *testing.T) {
	valid := strings.Repeat("ab", identity.Size)
	tests := []struct {
		name  string
		input string
	}{
		{"empty", ""},
		{"one char", "a"},
		{"62 chars", valid[:62]},
		{"63 chars", valid[:63]},
		{"65 chars", valid + "a"},
		{"66 chars", valid + "ab"},
		{"128 chars", valid + valid},
		{"bad hex first", "g" + valid[1:]},
		{"bad hex last", valid[:63] + "z"},
		{"0x prefix", "0x" + valid[:62]},
		{"leading space", " " + valid[1:]},
		{"trailing newline", valid[:63] + "\n"},
		{"dash", valid[:31] + "-" + valid[32:]},
		{"non-ASCII of 64 bytes", strings.Repeat("é", identity.Size)},
		{"NUL bytes", strings.Repeat("\x00", 2*identity.Size)},
		{"huge", strings.Repeat("a", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := identity.Parse(tt.input)
			require.Error(t, err)
			require.ErrorIs(t, err, identity.ErrInvalid)
			require.NotErrorIs(t, err, identity.ErrNotEd25519)
			require.True(t, id.IsZero(), "a failed Parse returns the zero Identifier")
			// Input is cut to 80 bytes, which %q may expand at most fourfold.
			require.Less(t, len(err.Error()), 500, "error message must not echo long input")

			var target identity.Identifier
			err = target.UnmarshalText([]byte(tt.input))
			require.ErrorIs(t, err, identity.ErrInvalid)

			require.Panics(t, func() { identity.MustParse(tt.input) })
		})
	}
}

func TestMustParsePanicValue(t *testing.T) {
	defer func() {
		r := recover()
		err, ok := r.(error)
		require.True(t, ok, "MustParse panics with an error, got %T", r)
		require.ErrorIs(t, err, identity.ErrInvalid)
	}()
	identity.MustParse("not an identifier")
	t.Fatal("MustParse returned on bad input")
}

func TestFromBytes(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 33, 64} {
		t.Run(fmt.Sprintf("len %d", n), func(t *testing.T) {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i + 1)
			}
			id, err := identity.FromBytes(b)
			if n != identity.Size {
				require.ErrorIs(t, err, identity.ErrInvalid)
				require.True(t, id.IsZero())
				return
			}
			require.NoError(t, err)
			require.Equal(t, b, id[:])
			b[0] = 0xee // the Identifier is a copy, not a view
			require.Equal(t, byte(1), id[0])
		})
	}
	t.Run("nil", func(t *testing.T) {
		_, err := identity.FromBytes(nil)
		require.ErrorIs(t, err, identity.ErrInvalid)
	})
}

func TestCompare(t *testing.T) {
	withFirstLast := func(first, last byte) identity.Identifier {
		var id identity.Identifier
		id[0], id[identity.Size-1] = first, last
		return id
	}
	tests := []struct {
		name string
		a, b identity.Identifier
		want int
	}{
		{"zero equal", identity.Identifier{}, identity.Identifier{}, 0},
		{"max equal", filled(0xff), filled(0xff), 0},
		{"zero below max", identity.Identifier{}, filled(0xff), -1},
		{"max above zero", filled(0xff), identity.Identifier{}, +1},
		{"last byte decides", withFirstLast(0, 1), withFirstLast(0, 2), -1},
		{"first byte dominates last", withFirstLast(1, 0xff), withFirstLast(2, 0), -1},
		{"first byte dominates rest", withFirstLast(2, 0), filled(0x01), +1},
		{"unsigned bytes", withFirstLast(0x80, 0), withFirstLast(0x7f, 0xff), +1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.a.Compare(tt.b))
			require.Equal(t, -tt.want, tt.b.Compare(tt.a))
			require.Equal(t, bytes.Compare(tt.a[:], tt.b[:]), tt.a.Compare(tt.b))
		})
	}
	t.Run("random agrees with bytes.Compare", func(t *testing.T) {
		for range 500 {
			a, b := randomID(t), randomID(t)
			if a[0] == b[0] { // also exercise equal leading bytes
				b[1] = a[1]
			}
			got := a.Compare(b)
			require.Equal(t, bytes.Compare(a[:], b[:]), got)
			require.Equal(t, -got, b.Compare(a))
			require.Equal(t, 0, a.Compare(a))
		}
	})
}

func TestIsZero(t *testing.T) {
	require.True(t, identity.Identifier{}.IsZero())
	for i := range identity.Size {
		var id identity.Identifier
		id[i] = 1
		require.False(t, id.IsZero(), "byte %d set", i)
	}
}

func TestShort(t *testing.T) {
	require.Equal(t, "00112233", identity.MustParse("00112233"+strings.Repeat("f", 56)).Short())
	for range 50 {
		id := randomID(t)
		require.Len(t, id.Short(), 8)
		require.Equal(t, id.String()[:8], id.Short())
	}
}

func TestPeerIDRandomIdentifiers(t *testing.T) {
	seen := make(map[peer.ID]identity.Identifier)
	ids := []identity.Identifier{{}, filled(0xff)}
	for range 200 {
		ids = append(ids, randomID(t))
	}
	for _, id := range ids {
		p := id.PeerID()
		require.NoError(t, p.Validate())
		require.Equal(t, append(append([]byte{}, ed25519PeerIDPrefix...), id[:]...), []byte(p))
		require.True(t, strings.HasPrefix(p.String(), "12D3KooW"), "Ed25519 peer IDs print as 12D3KooW...: %s", p)

		decoded, err := peer.Decode(p.String())
		require.NoError(t, err)
		require.Equal(t, p, decoded)

		pk, err := p.ExtractPublicKey()
		require.NoError(t, err)
		require.True(t, pk.Type() == crypto.Ed25519, "key type %s", pk.Type())
		raw, err := pk.Raw()
		require.NoError(t, err)
		require.Equal(t, id[:], raw)

		back, err := identity.FromPeerID(p)
		require.NoError(t, err)
		require.Equal(t, id, back)

		if prev, ok := seen[p]; ok {
			require.Equal(t, prev, id, "two Identifiers map to peer ID %s", p)
		}
		seen[p] = id
	}
}

func TestPeerIDRealKeys(t *testing.T) {
	for range 20 {
		priv, err := identity.GenerateKey()
		require.NoError(t, err)
		pub := priv.GetPublic()

		want, err := peer.IDFromPublicKey(pub)
		require.NoError(t, err)
		fromPriv, err := peer.IDFromPrivateKey(priv)
		require.NoError(t, err)
		require.Equal(t, want, fromPriv)

		id, err := identity.FromPublicKey(pub)
		require.NoError(t, err)
		raw, err := pub.Raw()
		require.NoError(t, err)
		require.Equal(t, raw, id[:])

		idFromPriv, err := identity.FromPrivateKey(priv)
		require.NoError(t, err)
		require.Equal(t, id, idFromPriv)

		got, err := identity.FromPeerID(want)
		require.NoError(t, err)
		require.Equal(t, id, got)
		require.Equal(t, []byte(want), []byte(id.PeerID()), "byte-identical to libp2p's peer ID")
		require.True(t, want.MatchesPublicKey(pub))
		require.True(t, id.PeerID().MatchesPrivateKey(priv))
	}
}

func TestPublicKeyRoundTrip(t *testing.T) {
	for range 50 {
		id := randomID(t)
		pk, err := id.PublicKey()
		require.NoError(t, err)
		require.True(t, pk.Type() == crypto.Ed25519, "key type %s", pk.Type())
		raw, err := pk.Raw()
		require.NoError(t, err)
		require.Equal(t, id[:], raw)

		back, err := identity.FromPublicKey(pk)
		require.NoError(t, err)
		require.Equal(t, id, back)

		p, err := peer.IDFromPublicKey(pk)
		require.NoError(t, err)
		require.Equal(t, p, id.PeerID())
	}
	t.Run("real key", func(t *testing.T) {
		priv, err := identity.GenerateKey()
		require.NoError(t, err)
		id, err := identity.FromPrivateKey(priv)
		require.NoError(t, err)
		pk, err := id.PublicKey()
		require.NoError(t, err)
		require.True(t, crypto.KeyEqual(priv.GetPublic(), pk))

		msg := []byte("skipwire")
		sig, err := priv.Sign(msg)
		require.NoError(t, err)
		ok, err := pk.Verify(msg, sig)
		require.NoError(t, err)
		require.True(t, ok)
	})
}

func TestFromPeerIDOtherKeyTypes(t *testing.T) {
	for name, priv := range otherKeys(t) {
		t.Run(name, func(t *testing.T) {
			p, err := peer.IDFromPrivateKey(priv)
			require.NoError(t, err)
			require.NoError(t, p.Validate())

			id, err := identity.FromPeerID(p)
			require.ErrorIs(t, err, identity.ErrNotEd25519)
			require.NotErrorIs(t, err, identity.ErrInvalid)
			require.True(t, id.IsZero())

			_, err = identity.FromPublicKey(priv.GetPublic())
			require.ErrorIs(t, err, identity.ErrNotEd25519)
			_, err = identity.FromPrivateKey(priv)
			require.ErrorIs(t, err, identity.ErrNotEd25519)
		})
	}
}

// identityPeerID wraps data in an identity multihash, as libp2p does for
// small public keys.
func identityPeerID(t testing.TB, data []byte) peer.ID {
	t.Helper()
	h, err := mh.Sum(data, mh.IDENTITY, -1)
	require.NoError(t, err)
	return peer.ID(h)
}

func TestFromPeerIDInvalid(t *testing.T) {
	id := randomID(t)
	canonical := []byte(id.PeerID())
	shortKey := append([]byte{0x08, 0x01, 0x12, 0x1f}, id[:31]...)
	tests := []struct {
		name string
		p    peer.ID
	}{
		{"empty", ""},
		{"one byte", "\x00"},
		{"garbage", "garbage"},
		{"base58 text instead of bytes", peer.ID(id.PeerID().String())},
		{"prefix and 31 bytes", peer.ID(canonical[:len(canonical)-1])},
		{"prefix and 33 bytes", peer.ID(append(append([]byte{}, canonical...), 0))},
		{"prefix only", peer.ID(ed25519PeerIDPrefix)},
		{"31-byte Ed25519 key", identityPeerID(t, shortKey)},
		{"identity multihash of garbage", identityPeerID(t, []byte("not a protobuf key"))},
		{"identity multihash of nothing", identityPeerID(t, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := identity.FromPeerID(tt.p)
			require.Error(t, err)
			require.ErrorIs(t, err, identity.ErrInvalid)
			require.NotErrorIs(t, err, identity.ErrNotEd25519)
			require.True(t, got.IsZero())
		})
	}
}

// TestFromPeerIDNonCanonical checks that FromPeerID is injective: peer IDs
// that libp2p decodes to an Ed25519 key but that are not the peer ID of that
// key (protobuf encodings other than the canonical one) are rejected instead
// of aliasing an Identifier. No host can have such a peer ID:
// peer.IDFromPublicKey never produces it and secure handshakes reject it.
func TestFromPeerIDNonCanonical(t *testing.T) {
	id := randomID(t)
	other := randomID(t)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	typ, data := []byte{0x08, 0x01}, []byte{0x12, 0x20}
	tests := []struct {
		name string
		key  []byte // protobuf PublicKey that decodes to the Ed25519 key id
	}{
		{"fields reordered", cat(data, id[:], typ)},
		{"type repeated", cat(typ, data, id[:], typ)},
		{"data repeated", cat(typ, data, other[:], data, id[:])},
		{"unknown field", cat(typ, data, id[:], []byte{0x18, 0x00})},
		{"non-minimal varint", cat([]byte{0x08, 0x81, 0x00}, data, id[:])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := identityPeerID(t, tt.key)
			// libp2p does read an Ed25519 key id out of p...
			pk, err := p.ExtractPublicKey()
			require.NoError(t, err)
			raw, err := pk.Raw()
			require.NoError(t, err)
			require.Equal(t, id[:], raw)
			// ...but p is not that key's peer ID.
			require.False(t, p.MatchesPublicKey(pk))
			require.NotEqual(t, id.PeerID(), p)

			got, err := identity.FromPeerID(p)
			require.ErrorIs(t, err, identity.ErrInvalid)
			require.True(t, got.IsZero())
		})
	}
}

func TestFromPublicKeyNil(t *testing.T) {
	id, err := identity.FromPublicKey(nil)
	require.ErrorIs(t, err, identity.ErrNotEd25519)
	require.True(t, id.IsZero())

	id, err = identity.FromPrivateKey(nil)
	require.ErrorIs(t, err, identity.ErrNotEd25519)
	require.True(t, id.IsZero())
}

func TestMarshalText(t *testing.T) {
	for range 50 {
		id := randomID(t)
		text, err := id.MarshalText()
		require.NoError(t, err)
		require.Equal(t, id.String(), string(text))

		var back identity.Identifier
		require.NoError(t, back.UnmarshalText(text))
		require.Equal(t, id, back)
		require.NoError(t, back.UnmarshalText(bytes.ToUpper(text)))
		require.Equal(t, id, back)
	}
	t.Run("failure leaves receiver unchanged", func(t *testing.T) {
		id := randomID(t)
		target := id
		require.ErrorIs(t, target.UnmarshalText([]byte("zz")), identity.ErrInvalid)
		require.Equal(t, id, target)
	})
}

type jsonDoc struct {
	ID    identity.Identifier         `json:"id"`
	Peers map[identity.Identifier]int `json:"peers"`
	Ptr   *identity.Identifier        `json:"ptr,omitempty"`
}

func TestJSONRoundTrip(t *testing.T) {
	a, b, c := randomID(t), randomID(t), randomID(t)
	doc := jsonDoc{ID: a, Peers: map[identity.Identifier]int{a: 1, b: 2}, Ptr: &c}

	out, err := json.Marshal(doc)
	require.NoError(t, err)
	require.Contains(t, string(out), `"id":"`+a.String()+`"`)
	require.Contains(t, string(out), `"`+b.String()+`":2`)
	require.Contains(t, string(out), `"ptr":"`+c.String()+`"`)

	var back jsonDoc
	require.NoError(t, json.Unmarshal(out, &back))
	require.Equal(t, doc, back)

	t.Run("uppercase accepted", func(t *testing.T) {
		var up jsonDoc
		in := `{"id":"` + strings.ToUpper(a.String()) + `","peers":{"` + strings.ToUpper(b.String()) + `":7}}`
		require.NoError(t, json.Unmarshal([]byte(in), &up))
		require.Equal(t, a, up.ID)
		require.Equal(t, map[identity.Identifier]int{b: 7}, up.Peers)
	})
	t.Run("slice", func(t *testing.T) {
		ids := []identity.Identifier{a, b, c}
		out, err := json.Marshal(ids)
		require.NoError(t, err)
		var back []identity.Identifier
		require.NoError(t, json.Unmarshal(out, &back))
		require.Equal(t, ids, back)
	})
}

func TestJSONErrors(t *testing.T) {
	valid := randomID(t).String()
	tests := []struct {
		name    string
		in      string
		invalid bool // the error must wrap ErrInvalid (it came from UnmarshalText)
	}{
		{"short hex", `{"id":"` + valid[:63] + `"}`, true},
		{"long hex", `{"id":"` + valid + `00"}`, true},
		{"not hex", `{"id":"` + strings.Repeat("zz", identity.Size) + `"}`, true},
		{"empty string", `{"id":""}`, true},
		{"number", `{"id":123}`, false},
		{"bool", `{"id":true}`, false},
		{"array of bytes", `{"id":[1,2,3]}`, false},
		{"object", `{"id":{}}`, false},
		{"bad map key", `{"peers":{"nothex":1}}`, true},
		{"short map key", `{"peers":{"` + valid[:10] + `":1}}`, true},
		{"bad pointer", `{"ptr":"abc"}`, true},
		{"truncated JSON", `{"id":"` + valid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc jsonDoc
			err := json.Unmarshal([]byte(tt.in), &doc)
			require.Error(t, err)
			if tt.invalid {
				require.True(t, errors.Is(err, identity.ErrInvalid), "%v", err)
			}
		})
	}
}
