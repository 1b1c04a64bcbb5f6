package journal

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kairos-mt5/kairos/go/execution/internal/fault"
)

const pgSchema = `CREATE TABLE IF NOT EXISTS kairos_execution_journal (
	seq     BIGINT PRIMARY KEY,
	time_us BIGINT NOT NULL,
	kind    TEXT   NOT NULL,
	key     TEXT   NOT NULL DEFAULT '',
	payload BYTEA  NOT NULL
)`

// pgKeyIndex serves ReadKey (ADR 0125).
const pgKeyIndex = `CREATE INDEX IF NOT EXISTS kairos_execution_journal_key ON kairos_execution_journal (key)`

// Postgres is the server-backed store, for operators who keep their records in PostgreSQL. A commit
// is durable under PostgreSQL's own settings (synchronous_commit on by default).
type Postgres struct{ pool *pgxpool.Pool }

// OpenPostgres connects to dsn (postgres://user@host:port/db) and creates the table if needed.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("journal: postgres config: %w", err)
	}
	_, err = pool.Exec(ctx, pgSchema)
	if err == nil {
		_, err = pool.Exec(ctx, pgKeyIndex)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("journal: postgres schema: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Name implements Store.
func (p *Postgres) Name() string { return "postgres" }

// pgInsert writes a whole batch in one statement: a statement is its own transaction, so the batch
// is committed (durably, under synchronous_commit) by the time its single round trip answers.
const pgInsert = `INSERT INTO kairos_execution_journal (seq, time_us, kind, key, payload)
	SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bytea[])`

// Append implements Store: one statement, one round trip (BEGIN, COPY and COMMIT took four, each a
// loopback wake-up on a submission's path).
func (p *Postgres) Append(ctx context.Context, entries []Entry) error {
	seqs := make([]int64, len(entries))
	times := make([]int64, len(entries))
	kinds := make([]string, len(entries))
	keys := make([]string, len(entries))
	payloads := make([][]byte, len(entries))
	for i, e := range entries {
		seqs[i], times[i], kinds[i], keys[i], payloads[i] = int64(e.Seq), e.TimeUS, string(e.Kind), e.Key, e.Payload
	}
	// The batch is about to be sent: being one statement, it has no point between its rows and its
	// commit, and a crash here leaves it wholly unwritten.
	fault.Point("mid-batch")
	_, err := p.pool.Exec(ctx, pgInsert, seqs, times, kinds, keys, payloads)
	return err
}

// Read implements Store with the loop shared with SQLite (read.go).
func (p *Postgres) Read(ctx context.Context, after uint64, limit int, fn func(Entry) error) error {
	return p.table().read(ctx, after, limit, fn)
}

// ReadKey implements Store.
func (p *Postgres) ReadKey(ctx context.Context, key string, fn func(Entry) error) error {
	return p.table().readKey(ctx, key, fn)
}

func (p *Postgres) table() sqlTable {
	return sqlTable{
		name:  "kairos_execution_journal",
		param: func(n int) string { return "$" + strconv.Itoa(n) },
		query: func(ctx context.Context, q string, args ...any) (rows, func(), error) {
			rs, err := p.pool.Query(ctx, q, args...)
			if err != nil {
				return nil, nil, err
			}
			return rs, rs.Close, nil
		},
	}
}

// LastSeq implements Store.
func (p *Postgres) LastSeq(ctx context.Context) (uint64, error) {
	var n *int64
	if err := p.pool.QueryRow(ctx, "SELECT MAX(seq) FROM kairos_execution_journal").Scan(&n); err != nil {
		return 0, err
	}
	if n == nil {
		return 0, nil
	}
	return uint64(*n), nil
}

// closeTimeout bounds Close: pgxpool gives each connection 15 s to say goodbye, and a server that
// stalls (the fault that may have failed the journal) must not hold the service's shutdown.
const closeTimeout = 2 * time.Second

// Close implements Store. Against a server that does not answer it returns after closeTimeout and
// leaves the connections to the process's exit.
func (p *Postgres) Close() error {
	done := make(chan struct{})
	go func() { p.pool.Close(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(closeTimeout):
		return fmt.Errorf("journal: postgres: close did not finish in %v (server not answering)", closeTimeout)
	}
}
