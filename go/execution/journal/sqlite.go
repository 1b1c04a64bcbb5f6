package journal

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"

	"github.com/kairos-mt5/kairos/go/execution/internal/fault"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver (ADR 0051)
)

const sqliteSchema = `CREATE TABLE IF NOT EXISTS journal (
	seq     INTEGER PRIMARY KEY,
	time_us INTEGER NOT NULL,
	kind    TEXT    NOT NULL,
	key     TEXT    NOT NULL DEFAULT '',
	payload BLOB    NOT NULL
)`

// SQLite is the embedded default store: one file, WAL mode, synchronous=FULL so a commit survives
// a crash of the process and of the machine.
type SQLite struct {
	w, r  *sql.DB
	path  string
	stmts map[int]*sql.Stmt // multi-row INSERTs by row count, prepared once (only the writer uses them)
}

// Sync is how hard a SQLite commit waits for the disk.
type Sync string

// Sync modes.
const (
	// SyncFull fsyncs the write-ahead log on every commit: a commit survives a crash of the
	// machine. The default.
	SyncFull Sync = "full"
	// SyncNormal writes the commit to the write-ahead log (the OS page cache) and fsyncs only at
	// checkpoints: a commit survives a crash or SIGKILL of the process, not a power loss.
	SyncNormal Sync = "normal"
)

// OpenSQLite opens or creates the journal file at path with synchronous=FULL.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	return OpenSQLiteSync(ctx, path, SyncFull)
}

// OpenSQLiteSync opens or creates the journal file at path with the given sync mode.
func OpenSQLiteSync(ctx context.Context, path string, sync Sync) (*SQLite, error) {
	if path == "" {
		return nil, fmt.Errorf("journal: empty SQLite path")
	}
	if sync != SyncFull && sync != SyncNormal {
		return nil, fmt.Errorf("journal: sync %q: want full or normal", sync)
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(" + strings.ToUpper(string(sync)) + ")", "busy_timeout(10000)"} {
		q.Add("_pragma", p)
	}
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	// One writer connection: SQLite serialises writers anyway, and group commit batches them.
	w.SetMaxOpenConns(1)
	if _, err := w.ExecContext(ctx, sqliteSchema); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("journal: create schema in %s: %w", path, err)
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		_ = w.Close()
		return nil, fmt.Errorf("journal: %s is not in WAL mode (%q, %v)", path, mode, err)
	}
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	return &SQLite{w: w, r: r, path: path, stmts: make(map[int]*sql.Stmt)}, nil
}

// Name implements Store.
func (s *SQLite) Name() string { return "sqlite" }

// rowsPerInsert keeps a multi-row INSERT well under SQLite's bound-parameter limit.
const rowsPerInsert = 200

// Append implements Store: one transaction, multi-row inserts.
func (s *SQLite) Append(ctx context.Context, entries []Entry) error {
	// Prepare before the transaction takes the single writer connection.
	for rest := len(entries); rest > 0; rest -= rowsPerInsert {
		if _, err := s.insert(ctx, min(rest, rowsPerInsert)); err != nil {
			return err
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for len(entries) > 0 {
		n := min(len(entries), rowsPerInsert)
		st, err := s.insert(ctx, n)
		if err != nil {
			return err
		}
		args := make([]any, 0, n*5)
		for _, e := range entries[:n] {
			args = append(args, int64(e.Seq), e.TimeUS, string(e.Kind), e.Key, e.Payload)
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return err
		}
		entries = entries[n:]
	}
	fault.Point("mid-batch") // the batch's rows written inside the transaction, not committed
	return tx.Commit()
}

// insert returns the prepared INSERT of n rows; the writer goroutine is its only caller, and never
// while it holds a transaction (the writer pool has one connection).
func (s *SQLite) insert(ctx context.Context, n int) (*sql.Stmt, error) {
	if st, ok := s.stmts[n]; ok {
		return st, nil
	}
	var sb strings.Builder
	sb.WriteString("INSERT INTO journal (seq, time_us, kind, key, payload) VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString("(?,?,?,?,?)")
	}
	st, err := s.w.PrepareContext(ctx, sb.String())
	if err != nil {
		return nil, err
	}
	s.stmts[n] = st
	return st, nil
}

// Read implements Store with the loop shared with PostgreSQL (read.go).
func (s *SQLite) Read(ctx context.Context, after uint64, limit int, fn func(Entry) error) error {
	return sqlTable{
		name:  "journal",
		param: func(int) string { return "?" },
		query: func(ctx context.Context, q string, args ...any) (rows, func(), error) {
			rs, err := s.r.QueryContext(ctx, q, args...)
			if err != nil {
				return nil, nil, err
			}
			return rs, func() { _ = rs.Close() }, nil
		},
	}.read(ctx, after, limit, fn)
}

// LastSeq implements Store.
func (s *SQLite) LastSeq(ctx context.Context) (uint64, error) {
	var n sql.NullInt64
	if err := s.w.QueryRowContext(ctx, "SELECT MAX(seq) FROM journal").Scan(&n); err != nil {
		return 0, err
	}
	return uint64(n.Int64), nil
}

// Close implements Store.
func (s *SQLite) Close() error {
	for _, st := range s.stmts {
		_ = st.Close()
	}
	err := s.r.Close()
	if err2 := s.w.Close(); err == nil {
		err = err2
	}
	return err
}
