package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tinyArgs make a run take a few seconds: one round, small samples, 10 idle
// connections.
var tinyArgs = []string{"-quick", "-rounds", "1", "-idle-rounds", "1", "-small", "400", "-volume", "2097152", "-rtts", "50", "-connects", "2", "-conns", "10"}

// TestJSON runs the program with tiny samples and checks every figure the
// performance targets use is there and positive, with its per-round values.
func TestJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	require.NoError(t, run(ctx, append(tinyArgs, "-rounds", "2", "-idle-rounds", "2", "-json"), &out, &errOut), errOut.String())

	var got struct {
		Ratios map[string]struct {
			Value     float64   `json:"value"`
			SpreadPct *float64  `json:"spread_pct"`
			Rounds    []float64 `json:"rounds"`
			Target    string    `json:"target"`
			OK        *bool     `json:"ok"`
		} `json:"ratios"`
		CachedNs float64                   `json:"connect_cached_ns"`
		Results  map[string]map[string]any `json:"results"`
		FanIn    map[string]any            `json:"fan_in"`
		Quick    []string                  `json:"quick_untrusted"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &got), out.String())
	for _, c := range comparisons {
		q, ok := got.Ratios[c.key]
		if c.den == "libp2p_bare" { // not measured with -quick
			require.False(t, ok, c.key)
			continue
		}
		require.True(t, ok, "ratio %s missing in %s", c.key, out.String())
		if c.diff {
			continue
		}
		require.Positive(t, q.Value, c.key)
		require.Len(t, q.Rounds, 2, c.key)
		require.NotNil(t, q.SpreadPct, c.key)
		require.Equal(t, c.op != "", q.OK != nil, c.key)
	}
	require.Positive(t, got.CachedNs)
	for _, c := range []string{"skipwire", "skipwire_noack", "network", "libp2p", "libp2p_combining", "tcp"} {
		f, ok := got.Results[c]
		require.True(t, ok, "results.%s", c)
		for _, key := range []string{"small_8senders_msgs_per_sec", "rtt_p50_us"} {
			v, ok := f[key].(float64)
			require.True(t, ok, "results.%s.%s missing", c, key)
			require.Positive(t, v, "results.%s.%s", c, key)
		}
	}
	for _, key := range []string{"msgs_per_sec", "delay_p99_us"} {
		v, ok := got.FanIn[key].(float64)
		require.True(t, ok, "fan_in.%s missing", key)
		require.Positive(t, v, "fan_in.%s", key)
	}
}

// TestTable checks the table names every contender and every target.
func TestTable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	require.NoError(t, run(ctx, tinyArgs, &out, &errOut), errOut.String())
	want := []string{"Connect, already connected", "fan-in through network", "Not to be trusted to 10%"}
	for _, c := range columns {
		want = append(want, c.label)
	}
	for _, w := range want {
		require.Contains(t, out.String(), w)
	}
	// Every ratio has its row, with its target if it has one.
	for _, c := range comparisons {
		if c.den == "libp2p_bare" { // not measured with -quick
			continue
		}
		i := strings.Index(out.String(), c.name)
		require.GreaterOrEqual(t, i, 0, "%q not in\n%s", c.name, out.String())
		line, _, _ := strings.Cut(out.String()[i:], "\n")
		if c.op != "" {
			require.Contains(t, line, c.targetText())
		}
	}
}

func TestFlags(t *testing.T) {
	var errOut bytes.Buffer
	require.Error(t, run(context.Background(), []string{"-security", "quic"}, &bytes.Buffer{}, &errOut))
	require.Error(t, run(context.Background(), []string{"-conns", "0"}, &bytes.Buffer{}, &errOut))
	require.Error(t, run(context.Background(), []string{"extra"}, &bytes.Buffer{}, &errOut))
}
