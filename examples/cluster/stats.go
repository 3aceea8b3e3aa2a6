package main

import (
	"fmt"
	"time"

	"github.com/skipwire/skipwire/internal/testkit"
)

// latencies summarises durations as "p50 X, p99 Y (n samples)".
type latencies []time.Duration

func (l latencies) String() string {
	if len(l) == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %s, p99 %s", ms(testkit.Percentile(l, 50)), ms(testkit.Percentile(l, 99)))
}

// ms formats d in milliseconds, with two decimals below 10 ms.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// secs formats a phase's duration: in milliseconds below a second, else in
// seconds with two decimals.
func secs(d time.Duration) string {
	if d < time.Second {
		return ms(d)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// minMax tracks the smallest and largest of some counts.
type minMax struct {
	min, max, n int
}

func (m *minMax) add(v int) {
	if m.n == 0 || v < m.min {
		m.min = v
	}
	if m.n == 0 || v > m.max {
		m.max = v
	}
	m.n++
}

func (m minMax) String() string {
	if m.min == m.max {
		return fmt.Sprintf("%d", m.min)
	}
	return fmt.Sprintf("min %d, max %d", m.min, m.max)
}
