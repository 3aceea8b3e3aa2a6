package testbed

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
)

// TestNodeSpecCarriesConfig sets every field of an sg.Config that can cross
// to a child process, and checks that the spec carries each, through JSON,
// so that a field added to sg.Config and forgotten in nodeSpec fails here.
func TestNodeSpecCarriesConfig(t *testing.T) {
	var c sg.Config
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch {
		case name == "RoutingConnect" || name == "MaintenanceConnect" || name == "Observer":
			// Functions and interfaces: they do not cross.
		case f.CanInt():
			f.SetInt(int64(i + 1))
		case f.CanUint():
			f.SetUint(uint64(i + 1))
		default:
			t.Fatalf("sg.Config.%s (%s): carry it in nodeSpec, and set it here", name, f.Type())
		}
	}
	js, err := json.Marshal(specOf(c))
	require.NoError(t, err)
	var back nodeSpec
	require.NoError(t, json.Unmarshal(js, &back))
	require.Equal(t, c, back.config())
}
