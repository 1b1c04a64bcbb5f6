package journal

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"

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

// sqliteKeyIndex serves ReadKey: the entries of one order without a scan (the engine looks up orders
// it no longer holds in memory, ADR 0125).
const sqliteKeyIndex = `CREATE INDEX IF NOT EXISTS journal_key ON journal (key)`

// SQLite is the embedded default store: one file in WAL mode. In full mode a commit survives a
// crash of the process and of the machine: the commit writes the write-ahead log (SQLite's
// synchronous=NORMAL) and Sync fdatasyncs it before the journal acknowledges anything (ADR 0057).
// In both modes checkpoints run on a connection of their own, off the commit path (ADR 0106).
type SQLite struct {
	w, r  *sql.DB
	path  string
	mode  Sync
	stmts map[int]*sql.Stmt // multi-row INSERTs by row count, prepared once (only the writer uses them)

	// Full mode only.
	wal    *os.File // the write-ahead log, fdatasynced by Sync
	walIno uint64   // its inode: a log replaced behind the store fails Sync

	ckpt    *sql.DB       // one connection for background checkpoints
	rows    int           // rows written since the last checkpoint request (writer only)
	ckptReq chan struct{} // wakes the checkpointer
	ckptErr atomic.Value  // error: the last checkpoint failure, reported by Sync
	ckptEnd chan struct{} // closed when the checkpointer has stopped
	// finishDue: the checkpointer copied the log; the writer copies the rest when idle.
	finishDue atomic.Bool
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

// checkpointRows is how many rows the writer commits between two requests for a background
// checkpoint (SQLite's own automatic checkpoint, inside a commit, is off). A few
// thousand rows keep the write-ahead log around a few MiB, as SQLite's default of 1,000 pages does.
const checkpointRows = 4096

// walPrealloc is the size the write-ahead log is given at open, in zeros: a checkpoint cycle at one
// order (five rows, two pages) per commit, the log's steady size at 1,000 orders/s.
const walPrealloc = 8 << 20

// preallocate extends f to n bytes with written zeros (not fallocate's unwritten extents, whose
// first write is a metadata change too) and fsyncs it, once at open. Every later commit that stays
// within n then overwrites allocated blocks in place, and its fdatasync is a data flush alone;
// a commit that extends the log also commits the new size to the filesystem journal (on ext4 a
// second flush, behind the ordered data of every other file in that journal transaction, such as
// a checkpoint's pages). SQLite ignores the zeros: recovery stops at the first frame whose salt and
// checksum do not match, and the log's next frames overwrite them.
func preallocate(f *os.File, n int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if size := fi.Size(); size < n {
		zeros := make([]byte, 1<<20)
		for off := size; off < n; off += int64(len(zeros)) {
			if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), n-off)], off); err != nil {
				return err
			}
		}
	}
	return f.Sync()
}

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
	// SQLite itself does not fsync commits (NORMAL) nor checkpoint inside them: in full mode Sync
	// fdatasyncs the log, and in both modes a goroutine checkpoints. Both keep a commit from waiting
	// on the disk while it holds the write lock. (SQLite's automatic checkpoint, every 1,000 pages,
	// made one normal-mode commit in ~200 wait for two fsyncs and the copy: that mode's p99.)
	pragmas := []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)", "wal_autocheckpoint(0)"}
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	// One writer connection: SQLite serialises writers anyway, and group commit batches them. It
	// stays open for the store's life, so the write-ahead log is never removed under Sync.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	for _, q := range []string{sqliteSchema, sqliteKeyIndex} {
		if _, err = w.ExecContext(ctx, q); err != nil {
			break
		}
	}
	if err != nil {
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
	s := &SQLite{w: w, r: r, path: path, mode: sync, stmts: make(map[int]*sql.Stmt)}
	if sync == SyncFull {
		if err := s.openFull(ctx); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	if err := s.startCheckpointer(dsn); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// openFull opens the write-ahead log for Sync.
func (s *SQLite) openFull(ctx context.Context) error {
	// A write transaction makes sure the log exists (it is created by the first one after open).
	if _, err := s.w.ExecContext(ctx, "BEGIN IMMEDIATE; COMMIT"); err != nil {
		return fmt.Errorf("journal: %s: %w", s.path, err)
	}
	f, err := os.OpenFile(s.path+"-wal", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("journal: write-ahead log of %s: %w", s.path, err)
	}
	s.wal = f
	if s.walIno, err = inode(f); err != nil {
		return err
	}
	// What a crashed run wrote and never synced is in the log (the page cache kept it) and is about
	// to be replayed and acted on: make it durable first (preallocate's fsync does, with the zeros).
	if err := preallocate(f, walPrealloc); err != nil {
		return fmt.Errorf("journal: write-ahead log of %s: %w", s.path, err)
	}
	return nil
}

// startCheckpointer opens the checkpoint connection and starts the checkpointer.
func (s *SQLite) startCheckpointer(dsn string) error {
	ck, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)
	s.ckpt = ck
	s.ckptReq = make(chan struct{}, 1)
	s.ckptEnd = make(chan struct{})
	go s.checkpointer()
	return nil
}

// checkpointer copies the write-ahead log into the database file whenever the writer asks, on its
// own connection (PASSIVE: it never blocks the writer, and its fsyncs are not on a commit's path).
// SQLite starts the log again from the beginning only when a write begins with the whole log
// copied, which a writer that keeps committing while the copy runs never sees; so the writer
// finishes the copy itself, when it is idle (Idle), and the log stays a few MiB, overwritten in
// place, which keeps each fdatasync to the data alone.
func (s *SQLite) checkpointer() {
	defer close(s.ckptEnd)
	for range s.ckptReq {
		if _, err := s.ckpt.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
			s.ckptErr.Store(fmt.Errorf("journal: checkpoint of %s: %w", s.path, err))
			continue
		}
		s.finishDue.Store(true)
	}
}

// Idle is called by the journal's writer when it has nothing to write: after a background checkpoint
// it copies what was committed meanwhile (little) on the writer's own connection, so the next
// commit restarts the log. Batches already written are being synced meanwhile; only a submission
// arriving now waits, once per checkpoint.
func (s *SQLite) Idle() {
	if !s.finishDue.CompareAndSwap(true, false) {
		return
	}
	if _, err := s.w.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
		s.ckptErr.Store(fmt.Errorf("journal: checkpoint of %s: %w", s.path, err))
	}
}

// DeferredSync implements Syncer: in full mode Append writes and Sync makes durable.
func (s *SQLite) DeferredSync() bool { return s.mode == SyncFull }

// Sync implements Syncer: fdatasync of the write-ahead log, which makes every commit written so far
// durable (SQLite's synchronous=FULL syncs the same file at each commit, inside the write lock).
// A checkpoint failure is reported here, so it fails the journal as a failed write would.
func (s *SQLite) Sync() error {
	if s.wal == nil {
		return nil
	}
	if err, _ := s.ckptErr.Load().(error); err != nil {
		return err
	}
	// The log must still be the file SQLite writes: it is only removed when the last connection
	// closes, and the writer's stays open, but a sync of a stale file would acknowledge nothing.
	if ino, err := pathIno(s.path + "-wal"); err != nil {
		return err
	} else if ino != s.walIno {
		return fmt.Errorf("journal: the write-ahead log of %s was replaced", s.path)
	}
	return fdatasync(s.wal)
}

// Name implements Store.
func (s *SQLite) Name() string { return "sqlite" }

// rowsPerInsert keeps a multi-row INSERT well under SQLite's bound-parameter limit.
const rowsPerInsert = 200

// Append implements Store: one transaction, multi-row inserts. A failed background checkpoint
// fails the next append (in full mode Sync reports it too).
func (s *SQLite) Append(ctx context.Context, entries []Entry) error {
	if err, _ := s.ckptErr.Load().(error); err != nil {
		return err
	}
	// Prepare before the transaction takes the single writer connection.
	all := len(entries)
	for rest := all; rest > 0; rest -= rowsPerInsert {
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
	if err := tx.Commit(); err != nil {
		return err
	}
	if s.ckptReq != nil {
		if s.rows += all; s.rows >= checkpointRows {
			s.rows = 0
			select {
			case s.ckptReq <- struct{}{}:
			default:
			}
		}
	}
	return nil
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
	return s.table().read(ctx, after, limit, fn)
}

func (s *SQLite) table() sqlTable {
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
	}
}

// ReadKey implements Store.
func (s *SQLite) ReadKey(ctx context.Context, key string, fn func(Entry) error) error {
	return s.table().readKey(ctx, key, fn)
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
	if s.ckptReq != nil {
		close(s.ckptReq)
		<-s.ckptEnd
		_ = s.ckpt.Close()
	}
	for _, st := range s.stmts {
		_ = st.Close()
	}
	err := s.r.Close()
	if err2 := s.w.Close(); err == nil {
		err = err2
	}
	if s.wal != nil {
		_ = s.wal.Close()
	}
	return err
}
