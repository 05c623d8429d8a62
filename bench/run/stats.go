package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
)

// medianOf is the median of pick over rs.
func medianOf(rs []loadResult, pick func(loadResult) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = pick(r)
	}
	return median(v)
}

// median of v (the mean of the middle two when their number is even).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}

// quantile is the q-th quantile of v, read as bench/load reads its own:
// the element at q·(n-1) once sorted. It sorts v.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[int(q*float64(len(v)-1))]
}

// block is one second of one run of routes taking turns: the latencies,
// in ms, of the requests each route was sent in that second. Resampling
// whole blocks keeps together what the machine did to every route at
// once, which is most of what moves a tail from one run to the next.
type block map[string][]float64

// readBlocks reads a bench/load -samples file into blocks of one second.
func readBlocks(path string) ([]block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var blocks []block
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s:%d: %q: want host, sent at (µs), latency (µs)", path, line, sc.Text())
		}
		at, err1 := strconv.ParseInt(fields[1], 10, 64)
		us, err2 := strconv.ParseInt(fields[2], 10, 64)
		if err1 != nil || err2 != nil || at < 0 || us < 0 {
			return nil, fmt.Errorf("%s:%d: %q: want host, sent at (µs), latency (µs)", path, line, sc.Text())
		}
		i := int(at / 1e6)
		for len(blocks) <= i {
			blocks = append(blocks, block{})
		}
		blocks[i][fields[0]] = append(blocks[i][fields[0]], float64(us)/1e3)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return blocks, nil
}

// addedAt is how much route adds to base at quantile q over all the
// blocks' requests, and a 90% interval for it: the 5th and 95th
// percentiles of the same difference over resamples of the blocks drawn
// with replacement (a block bootstrap). The generator's seed is fixed, so
// the same samples always give the same figures.
func addedAt(blocks []block, route, base string, q float64, resamples int) (est, lo, hi float64) {
	at := func(pick func(int) block) float64 {
		var r, b []float64
		for i := range blocks {
			bl := pick(i)
			r = append(r, bl[route]...)
			b = append(b, bl[base]...)
		}
		return quantile(r, q) - quantile(b, q)
	}
	est = at(func(i int) block { return blocks[i] })
	rng := rand.New(rand.NewPCG(1, 2))
	d := make([]float64, resamples)
	for k := range d {
		d[k] = at(func(int) block { return blocks[rng.IntN(len(blocks))] })
	}
	slices.Sort(d)
	return est, d[int(0.05*float64(resamples-1))], d[int(0.95*float64(resamples-1))]
}
