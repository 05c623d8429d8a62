package main

import (
	"math"
	"testing"
)

func TestToMS(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
	}{{"812.00us", 0.812}, {"1.52ms", 1.52}, {"1.01s", 1010}, {"", 0}} {
		if got := toMS(tc.in); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("toMS(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{-1, 2}, 0.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestServerSide(t *testing.T) {
	inf := math.Inf(1)
	before := []bucket{{0.0005, 10}, {0.001, 20}, {0.0025, 20}, {inf, 20}}
	// Over the run: 100 checks, 60 within 0.5 ms, 90 within 1 ms, 100
	// within 2.5 ms. The 99th is in (1, 2.5] ms, 9/10 of the way: 2.35 ms.
	after := []bucket{{0.0005, 70}, {0.001, 110}, {0.0025, 120}, {inf, 120}}
	within1, p99 := serverSide(before, after)
	if math.Abs(within1-90) > 1e-9 || math.Abs(p99-2.35) > 1e-9 {
		t.Fatalf("serverSide: %v%% within 1 ms, p99 %v ms; want 90%%, 2.35 ms", within1, p99)
	}
	if w, p := serverSide(before, before); w != 0 || p != 0 {
		t.Errorf("no checks: %v, %v; want 0, 0", w, p)
	}
}
