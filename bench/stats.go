package bench

import (
	"slices"
	"time"
)

// Percentile returns the q-quantile (0..1) of ds by the nearest-rank
// method: the smallest sample with at least q of the samples at or below
// it. It does not modify ds; zero for no samples.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return nearestRank(s, q)
}

func nearestRank(sorted []time.Duration, q float64) time.Duration {
	q = min(max(q, 0), 1)
	// rank = ceil(q*n), at least 1.
	n := len(sorted)
	rank := int(q*float64(n) + 0.999999999)
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Summary is the distribution of a set of durations.
type Summary struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// Summarize computes the summary of ds.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Summary{N: len(s), P50: nearestRank(s, 0.50), P99: nearestRank(s, 0.99), Max: s[len(s)-1]}
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Us is d in microseconds.
func Us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Ratio is a ÷ b, or 0 when b is 0 (no baseline).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Median is the median of vs (the mean of the middle two for an even
// count); zero for none. It does not modify vs.
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
