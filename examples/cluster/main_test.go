package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func runDemo(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, nil, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestDemo runs the demo as make demo-cluster does, with its default 8 nodes.
func TestDemo(t *testing.T) {
	start := time.Now()
	code, out, errOut := runDemo(t)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Empty(t, errOut)
	for _, want := range []string{
		"[1/6] starting 8 nodes",
		"[5/6] killing node 4",
		"7/7 peers saw the connection end",
		"p2pconn.ErrConnectionLost",
		"Identifier", // unchanged after the restart
		"libp2p connections per peer pair   1 (28 pairs",
		"skipwire connections per node      7 ",
		"sent 2800, delivered 2800, lost 0",
		"PASS: 2800 messages, 0 lost; 1 connection per peer pair",
	} {
		require.Contains(t, out, want)
	}
	require.Regexp(t, `round-trip latency\s+p50 [0-9.]+ ms, p99 [0-9.]+ ms`, out)
	require.Regexp(t, `DHT lookup latency\s+(p50 [0-9.]+ ms, p99 [0-9.]+ ms|none)`, out)
	require.NotContains(t, out, "FAIL")
	require.Less(t, time.Since(start), 30*time.Second)
}

// TestDemoSmall kills the DHT's bootstrap node, node 0: it rejoins through
// the others.
func TestDemoSmall(t *testing.T) {
	code, out, errOut := runDemo(t, "-n", "3", "-m", "3", "-s", "1000", "-kill", "0", "-p", "1")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Contains(t, out, "[5/6] killing node 0")
	require.Contains(t, out, "2/2 peers saw the connection end")
	// 6 directions x 3 round trips, then 4 x 3 with node 0: 30 requests and 30 echoes.
	require.Contains(t, out, "sent 60, delivered 60, lost 0")
	require.Contains(t, out, "(30 requests of 1000 B)")
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "1"}, "cluster: -n 1: need at least 2 nodes"},
		{[]string{"-m", "0"}, "cluster: -m 0: need at least 1 message"},
		{[]string{"-s", "3"}, "cluster: -s 3: size must be between"},
		{[]string{"-n", "4", "-kill", "4"}, "cluster: -kill 4: no such node (nodes are 0 to 3)"},
		{[]string{"-p", "0"}, "cluster: -p 0: need at least 1"},
		{[]string{"extra"}, `cluster: unexpected argument "extra"`},
		{[]string{"-log", "loud"}, `cluster: -log "loud"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runDemo(t, tc.args...)
			require.Equal(t, 2, code)
			require.Empty(t, out)
			require.Contains(t, errOut, tc.want)
			require.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
		})
	}

	code, _, errOut := runDemo(t, "-h")
	require.Equal(t, 0, code)
	require.Contains(t, errOut, "Usage: cluster [flags]")
}
