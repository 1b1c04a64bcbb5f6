package journal

import "context"

// rows is what a result set of database/sql (SQLite) and of pgx (PostgreSQL) both offer.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// sqlTable is how a SQL store names its journal table and its bind parameters.
type sqlTable struct {
	name string
	// param is the n-th bind parameter (from 1): "?" for SQLite, "$n" for PostgreSQL.
	param func(n int) string
	// query runs q and returns its rows and how to close them.
	query func(ctx context.Context, q string, args ...any) (rows, func(), error)
}

// read is Store.Read for both SQL stores: entries with Seq > after in sequence order, at most
// limit of them (0: all), each handed to fn; an error from fn stops the read and is returned.
func (t sqlTable) read(ctx context.Context, after uint64, limit int, fn func(Entry) error) error {
	q := "SELECT seq, time_us, kind, key, payload FROM " + t.name + " WHERE seq > " + t.param(1) + " ORDER BY seq"
	args := []any{int64(after)}
	if limit > 0 {
		q += " LIMIT " + t.param(2)
		args = append(args, limit)
	}
	return t.scan(ctx, q, args, fn)
}

// readKey is Store.ReadKey for both SQL stores: the entries of one key in sequence order, through
// the key's index.
func (t sqlTable) readKey(ctx context.Context, key string, fn func(Entry) error) error {
	q := "SELECT seq, time_us, kind, key, payload FROM " + t.name + " WHERE key = " + t.param(1) + " ORDER BY seq"
	return t.scan(ctx, q, []any{key}, fn)
}

// scan runs q and hands each entry to fn.
func (t sqlTable) scan(ctx context.Context, q string, args []any, fn func(Entry) error) error {
	rs, closeRows, err := t.query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer closeRows()
	for rs.Next() {
		var (
			e    Entry
			seq  int64
			kind string
		)
		if err := rs.Scan(&seq, &e.TimeUS, &kind, &e.Key, &e.Payload); err != nil {
			return err
		}
		e.Seq, e.Kind = uint64(seq), Kind(kind)
		if err := fn(e); err != nil {
			return err
		}
	}
	return rs.Err()
}
