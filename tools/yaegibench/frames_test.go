//go:build yaegiframes

package yaegibench

import (
	"fmt"
	"sort"

	"github.com/traefik/yaegi/interp"
)

// Built by scripts/yaegi-frames.sh only, against a copy of Yaegi that
// counts frames (testdata/frameprof.go.txt).

// frames prints what the interpreted functions' frames allocated per
// request since the last call, the dearest first; n == 0 only starts the
// count.
func frames(n int) {
	prof := interp.FrameProfile()
	if n == 0 {
		return
	}
	type row struct {
		name string
		s    interp.FrameStat
	}
	var rows []row
	var bytes, calls int64
	for name, s := range prof {
		rows = append(rows, row{name, s})
		bytes += s.Bytes
		calls += s.Calls
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].s.Bytes > rows[j].s.Bytes })
	fmt.Printf("\nframes: %.1f calls, %.0f B per request\n", float64(calls)/float64(n), float64(bytes)/float64(n))
	fmt.Printf("%10s %7s %9s  %s\n", "calls/req", "slots", "B/req", "function")
	for _, r := range rows {
		if per := float64(r.s.Bytes) / float64(n); per >= 1 {
			fmt.Printf("%10.2f %7.0f %9.0f  %s\n", float64(r.s.Calls)/float64(n), float64(r.s.Slots)/float64(r.s.Calls), per, r.name)
		}
	}
}
