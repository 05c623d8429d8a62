package clickhouse

import (
	"testing"
	"time"
)

// TestSplitRange: a report's range is cut into whole days from the daily
// rollup, other whole hours from the hourly one and the rest from the
// rows, never past what each rollup holds.
func TestSplitRange(t *testing.T) {
	at := func(day, hour, minute int) time.Time { return time.Date(2026, 3, day, hour, minute, 0, 0, time.UTC) }
	far := at(31, 0, 0)
	tests := []struct {
		name                  string
		from, to, hours, days time.Time
		wantHours, wantDays   [2]time.Time
	}{
		{"within an hour: the rows", at(14, 15, 10), at(14, 15, 50), far, far,
			[2]time.Time{at(14, 15, 10), at(14, 15, 10)}, [2]time.Time{at(14, 15, 10), at(14, 15, 10)}},
		{"hours, no whole day", at(14, 15, 10), at(15, 9, 30), far, far,
			[2]time.Time{at(14, 16, 0), at(15, 9, 0)}, [2]time.Time{at(15, 9, 0), at(15, 9, 0)}},
		{"days with hours on both sides", at(14, 15, 10), at(17, 9, 30), far, far,
			[2]time.Time{at(14, 16, 0), at(17, 9, 0)}, [2]time.Time{at(15, 0, 0), at(17, 0, 0)}},
		{"aligned on days", at(14, 0, 0), at(17, 0, 0), far, far,
			[2]time.Time{at(14, 0, 0), at(17, 0, 0)}, [2]time.Time{at(14, 0, 0), at(17, 0, 0)}},
		{"days rolled up to the 16th", at(14, 15, 10), at(17, 9, 30), far, at(16, 0, 0),
			[2]time.Time{at(14, 16, 0), at(17, 9, 0)}, [2]time.Time{at(15, 0, 0), at(16, 0, 0)}},
		{"hours rolled up to the 16th, 05:00", at(14, 15, 10), at(17, 9, 30), at(16, 5, 0), at(16, 0, 0),
			[2]time.Time{at(14, 16, 0), at(16, 5, 0)}, [2]time.Time{at(15, 0, 0), at(16, 0, 0)}},
		{"days ahead of hours (not rolled in order): bounded by the hours", at(14, 15, 10), at(17, 9, 30), at(15, 12, 0), far,
			[2]time.Time{at(14, 16, 0), at(15, 12, 0)}, [2]time.Time{at(15, 12, 0), at(15, 12, 0)}},
		{"nothing rolled up", at(14, 15, 10), at(17, 9, 30), time.Time{}, time.Time{},
			[2]time.Time{at(14, 15, 10), at(14, 15, 10)}, [2]time.Time{at(14, 15, 10), at(14, 15, 10)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := splitRange(tt.from, tt.to, tt.hours, tt.days)
			if p.hours != tt.wantHours || p.days != tt.wantDays {
				t.Errorf("hours %v, days %v; want %v, %v", p.hours, p.days, tt.wantHours, tt.wantDays)
			}
			// The parts nest: rows outside the hours, days inside them.
			if p.hours[0].Before(tt.from) || p.hours[1].After(tt.to) || p.days[0].Before(p.hours[0]) || p.days[1].After(p.hours[1]) {
				t.Errorf("parts do not nest: %+v", p)
			}
		})
	}
}
