//go:build chdb

package clickhouse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	chdb "github.com/chdb-io/chdb-go/chdb-purego"
)

// chdbConn runs the collector's ClickHouse code on chDB, the current
// engine embedded as a library: it is the part of clickhouse-go's
// driver.Conn that the migrator, the writer and the store use (Exec,
// Query, QueryRow, PrepareBatch, Ping), over chDB's text interface.
// Arguments become SQL literals; results come back as JSONCompact with
// DateTime as Unix seconds, and Scan converts them into the Go types
// clickhouse-go would fill. Any other method panics (the embedded nil
// interface): these tests do not use it.
type chdbConn struct {
	driver.Conn
	mu sync.Mutex // chDB runs one query at a time per connection
	db chdb.ChdbConn
}

// chdbSettings make every result read the same whatever the machine's
// zone: DateTime as Unix seconds, 64-bit integers as JSON numbers.
const chdbSettings = " SETTINGS date_time_output_format = 'unix_timestamp', output_format_json_quote_64bit_integers = 0"

func (c *chdbConn) run(query, format string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res, err := c.db.Query(query, format)
	if err != nil {
		return nil, fmt.Errorf("chdb: %w\n%s", err, query)
	}
	if res == nil {
		return nil, nil
	}
	defer res.Free()
	if err := res.Error(); err != nil {
		return nil, fmt.Errorf("chdb: %w\n%s", err, query)
	}
	return bytes.Clone(res.Buf()), nil
}

func (c *chdbConn) Exec(_ context.Context, query string, args ...any) error {
	q, err := bind(query, args)
	if err != nil {
		return err
	}
	_, err = c.run(q, "CSV")
	return err
}

func (c *chdbConn) Ping(ctx context.Context) error { return c.Exec(ctx, "SELECT 1") }

func (c *chdbConn) Close() error { return nil }

func (c *chdbConn) Query(_ context.Context, query string, args ...any) (driver.Rows, error) {
	q, err := bind(query, args)
	if err != nil {
		return nil, err
	}
	out, err := c.run(strings.TrimRight(q, "; \n\t")+chdbSettings, "JSONCompact")
	if err != nil {
		return nil, err
	}
	var res struct {
		Data [][]any `json:"data"`
	}
	if len(out) > 0 {
		d := json.NewDecoder(bytes.NewReader(out))
		d.UseNumber()
		if err := d.Decode(&res); err != nil {
			return nil, fmt.Errorf("chdb: decode the result: %w", err)
		}
	}
	return &chdbRows{data: res.Data, at: -1}, nil
}

func (c *chdbConn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	rows, err := c.Query(ctx, query, args...)
	if err != nil {
		return &chdbRow{err: err}
	}
	r := rows.(*chdbRows)
	if !r.Next() {
		return &chdbRow{err: errors.New("chdb: no rows")}
	}
	return &chdbRow{values: r.data[0]}
}

func (c *chdbConn) PrepareBatch(_ context.Context, query string, _ ...driver.PrepareBatchOption) (driver.Batch, error) {
	return &chdbBatch{conn: c, insert: query}, nil
}

type chdbRows struct {
	driver.Rows
	data [][]any
	at   int
}

func (r *chdbRows) Next() bool   { r.at++; return r.at < len(r.data) }
func (r *chdbRows) Err() error   { return nil }
func (r *chdbRows) Close() error { return nil }
func (r *chdbRows) Scan(dest ...any) error {
	return scanValues(r.data[r.at], dest)
}

type chdbRow struct {
	driver.Row
	values []any
	err    error
}

func (r *chdbRow) Err() error { return r.err }
func (r *chdbRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return scanValues(r.values, dest)
}

// chdbBatch collects rows and sends them as one INSERT ... VALUES.
type chdbBatch struct {
	driver.Batch
	conn   *chdbConn
	insert string
	rows   []string
	sent   bool
}

func (b *chdbBatch) Append(v ...any) error {
	lits := make([]string, len(v))
	for i, x := range v {
		l, err := literal(x)
		if err != nil {
			return fmt.Errorf("chdb: value %d: %w", i, err)
		}
		lits[i] = l
	}
	b.rows = append(b.rows, "("+strings.Join(lits, ", ")+")")
	return nil
}

func (b *chdbBatch) Send() error {
	if b.sent {
		return errors.New("chdb: batch already sent")
	}
	b.sent = true
	if len(b.rows) == 0 {
		return nil
	}
	_, err := b.conn.run(b.insert+" VALUES "+strings.Join(b.rows, ", "), "CSV")
	return err
}

func (b *chdbBatch) Abort() error { b.sent = true; return nil }
func (b *chdbBatch) Close() error { return nil }
func (b *chdbBatch) IsSent() bool { return b.sent }
func (b *chdbBatch) Rows() int    { return len(b.rows) }

// bind replaces each ? outside quotes with the next argument as a literal.
func bind(query string, args []any) (string, error) {
	var sb strings.Builder
	next := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case quote != 0:
			if ch == '\\' && i+1 < len(query) {
				sb.WriteByte(ch)
				i++
				ch = query[i]
			} else if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '`' || ch == '"':
			quote = ch
		case ch == '?':
			if next == len(args) {
				return "", fmt.Errorf("chdb: more placeholders than the %d arguments in %s", len(args), query)
			}
			l, err := literal(args[next])
			if err != nil {
				return "", fmt.Errorf("chdb: argument %d: %w", next, err)
			}
			next++
			sb.WriteString(l)
			continue
		}
		sb.WriteByte(ch)
	}
	if next != len(args) {
		return "", fmt.Errorf("chdb: %d arguments for %d placeholders in %s", len(args), next, query)
	}
	return sb.String(), nil
}

// literal renders a value as ClickHouse SQL.
func literal(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "NULL", nil
	case string:
		return quoteString(x), nil
	case time.Time:
		return "toDateTime(" + strconv.FormatInt(x.Unix(), 10) + ", 'UTC')", nil
	case bool:
		if x {
			return "1", nil
		}
		return "0", nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return "NULL", nil
		}
		return literal(rv.Elem().Interface())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(rv.Float(), 'g', -1, 64), nil
	case reflect.Slice:
		parts := make([]string, rv.Len())
		for i := range parts {
			l, err := literal(rv.Index(i).Interface())
			if err != nil {
				return "", err
			}
			parts[i] = l
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	return "", fmt.Errorf("no literal for a %T", v)
}

func quoteString(s string) string {
	var sb strings.Builder
	sb.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case 0:
			sb.WriteString(`\0`)
		default:
			sb.WriteByte(c)
		}
	}
	sb.WriteByte('\'')
	return sb.String()
}

func scanValues(values []any, dest []any) error {
	if len(values) != len(dest) {
		return fmt.Errorf("chdb: %d columns scanned into %d destinations", len(values), len(dest))
	}
	for i, d := range dest {
		rv := reflect.ValueOf(d)
		if rv.Kind() != reflect.Pointer || rv.IsNil() {
			return fmt.Errorf("chdb: destination %d is a %T, not a pointer", i, d)
		}
		if err := convert(rv.Elem(), values[i]); err != nil {
			return fmt.Errorf("chdb: column %d: %w", i, err)
		}
	}
	return nil
}

var timeType = reflect.TypeOf(time.Time{})

// convert sets dst from a JSONCompact value as clickhouse-go would.
func convert(dst reflect.Value, src any) error {
	if dst.Kind() == reflect.Pointer {
		if src == nil {
			dst.SetZero()
			return nil
		}
		p := reflect.New(dst.Type().Elem())
		if err := convert(p.Elem(), src); err != nil {
			return err
		}
		dst.Set(p)
		return nil
	}
	if src == nil {
		return fmt.Errorf("NULL into a %s", dst.Type())
	}
	if dst.Type() == timeType {
		n, err := strconv.ParseInt(fmt.Sprint(src), 10, 64)
		if err != nil {
			return fmt.Errorf("a DateTime %v: %w", src, err)
		}
		dst.Set(reflect.ValueOf(time.Unix(n, 0).UTC()))
		return nil
	}
	switch dst.Kind() {
	case reflect.String:
		s, ok := src.(string)
		if !ok {
			s = fmt.Sprint(src)
		}
		dst.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(fmt.Sprint(src), 10, 64)
		if err != nil {
			return err
		}
		dst.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(fmt.Sprint(src), 10, 64)
		if err != nil {
			return err
		}
		dst.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(fmt.Sprint(src), 64)
		if err != nil {
			return err
		}
		dst.SetFloat(f)
	case reflect.Slice:
		items, ok := src.([]any)
		if !ok {
			return fmt.Errorf("a %T into a %s", src, dst.Type())
		}
		s := reflect.MakeSlice(dst.Type(), len(items), len(items))
		for i, it := range items {
			if err := convert(s.Index(i), it); err != nil {
				return err
			}
		}
		dst.Set(s)
	default:
		return fmt.Errorf("no conversion into a %s", dst.Type())
	}
	return nil
}
