package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Version is a ClickHouse server version as version() reports it
// ("18.16.1", "24.8.4.13"). Only Major and Minor decide anything.
type Version struct {
	Major, Minor, Patch int
}

// ParseVersion reads the answer of SELECT version(). Components after the
// third and any suffix ("-lts", "-stable") are ignored.
func ParseVersion(s string) (Version, error) {
	var v Version
	parts := strings.SplitN(strings.TrimSpace(s), ".", 4)
	if len(parts) < 2 {
		return v, fmt.Errorf("clickhouse: version %q: want MAJOR.MINOR[.PATCH...]", s)
	}
	nums := []*int{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		if i == len(nums) {
			break
		}
		if i == 2 {
			// The patch may carry a suffix: keep its leading digits.
			p = p[:len(p)-len(strings.TrimLeft(p, "0123456789"))]
			if p == "" {
				break
			}
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Version{}, fmt.Errorf("clickhouse: version %q: component %q is not a number", s, parts[i])
		}
		*nums[i] = n
	}
	return v, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// modernSince is the first server version given the modern schema: the
// one version gate of this package, read only by FeaturesOf.
//
// What the modern schema uses and when it arrived: CODEC with Delta and
// ZSTD in 19.1, table and column TTL (and ALTER ... MODIFY TTL) in 19.6,
// DoubleDelta in 19.11, bloom_filter data-skipping indices in 19.5 but
// behind allow_experimental_data_skipping_indices until 20.1.2.4; and
// LowCardinality is experimental in 18.16. 20.1 is the first release where
// all of it works with no experimental setting, so one threshold covers
// everything; a 19.x server (end of life since 2020) gets the legacy
// schema, which is correct there, only larger and without retention.
var modernSince = Version{Major: 20, Minor: 1}

// Features says which optional parts of the schema a server gets.
type Features struct {
	// Codecs: per-column compression (ZSTD for bodies, DoubleDelta/Delta
	// for times).
	Codecs bool
	// TTL: table TTL for retention and column TTL for body retention.
	TTL bool
	// LowCardinality: LowCardinality(String) for the dimension columns.
	// 18.16 has it only behind allow_experimental_low_cardinality_type;
	// see the package doc for why the legacy schema uses String.
	LowCardinality bool
	// SkipIndex: a bloom_filter index on request_id for Store.Get.
	SkipIndex bool
	// IfNotExists: ALTER TABLE ... ADD COLUMN IF NOT EXISTS (18.16 has
	// only ADD COLUMN, which fails on a column that exists).
	IfNotExists bool
	// AdaptiveGranularity: granules sized in bytes as well as rows (19.11
	// on; gated at 20.1 with the rest). Without it a granule is 8,192 rows
	// whatever their size, and reading one row of 4.5 KB bodies
	// decompresses 37 MB of them.
	AdaptiveGranularity bool
}

// FeaturesOf is the version gate: everything modern from ClickHouse 20.1
// on, nothing before (see modernSince for why 20.1).
func FeaturesOf(v Version) Features {
	modern := v.AtLeast(modernSince.Major, modernSince.Minor)
	return Features{Codecs: modern, TTL: modern, LowCardinality: modern, SkipIndex: modern, IfNotExists: modern, AdaptiveGranularity: modern}
}

// ServerVersion asks the server for its version with SELECT version().
func ServerVersion(ctx context.Context, conn driver.Conn) (Version, error) {
	var s string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&s); err != nil {
		return Version{}, fmt.Errorf("clickhouse: read server version: %w", err)
	}
	return ParseVersion(s)
}
