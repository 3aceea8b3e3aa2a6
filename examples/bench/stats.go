package main

import (
	"math"
	"slices"
)

// Summaries of per-round figures.

// quantile returns the q-quantile (0 <= q <= 1) of xs, interpolating
// linearly between the order statistics; 0 for no values.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	pos := q * float64(len(s)-1)
	i := int(pos)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}

// median returns the middle value of xs (the mean of the two middle ones
// for an even count); 0 for no values.
func median(xs []float64) float64 { return quantile(xs, 0.5) }

// halfIQR returns half the interquartile range of xs: the ± around the
// median that holds the middle half of the values. ok is false with fewer
// than two values, where there is no spread to speak of.
func halfIQR(xs []float64) (half float64, ok bool) {
	if len(xs) < 2 {
		return 0, false
	}
	return (quantile(xs, 0.75) - quantile(xs, 0.25)) / 2, true
}

// round3 rounds x to 3 decimals, for the JSON output.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
