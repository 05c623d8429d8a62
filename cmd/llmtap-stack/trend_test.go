package main

import (
	"math"
	"testing"
)

// rssSample is one sample of the soak: the share of the requests sent,
// each RSS (MB; NaN when the process is gone).
type rssSample struct{ pct, traefik, collector float64 }

// trend says how much RSS grows from 30% of the requests to the end, as
// a leak would make it grow: the least-squares line through each half of
// the samples from 30% on, and the slower of the two, over the whole span.
// A leak grows in both halves; a stall of the shared machine piles
// requests up and lifts RSS in one step, which Go hands back slowly, so
// the other half stays flat or falls. start is the whole line's value at
// 30%.
func trend(samples []rssSample, rss func(rssSample) float64) (growth, start float64, ok bool) {
	const from, middle = 30, 65
	all, early, late := fit(samples, rss, from, 101), fit(samples, rss, from, middle), fit(samples, rss, middle, 101)
	if !all.ok || !early.ok || !late.ok {
		return 0, 0, false
	}
	return math.Min(early.slope, late.slope) * (100 - from), all.at(from), true
}

// line is a least-squares line through the samples in [lo, hi).
type line struct {
	slope, intercept float64
	ok               bool // at least two samples, apart
}

func (l line) at(pct float64) float64 { return l.intercept + l.slope*pct }

func fit(samples []rssSample, rss func(rssSample) float64, lo, hi float64) line {
	var n, sx, sy, sxx, sxy float64
	for _, p := range samples {
		y := rss(p)
		if p.pct < lo || p.pct >= hi || math.IsNaN(y) {
			continue
		}
		n++
		sx += p.pct
		sy += y
		sxx += p.pct * p.pct
		sxy += p.pct * y
	}
	d := n*sxx - sx*sx
	if n < 2 || d == 0 {
		return line{}
	}
	b := (n*sxy - sx*sy) / d
	return line{slope: b, intercept: (sy - b*sx) / n, ok: true}
}

func TestTrend(t *testing.T) {
	traefik := func(r rssSample) float64 { return r.traefik }
	for _, tc := range []struct {
		desc          string
		samples       []rssSample
		growth, start float64
		ok            bool
	}{
		{"flat after the warm-up", []rssSample{{0, 50, 0}, {20, 100, 0}, {40, 120, 0}, {60, 120, 0}, {80, 120, 0}, {100, 120, 0}}, 0, 120, true},
		{"a leak: +1 MB per 1% of the requests", []rssSample{{30, 100, 0}, {50, 120, 0}, {70, 140, 0}, {100, 170, 0}}, 70, 100, true},
		{"a process gone is no sample", []rssSample{{30, 100, 0}, {50, 100, 0}, {60, math.NaN(), 0}, {80, 100, 0}, {100, 100, 0}}, 0, 100, true},
		{"too few samples", []rssSample{{30, 100, 0}, {100, 100, 0}}, 0, 0, false},
		// A soak of 2026-12-06: a one-second stall at 54% of the requests
		// lifted Traefik by 37 MB, which it then gave back slowly.
		{"a stall's step, then flat", []rssSample{{30, 124, 0}, {36, 124, 0}, {41, 124, 0}, {45, 124, 0}, {50, 124.5, 0}, {54, 161, 0}, {59, 179, 0}, {64, 168, 0},
			{68, 168, 0}, {73, 167, 0}, {77, 167, 0}, {82, 167, 0}, {86, 161, 0}, {91, 156, 0}, {96, 156, 0}, {100, 156, 0}}, -32.369, 130.263, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			growth, start, ok := trend(tc.samples, traefik)
			if ok != tc.ok || math.Abs(growth-tc.growth) > 1e-3 || math.Abs(start-tc.start) > 1e-3 {
				t.Fatalf("trend: %+.3f from %.3f (%v), want %+.3f from %.3f (%v)", growth, start, ok, tc.growth, tc.start, tc.ok)
			}
		})
	}
}
