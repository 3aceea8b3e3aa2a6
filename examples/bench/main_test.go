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
var tinyArgs = []string{"-quick", "-rounds", "1", "-small", "400", "-volume", "2097152", "-rtts", "50", "-connects", "2", "-conns", "10"}

// TestJSON runs the program with tiny samples and checks every figure the
// performance targets use is there and positive.
func TestJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	require.NoError(t, run(ctx, append(tinyArgs, "-json"), &out, &errOut), errOut.String())

	var got map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &got), out.String())
	for _, key := range []string{
		"throughput_64k_ratio_vs_libp2p",
		"small_8senders_ratio_vs_tcp",
		"rtt_p50_ratio_vs_libp2p",
		"connect_cached_ns",
		"cold_connect_ratio_vs_libp2p",
		"idle_conn_bytes_ratio_vs_libp2p",
	} {
		v, ok := got[key].(float64)
		require.True(t, ok, "key %s missing or not a number in %s", key, out.String())
		require.Positive(t, v, key)
	}
	results, ok := got["results"].(map[string]any)
	require.True(t, ok)
	for _, c := range []string{"skipwire", "libp2p", "tcp"} {
		f, ok := results[c].(map[string]any)
		require.True(t, ok, "results.%s", c)
		for _, key := range []string{"small_8senders_msgs_per_sec", "throughput_64k_mb_per_sec", "rtt_p50_us", "cold_connect_us", "idle_conn_bytes"} {
			v, ok := f[key].(float64)
			require.True(t, ok, "results.%s.%s missing", c, key)
			require.Positive(t, v, "results.%s.%s", c, key)
		}
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
	for _, want := range []string{"skipwire", "raw libp2p", "plain TCP", "64 KiB throughput vs raw libp2p", "cold connect vs raw libp2p", "idle bytes/conn"} {
		require.True(t, strings.Contains(out.String(), want), "%q not in\n%s", want, out.String())
	}
}

func TestFlags(t *testing.T) {
	var errOut bytes.Buffer
	require.Error(t, run(context.Background(), []string{"-security", "quic"}, &bytes.Buffer{}, &errOut))
	require.Error(t, run(context.Background(), []string{"-conns", "0"}, &bytes.Buffer{}, &errOut))
	require.Error(t, run(context.Background(), []string{"extra"}, &bytes.Buffer{}, &errOut))
}
