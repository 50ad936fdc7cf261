//! The schema, as numbered migrations that only ever add.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Opening a
//! database applies the missing ones in order, each in its own transaction;
//! a database written by a newer version (more migrations than this one
//! knows) is refused rather than misread. Migrations never drop, rename or
//! change a column, so an older reader keeps working on a newer file's
//! tables it knows.

use rusqlite::Connection;

use crate::StoreError;

/// Every migration, in order. Append; never edit one that has shipped.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: one row per finished request.
    "CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        started_at_ms INTEGER NOT NULL,
        backend TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        outcome TEXT NOT NULL,
        class TEXT,
        timeout_kind TEXT,
        time_to_first_chunk_ms REAL,
        time_to_first_content_ms REAL,
        duration_ms REAL NOT NULL,
        output_duration_ms REAL,
        estimated_tokens INTEGER NOT NULL,
        input_tokens INTEGER,
        output_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER,
        reasoning_tokens INTEGER,
        streamed_output_tokens INTEGER NOT NULL,
        chunks INTEGER NOT NULL,
        decode_tokens_per_sec REAL,
        end_to_end_tokens_per_sec REAL,
        burst_tokens_per_sec REAL,
        input_category TEXT NOT NULL,
        output_category TEXT NOT NULL
    );
    CREATE INDEX requests_backend_model_time ON requests (backend, model, started_at_ms);
    CREATE INDEX requests_time ON requests (started_at_ms);
    -- Covers percentile queries by model and time: the metrics and the
    -- outcome are in the index, so such a query never reads the table.
    CREATE INDEX requests_model_time ON requests (model, started_at_ms, outcome,
        decode_tokens_per_sec, end_to_end_tokens_per_sec, time_to_first_content_ms, duration_ms);",
    // 2: what gates and trackers reported besides requests.
    "CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        backend TEXT,
        model TEXT,
        reason TEXT,
        retry_after_ms REAL,
        from_state TEXT,
        to_state TEXT,
        quota_state TEXT,
        exhausted_for_ms REAL,
        remaining_requests INTEGER,
        remaining_tokens INTEGER,
        waited_ms REAL,
        count INTEGER
    );
    CREATE INDEX events_time ON events (at_ms);
    CREATE INDEX events_backend_model_time ON events (backend, model, at_ms);",
    // 3: hourly pre-aggregates, and how far they reach.
    "CREATE TABLE hourly (
        hour_ms INTEGER NOT NULL,
        backend TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        outcome TEXT NOT NULL,
        class TEXT NOT NULL,
        input_category TEXT NOT NULL,
        output_category TEXT NOT NULL,
        requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        duration_ms_sum REAL NOT NULL,
        decode_samples INTEGER NOT NULL,
        decode_tokens_per_sec_sum REAL NOT NULL,
        PRIMARY KEY (hour_ms, backend, provider, model, outcome, class, input_category, output_category)
    );
    CREATE TABLE rollup_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        rolled_until_ms INTEGER NOT NULL
    );
    INSERT INTO rollup_state (id, rolled_until_ms) VALUES (1, 0);",
];

/// The schema version this build writes: the number of migrations.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings `conn` up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // `user_version` takes no bound parameter; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn migrations_only_add() {
        for sql in MIGRATIONS {
            let upper = sql.to_uppercase();
            assert!(!upper.contains("DROP "), "{sql}");
            assert!(!upper.contains("RENAME"), "{sql}");
            // Adding a column is the one change to a table a migration may make.
            assert_eq!(
                upper.matches("ALTER TABLE").count(),
                upper.matches("ADD COLUMN").count(),
                "{sql}"
            );
        }
    }

    #[test]
    fn a_partly_migrated_database_is_brought_up_to_date_keeping_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute(
            "INSERT INTO requests (started_at_ms, backend, provider, model, outcome, duration_ms,
                estimated_tokens, output_tokens, streamed_output_tokens, chunks,
                input_category, output_category)
             VALUES (1, 'b', 'p', 'm', 'success', 5.0, 1, 2, 2, 3, 'tiny', 'tiny')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        let events: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 0);
        // Running again changes nothing.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        match migrate(&mut conn) {
            Err(StoreError::SchemaTooNew { found, known }) => {
                assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
}
