package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQuantiles(t *testing.T) {
	for _, tc := range []struct {
		xs     []float64
		median float64
		half   float64
		ok     bool
	}{
		{xs: nil, median: 0, ok: false},
		{xs: []float64{3}, median: 3, ok: false},
		{xs: []float64{1, 3}, median: 2, half: 0.5, ok: true},
		{xs: []float64{5, 1, 3, 2, 4}, median: 3, half: 1, ok: true},
		{xs: []float64{1, 2, 3, 4}, median: 2.5, half: 0.75, ok: true},
	} {
		require.InDelta(t, tc.median, median(tc.xs), 1e-9, "%v", tc.xs)
		half, ok := halfIQR(tc.xs)
		require.Equal(t, tc.ok, ok, "%v", tc.xs)
		require.InDelta(t, tc.half, half, 1e-9, "%v", tc.xs)
	}
}

// TestRatiosPerRound checks that ratios pair the samples of each round,
// and how spread, flags and verdicts follow.
func TestRatiosPerRound(t *testing.T) {
	r := newReport(options{quick: true, rounds: 5})
	sw, raw, comb := r.Results["skipwire"], r.Results["libp2p"], r.Results["libp2p_combining"]
	// A slow round slows both contenders: per round the ratio holds at 1.
	for _, v := range []float64{100, 50, 100, 200, 100} {
		sw.add("throughput_64k_mb_per_sec", v)
		raw.add("throughput_64k_mb_per_sec", v)
	}
	// 0.8, 0.9, 1.0, 1.1, 1.2: median 1.0, quartiles 0.9 and 1.1.
	for _, v := range []float64{80, 90, 100, 110, 120} {
		sw.add("small_8senders_msgs_per_sec", v)
		comb.add("small_8senders_msgs_per_sec", 100)
	}
	sw.add("idle_conn_goroutines", 10)
	raw.add("idle_conn_goroutines", 9)
	r.finish()

	big := r.Ratios["throughput_64k_vs_libp2p"]
	require.Equal(t, 1.0, big.Value)
	require.Equal(t, []float64{1, 1, 1, 1, 1}, big.Rounds)
	require.Equal(t, 0.0, *big.SpreadPct)
	require.True(t, *big.OK)
	require.False(t, big.Noisy)
	require.Equal(t, ">= 1.00", big.Target)
	require.Equal(t, 100.0, sw.Medians["throughput_64k_mb_per_sec"])

	small := r.Ratios["small_8senders_vs_libp2p_combining"]
	require.Equal(t, 1.0, small.Value)
	require.InDelta(t, 10.0, *small.SpreadPct, 1e-9)
	require.False(t, small.Noisy, "10% is not over 15%")
	require.True(t, *small.OK)

	g := r.Ratios["idle_conn_goroutines_more_than_libp2p"]
	require.Equal(t, 1.0, g.Value)
	require.Nil(t, g.Spread, "one round")
	require.True(t, *g.OK)
	require.Equal(t, "<= +1", g.Target)

	require.NotContains(t, r.Ratios, "rtt_p50_vs_libp2p", "no samples, no ratio")
	require.Empty(t, r.QuickUntrusted)

	// Over 15% the ratio is flagged; over 10% a quick run says it cannot
	// give it to 10%.
	r = newReport(options{quick: true, rounds: 4})
	for _, v := range []float64{60, 80, 120, 140} {
		r.Results["skipwire"].add("rtt_p50_us", v)
		r.Results["libp2p"].add("rtt_p50_us", 100)
	}
	r.finish()
	rtt := r.Ratios["rtt_p50_vs_libp2p"]
	require.Equal(t, 1.0, rtt.Value)
	require.True(t, rtt.Noisy)
	require.True(t, *rtt.OK, "the median meets the target; the flag says how far to trust it")
	require.Equal(t, []string{"rtt_p50_vs_libp2p"}, r.QuickUntrusted)
}
