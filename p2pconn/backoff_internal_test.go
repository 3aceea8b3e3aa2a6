package p2pconn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBackoffBounds checks every retry delay lies in [d/2, d] with
// d = RetryDelay * 2^(n-1) capped at MaxRetryDelay, and that the jitter spreads.
func TestBackoffBounds(t *testing.T) {
	m := &Manager{cfg: Config{RetryDelay: 100 * time.Millisecond, MaxRetryDelay: time.Second}.withDefaults()}
	for n, d := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 30: time.Second,
	} {
		lo, hi := d, time.Duration(0)
		for range 2000 {
			got := m.backoff(n)
			require.GreaterOrEqual(t, got, d/2, "retry %d", n)
			require.LessOrEqual(t, got, d, "retry %d", n)
			lo, hi = min(lo, got), max(hi, got)
		}
		require.Less(t, lo, d/2+d/10, "retry %d: jitter reaches the low end", n)
		require.Greater(t, hi, d-d/10, "retry %d: jitter reaches the high end", n)
	}
}
