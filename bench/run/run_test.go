package main

import (
	"math"
	"strings"
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

func TestReadBlocks(t *testing.T) {
	blocks, err := readBlocks("testdata/samples.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []block{
		{"tap.test": {0.812}, "fallback.test": {0.9}},
		{"tap.test": {1.5}},
		{"fallback.test": {0.7}},
	}
	if len(blocks) != len(want) {
		t.Fatalf("%d blocks, want %d: %v", len(blocks), len(want), blocks)
	}
	for i := range want {
		for host, ms := range want[i] {
			if got := blocks[i][host]; len(got) != len(ms) || math.Abs(got[0]-ms[0]) > 1e-9 {
				t.Errorf("block %d, %s: %v, want %v", i, host, got, ms)
			}
		}
	}
	if _, err := readBlocks("testdata/samples-bad.txt"); err == nil || !strings.Contains(err.Error(), "samples-bad.txt:2") {
		t.Errorf("a bad line: error %v, want one naming testdata/samples-bad.txt:2", err)
	}
}

func TestAddedAt(t *testing.T) {
	// Ten seconds of a base route whose latencies spread from 1 to 2 ms,
	// with a pause of the machine in one second that both routes meet.
	seconds := func(shift float64, pausedOnly bool) []block {
		var bs []block
		for s := 0; s < 10; s++ {
			b := block{}
			for i := 0; i < 100; i++ {
				ms := 1 + float64(i)/100
				if s == 3 {
					ms += 20
				}
				b["base"] = append(b["base"], ms)
				if !pausedOnly || s == 3 {
					ms += shift
				}
				b["route"] = append(b["route"], ms)
			}
			bs = append(bs, b)
		}
		return bs
	}
	for _, tc := range []struct {
		name          string
		blocks        []block
		est, lo, hi   float64
		intervalWider bool // the interval is not just est: lo and hi unchecked
	}{
		{name: "the same", blocks: seconds(0, false), est: 0, lo: 0, hi: 0},
		{name: "1 ms more on every request", blocks: seconds(1, false), est: 1, lo: 1, hi: 1},
		{name: "1 ms more in the pause only", blocks: seconds(1, true), est: 1, intervalWider: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			est, lo, hi := addedAt(tc.blocks, "route", "base", 0.99, 200)
			if math.Abs(est-tc.est) > 1e-9 || lo > est || hi < est {
				t.Fatalf("added %v (interval %v to %v), want %v within its interval", est, lo, hi, tc.est)
			}
			if tc.intervalWider {
				// Resamples without the paused second see no difference.
				if lo > 0 {
					t.Errorf("interval %v to %v: want it to reach 0, the resamples that miss the pause", lo, hi)
				}
				return
			}
			if math.Abs(lo-tc.lo) > 1e-9 || math.Abs(hi-tc.hi) > 1e-9 {
				t.Errorf("interval %v to %v, want %v to %v", lo, hi, tc.lo, tc.hi)
			}
		})
	}
}
