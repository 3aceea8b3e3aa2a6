package testkit

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 <= p <= 100) of ds by the
// nearest-rank method: the smallest sample that at least p percent of the
// samples do not exceed. Percentile(ds, 0) is the minimum, Percentile(ds,
// 100) the maximum, and it returns 0 for no samples. ds is not modified.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}
