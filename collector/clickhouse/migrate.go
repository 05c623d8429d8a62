package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Migrator brings the schema up to date. Modelled on TensorZero's
// ClickHouse migration manager: numbered steps, each idempotent, applied
// in order and recorded in llmtap_migrations (version, name, applied_at).
type Migrator struct {
	conn   driver.Conn
	schema Schema
	log    *slog.Logger
}

// NewMigrator returns a Migrator for schema on conn. A nil logger discards.
func NewMigrator(conn driver.Conn, schema Schema, logger *slog.Logger) *Migrator {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Migrator{conn: conn, schema: schema.withDefaults(), log: logger}
}

// Migrate creates the database and the migrations table if missing, reads
// the server version once, and applies every pending migration of Plan in
// order, recording each after its statements succeeded. Running it again
// (or from two collectors at once) changes nothing: statements are
// idempotent and a migration is pending only when its version has no
// record or its latest record has another name.
func (m *Migrator) Migrate(ctx context.Context) error {
	if err := m.schema.Validate(); err != nil {
		return err
	}
	v, err := ServerVersion(ctx, m.conn)
	if err != nil {
		return err
	}
	db := m.schema.Database
	if err := m.checkLayout(ctx); err != nil {
		return err
	}
	for _, st := range bootstrap(m.schema) {
		if err := m.conn.Exec(ctx, st); err != nil {
			return fmt.Errorf("clickhouse: create %s.%s: %w", db, migrationsTable, err)
		}
	}
	latest, err := m.applied(ctx)
	if err != nil {
		return err
	}
	for _, mig := range pending(Plan(v, m.schema), latest) {
		if len(mig.Statements) == 0 {
			m.log.Debug("migration does not apply to this server", "version", mig.Version, "name", mig.Name, "server", v.String())
			continue
		}
		done, err := m.done(ctx, mig)
		if err != nil {
			return err
		}
		for i := 0; i < len(mig.Statements) && !done; i++ {
			if err := m.conn.Exec(ctx, mig.Statements[i]); err != nil {
				return fmt.Errorf("clickhouse: migration %d %q, statement %d of %d: %w", mig.Version, mig.Name, i+1, len(mig.Statements), err)
			}
		}
		if mig.Backfill != nil && !done {
			if err := m.backfill(ctx, mig); err != nil {
				return err
			}
		}
		if err := m.record(ctx, mig); err != nil {
			return err
		}
		m.log.Info("applied migration", "version", mig.Version, "name", mig.Name, "database", db, "server", v.String())
	}
	if f := FeaturesOf(v); !f.TTL && (m.schema.Retention > 0 || m.schema.BodyRetention > 0) {
		m.log.Info("server has no TTL: the collector enforces the retention itself (Retainer), each monthly partition dropped once all of it is past",
			"server", v.String(), "ttl_since", modernSince.String(), "retention", m.schema.Retention, "body_retention", m.schema.BodyRetention)
	}
	return nil
}

// checkLayout refuses a requests table of the other layout: a database
// made for a single server (requests holds the rows) while a cluster is
// configured, or a cluster's (requests is Distributed) without one. The
// statements of Plan all say IF NOT EXISTS, so without this check such a
// database would be left as it is and the writer would insert into the
// wrong table.
func (m *Migrator) checkLayout(ctx context.Context) error {
	db := m.schema.Database
	rows, err := m.conn.Query(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", db, requestsTable)
	if err != nil {
		return fmt.Errorf("clickhouse: read the engine of %s.%s: %w", db, requestsTable, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return fmt.Errorf("clickhouse: read the engine of %s.%s: %w", db, requestsTable, err)
		}
		return nil // a new database
	}
	var engine string
	if err := rows.Scan(&engine); err != nil {
		return fmt.Errorf("clickhouse: read the engine of %s.%s: %w", db, requestsTable, err)
	}
	switch distributed := engine == "Distributed"; {
	case m.schema.Cluster != "" && !distributed:
		return fmt.Errorf("clickhouse: %s.%s is a %s table, made for a single server, but cluster %q is configured: "+
			"give the cluster its own database (the rows do not move by themselves), or configure no cluster", db, requestsTable, engine, m.schema.Cluster)
	case m.schema.Cluster == "" && distributed:
		return fmt.Errorf("clickhouse: %s.%s is a Distributed table, made for a cluster, but no cluster is configured: "+
			"configure the cluster it was made for, or use another database", db, requestsTable)
	}
	return nil
}

// applied returns the latest recorded name of each migration version.
func (m *Migrator) applied(ctx context.Context) (map[uint32]string, error) {
	rows, err := m.conn.Query(ctx, "SELECT version, argMax(name, applied_at) FROM "+m.schema.Database+"."+migrationsTable+" GROUP BY version")
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read %s: %w", migrationsTable, err)
	}
	defer rows.Close()
	latest := map[uint32]string{}
	for rows.Next() {
		var (
			v    uint32
			name string
		)
		if err := rows.Scan(&v, &name); err != nil {
			return nil, fmt.Errorf("clickhouse: read %s: %w", migrationsTable, err)
		}
		latest[v] = name
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: read %s: %w", migrationsTable, err)
	}
	return latest, nil
}

// backfill runs a migration's Backfill, a day at a time.
func (m *Migrator) backfill(ctx context.Context, mig Migration) error {
	rows, err := m.conn.Query(ctx, mig.Backfill.Days)
	if err != nil {
		return fmt.Errorf("clickhouse: migration %d %q, list the days to backfill: %w", mig.Version, mig.Name, err)
	}
	var days []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return fmt.Errorf("clickhouse: migration %d %q, list the days to backfill: %w", mig.Version, mig.Name, err)
		}
		days = append(days, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: migration %d %q, list the days to backfill: %w", mig.Version, mig.Name, err)
	}
	sort.Strings(days)
	start := time.Now()
	for _, d := range days {
		if err := m.conn.Exec(ctx, mig.Backfill.Insert, d); err != nil {
			return fmt.Errorf("clickhouse: migration %d %q, backfill %s: %w", mig.Version, mig.Name, d, err)
		}
	}
	if len(days) > 0 {
		m.log.Info("backfilled", "migration", mig.Version, "name", mig.Name, "days", len(days), "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// done asks a migration's Done query whether its effect is already there.
func (m *Migrator) done(ctx context.Context, mig Migration) (bool, error) {
	if mig.Done == "" {
		return false, nil
	}
	var n uint64
	if err := m.conn.QueryRow(ctx, mig.Done).Scan(&n); err != nil {
		return false, fmt.Errorf("clickhouse: migration %d %q, check whether applied: %w", mig.Version, mig.Name, err)
	}
	return n > 0, nil
}

func (m *Migrator) record(ctx context.Context, mig Migration) error {
	b, err := m.conn.PrepareBatch(ctx, "INSERT INTO "+m.schema.Database+"."+migrationsTable+" (version, name, applied_at)")
	if err != nil {
		return fmt.Errorf("clickhouse: record migration %d: %w", mig.Version, err)
	}
	defer func() { _ = b.Close() }()
	if err := b.Append(mig.Version, mig.Name, time.Now().UTC()); err != nil {
		return fmt.Errorf("clickhouse: record migration %d: %w", mig.Version, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("clickhouse: record migration %d: %w", mig.Version, err)
	}
	return nil
}

// pending returns, in version order, the migrations of plan whose version
// has no record or whose latest record has another name.
func pending(plan []Migration, latest map[uint32]string) []Migration {
	var out []Migration
	for _, mig := range plan {
		if name, ok := latest[mig.Version]; ok && name == mig.Name {
			continue
		}
		out = append(out, mig)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}
