package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/examples/skipgraph/testbed"
	"github.com/skipwire/skipwire/internal/testkit"
)

func TestMain(m *testing.M) {
	// -procs re-executes this binary as the nodes' processes.
	testkit.ChildMain(testbed.ChildRole)
	goleak.VerifyTestMain(m)
}

func runDemo(t *testing.T, timeout time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, nil, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestDemo runs the demo with 16 nodes (two crash, two leave, two join)
// and checks its report and its PASS line.
func TestDemo(t *testing.T) {
	code, out, errOut := runDemo(t, 3*time.Minute, "-n", "16", "-searches", "100", "-churn", "0.12")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Empty(t, errOut)
	for _, want := range []string{
		"[1/7] starting 16 nodes",
		"16/16 joined",
		"every table matches the sorted key list: 16 nodes",
		"[3/7] 100 searches from random nodes for random keys ... 100/100 correct",
		"killing 2 nodes at once",
		"2 nodes leave gracefully, at once",
		"2 new nodes join, one at a time",
		"[6/7] 100 searches after the repair ... 100/100 correct",
		"14 at the end: 16 joined one by one, then 2 crashed, 2 left, 2 joined during the churn",
		"searches before the churn        100/100 correct",
		"searches after the repair        100/100 correct",
		"libp2p connections per pair      1 (",
	} {
		require.Contains(t, out, want)
	}
	require.Regexp(t, `hops per search\s+mean [0-9.]+, max [0-9]+ \(log2 14 = 3\.8\)`, out)
	require.Regexp(t, `search latency\s+p50 [0-9.]+ ms, p99 [0-9.]+ ms`, out)
	require.Regexp(t, `messages\s+sent [0-9]+ \([0-9]+ search hops, [0-9]+ answers, [0-9]+ maintenance\), lost 0 between nodes still running`, out)
	require.Regexp(t, `departure noticed\s+crash: p50 [0-9.]+ m?s, max`, out)
	require.NotContains(t, out, "FAIL")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Equal(t, "PASS: 100/100 searches correct", lines[len(lines)-1])
}

// TestDemoProcesses runs the demo with 16 nodes, 4 of them in child
// processes of their own (this test binary run again), and checks its
// report and its PASS line: searches from and to those nodes, their
// crashes (SIGKILL) and leaves, and the ledger across processes.
func TestDemoProcesses(t *testing.T) {
	code, out, errOut := runDemo(t, 3*time.Minute, "-n", "16", "-procs", "4", "-searches", "100", "-churn", "0.12")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Empty(t, errOut)
	for _, want := range []string{
		"[1/7] starting 16 nodes, 4 of them in child processes (one node each)",
		"16/16 joined",
		"every table matches the sorted key list: 16 nodes",
		"[3/7] 100 searches from random nodes for random keys ... 100/100 correct",
		"2 nodes leave gracefully, at once",
		"2 new nodes join, one at a time",
		"[6/7] 100 searches after the repair ... 100/100 correct",
		"searches after the repair        100/100 correct",
		"libp2p connections per pair      1 (",
	} {
		require.Contains(t, out, want)
	}
	require.Regexp(t, `killing 2 nodes at once \([0-2] of them in child processes, by SIGKILL\)`, out)
	require.Regexp(t, `processes\s+5 child processes, one node each, besides this one: 4 at the start, 1 joined during the churn; [0-2] of the 2 crashes by SIGKILL`, out)
	require.Regexp(t, `messages\s+sent [0-9]+ \([0-9]+ search hops, [0-9]+ answers, [0-9]+ maintenance\), lost 0 between nodes still running`, out)
	require.NotContains(t, out, "FAIL")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Equal(t, "PASS: 100/100 searches correct", lines[len(lines)-1])
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "3"}, "skipgraph: -n 3: need at least 4 nodes"},
		{[]string{"-procs", "-1"}, "skipgraph: -procs -1: must not be negative"},
		{[]string{"-n", "8", "-procs", "8"}, "skipgraph: -procs 8: must be less than -n 8 (node 0, the introducer, runs in this process)"},
		{[]string{"-searches", "0"}, "skipgraph: -searches 0: need at least 1"},
		{[]string{"-churn", "0.5"}, "skipgraph: -churn 0.5: must be between 0 and 0.3"},
		{[]string{"-searchers", "-1"}, "skipgraph: -searchers -1: must not be negative"},
		{[]string{"-p", "0"}, "skipgraph: -p 0: need at least 1"},
		{[]string{"extra"}, `skipgraph: unexpected argument "extra"`},
		{[]string{"-log", "loud"}, `skipgraph: -log "loud"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runDemo(t, 10*time.Second, tc.args...)
			require.Equal(t, 2, code)
			require.Empty(t, out)
			require.Contains(t, errOut, tc.want)
			require.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
		})
	}

	code, _, errOut := runDemo(t, 10*time.Second, "-h")
	require.Equal(t, 0, code)
	require.Contains(t, errOut, "Usage: skipgraph [flags]")
}
