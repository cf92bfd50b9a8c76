package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histSubBits sets a histogram's precision: each power of two is split in
// 1<<histSubBits buckets, so a reported value is within 1/64 (about 1.6%)
// of the recorded one.
const histSubBits = 6

const (
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) << histSubBits
)

// hist is a log-linear histogram of durations in nanoseconds, safe for
// concurrent use: Record is a few atomic adds, so every socket's reader can
// record into one shared histogram.
type hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Int64
}

// histIndex is the bucket of v >= 0. Values below 2*histSub have a bucket
// each; above, the bucket keeps the top histSubBits+1 bits of v.
func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return (shift+1)<<histSubBits + int(v>>shift) - histSub
}

// histLow is the smallest value of bucket i, and histWidth its width.
func histLow(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i>>histSubBits - 1
	return uint64(i&(histSub-1)+histSub) << shift
}

func histWidth(i int) uint64 {
	if i < 2*histSub {
		return 1
	}
	return 1 << (i>>histSubBits - 1)
}

// Record adds one duration; negative ones count as zero.
func (h *hist) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(uint64(v))].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count is how many durations were recorded.
func (h *hist) Count() uint64 { return h.n.Load() }

// Quantile returns the duration below which a fraction q of the recorded
// ones lie: the middle of the bucket that holds it, never above the
// maximum. Zero when nothing was recorded.
func (h *hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := histLow(i) + histWidth(i)/2
			return min(time.Duration(v), h.Max())
		}
	}
	return h.Max()
}

// Max is the largest recorded duration, exactly.
func (h *hist) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean is the average recorded duration.
func (h *hist) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Latency is a histogram's summary in milliseconds, as reported.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summary reports the histogram's quantiles.
func (h *hist) Summary() Latency {
	return Latency{
		Count: h.Count(),
		Mean:  ms(h.Mean()),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}
