package main

import (
	"math"
	"sort"
	"testing"
)

// rssSample is one sample of the soak: the share of the requests sent,
// each RSS (MB; NaN when the process is gone).
type rssSample struct{ pct, traefik, collector float64 }

// trend is the least-squares line through the samples from 30% of the
// requests on: the MB it rises from 30% to 100% and its value at 30%.
func trend(samples []rssSample, rss func(rssSample) float64) (growth, start float64, ok bool) {
	var n, sx, sy, sxx, sxy float64
	pts := append([]rssSample(nil), samples...)
	sort.Slice(pts, func(i, j int) bool { return pts[i].pct < pts[j].pct })
	for _, p := range pts {
		y := rss(p)
		if p.pct < 30 || math.IsNaN(y) {
			continue
		}
		n++
		sx += p.pct
		sy += y
		sxx += p.pct * p.pct
		sxy += p.pct * y
	}
	d := n*sxx - sx*sx
	if n < 3 || d == 0 {
		return 0, 0, false
	}
	b := (n*sxy - sx*sy) / d
	a := (sy - b*sx) / n
	return b * 70, a + b*30, true
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
		{"a process gone is no sample", []rssSample{{30, 100, 0}, {60, math.NaN(), 0}, {80, 100, 0}, {100, 100, 0}}, 0, 100, true},
		{"too few samples", []rssSample{{30, 100, 0}, {100, 100, 0}}, 0, 0, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			growth, start, ok := trend(tc.samples, traefik)
			if ok != tc.ok || math.Abs(growth-tc.growth) > 1e-9 || math.Abs(start-tc.start) > 1e-9 {
				t.Fatalf("trend: %+.3f from %.3f (%v), want %+.3f from %.3f (%v)", growth, start, ok, tc.growth, tc.start, tc.ok)
			}
		})
	}
}
