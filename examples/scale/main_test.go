package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/examples/internal/cli/clitest"
	"github.com/skipwire/skipwire/internal/testkit"
)

func TestMain(m *testing.M) {
	// The program runs again as the peers' processes and the central nodes.
	testkit.ChildMain(peersRole, centralRole)
	goleak.VerifyTestMain(m)
}

// TestRun runs the program with 50 peers in 2 processes and checks that
// every connection was made and held, and that the figures are there: in
// the JSON, and in the table drawn from it.
func TestRun(t *testing.T) {
	const n, cold = 50, 3
	code, out, errOut := clitest.Run(t, run, 2*time.Minute, nil,
		"-n", "50", "-procs", "2", "-idle", "1s", "-cold", "3", "-messages", "2", "-json")
	require.Equal(t, cli.ExitOK, code, "stdout:\n%s\nstderr:\n%s", out, errOut)

	var r report
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	require.Empty(t, r.Failures)
	for _, name := range contenders {
		c := r.Results[name]
		require.NotNil(t, c, name)
		require.Equal(t, n, c.Connected, name)
		require.Zero(t, c.Failed, name)
		require.Zero(t, c.LeftAfterDrop, name)
		require.Positive(t, c.ConnectSeconds, name)
		require.Positive(t, c.PeerConnectP50, name)
		cr := c.Central
		require.Equal(t, n, cr.Conns, name)
		require.Equal(t, n, cr.AliveAfterIdle, name)
		require.Positive(t, cr.HeapPerConn, name)
		require.Positive(t, cr.BytesPerConn, name)
		require.GreaterOrEqual(t, cr.GoroutinesPerConn, 4.0, name) // yamux's three, and a reader
		require.NotEmpty(t, cr.Goroutines, name)
		require.Positive(t, cr.CachedP50Ns, name)
		require.GreaterOrEqual(t, cr.CachedP99Ns, cr.CachedP50Ns, name)
		require.Len(t, cr.ColdUs, cold, name)
		require.Positive(t, cr.ColdP50Us, name)
		require.GreaterOrEqual(t, cr.IdleSeconds, 1.0, name)
		require.Contains(t, cr.Negotiated, "/yamux/", name)
		require.NotEmpty(t, cr.Limits, name)
	}
	require.Positive(t, r.BytesRatio)
	require.Positive(t, r.ColdP50Ratio)

	// skipwire's one goroutine of its own per connection, its reader.
	readLoop := false
	for _, g := range r.Results[contenderSkipwire].Central.Goroutines {
		readLoop = readLoop || strings.Contains(g.Owner, "p2pconn.(*conn).readLoop")
	}
	require.True(t, readLoop, "%+v", r.Results[contenderSkipwire].Central.Goroutines)

	var table bytes.Buffer
	r.writeTable(&table)
	for _, want := range []string{
		"50 peers in 2 processes",
		"connections held                       count                    50           50",
		"idle connection                        bytes",
		"Connect, already connected, p50",
		"cold Connect, p50 (of 3)",
		"goroutines/conn over raw libp2p",
		"p2pconn.(*conn).readLoop",
	} {
		require.Contains(t, table.String(), want)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-transport", "udp"},
		{"-n", "-5"},
		{"-n", "2", "-procs", "3"},
		{"-cold", "-1"},
		{"extra"},
	} {
		code, _, errOut := clitest.Run(t, run, time.Second, nil, args...)
		require.Equal(t, cli.ExitUsage, code, "%v: %s", args, errOut)
	}
}
