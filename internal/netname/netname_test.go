package netname_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/internal/netname"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheck(t *testing.T) {
	for _, name := range []string{"", "a", "prod", "test-1.eu_west", strings.Repeat("x", netname.MaxLen)} {
		require.NoError(t, netname.Check(name), "%q", name)
	}
	for _, tc := range []struct{ what, name, says string }{
		{"too long", strings.Repeat("x", netname.MaxLen+1), "is longer than 64 bytes"},
		{"slash", "a/b", `"a/b": '/' is not a letter`},
		{"space", "a b", `' ' is not a letter`},
		{"unicode", "caf\u00e9", `'é' is not a letter`},
		{"control", "a\x00", `'\x00' is not a letter`},
		{"invalid utf-8", "\xff", `'�' is not a letter`},
	} {
		t.Run(tc.what, func(t *testing.T) {
			require.ErrorContains(t, netname.Check(tc.name), tc.says)
		})
	}
}
