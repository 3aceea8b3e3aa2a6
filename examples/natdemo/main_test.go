package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/internal/natlab"
	"github.com/skipwire/skipwire/internal/testkit"
)

func TestMain(m *testing.M) {
	// The demo's relays and nodes are this test binary again.
	testkit.ChildMain(natlab.Roles...)
	goleak.VerifyTestMain(m)
}

func runDemo(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestDemo runs the demo with one scenario (TestNATLab in package
// integration runs them all): hole punching over TCP through cone NATs.
// Without root, ip or nft the demo says SKIP and exits 0.
func TestDemo(t *testing.T) {
	code, out, errOut := runDemo(t, "-only", "cone-tcp")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	if reason := natlab.Unavailable(); reason != nil {
		require.Regexp(t, `^SKIP: .+\n$`, out)
		return
	}
	for _, want := range []string{
		"[1/1] cone-tcp: cone NAT, nodes on TCP only",
		"numbered messages: 200 sent, 200 echoed, 0 lost, 0 duplicated, 0 out of order",
		"hole punch 1: succeeded",
		"direct connection (tcp)",
		"skipwire connection at the end",
		"first message through the relay",
	} {
		require.Contains(t, out, want)
	}
	require.Regexp(t, `\nPASS: NAT lab \(cone-tcp\): 200 messages, 0 lost, 0 duplicated\n$`, out)
}

func TestDemoBadFlags(t *testing.T) {
	code, _, errOut := runDemo(t, "-only", "nope")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `no scenario "nope"`)
	code, _, _ = runDemo(t, "extra")
	require.Equal(t, 2, code)
}
