//! Storage: opening and migrating the SQLite file, appending events in their own
//! transactions, and reading them back by run, by kind, or all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::journal::chain::{event_hash, GENESIS_HASH};
use crate::journal::event::Event;

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,
    run_id    TEXT    NOT NULL,
    run_seq   INTEGER NOT NULL,
    at        TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    step      TEXT,
    body      TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    UNIQUE (run_id, run_seq)
);
CREATE INDEX events_by_kind ON events (kind, run_id);
"#,
    r#"
CREATE TABLE operators (
    name            TEXT PRIMARY KEY,
    person          TEXT NOT NULL,
    role            TEXT NOT NULL,
    os_user         TEXT UNIQUE,
    passphrase_hash TEXT NOT NULL,
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL
);
CREATE TABLE leases (
    run_id        TEXT PRIMARY KEY,
    pid           INTEGER NOT NULL,
    process_start TEXT NOT NULL,
    host          TEXT NOT NULL,
    acquired_at   TEXT NOT NULL,
    renewed_at    TEXT NOT NULL
);
"#,
    // Schedules and notifications. A slot is claimed once: the row's key is what makes a
    // second claim (another daemon, or this one after a restart) fail. The outbox row is the
    // delivery state of a notification whose queuing and delivery are chained events.
    r#"
CREATE TABLE slot_claims (
    schedule   TEXT NOT NULL,
    slot       TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    PRIMARY KEY (schedule, slot)
);
CREATE TABLE outbox (
    id            TEXT PRIMARY KEY,
    channel       TEXT NOT NULL,
    topic         TEXT NOT NULL,
    payload       TEXT NOT NULL,
    queued_at     TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_try_at   TEXT NOT NULL,
    claimed_until TEXT,
    delivered_at  TEXT,
    last_error    TEXT
);
CREATE INDEX outbox_pending ON outbox (delivered_at, next_try_at);
CREATE INDEX outbox_key ON outbox (json_extract(payload, '$.fields.key'));
"#,
];

/// One stored event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: i64,
    pub run_id: String,
    pub run_seq: i64,
    pub at: String,
    pub kind: String,
    pub step: Option<String>,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredEvent {
    pub fn event(&self) -> Result<Event> {
        serde_json::from_str(&self.body).map_err(|e| Error::UnreadableEvent {
            seq: self.seq,
            kind: self.kind.clone(),
            problem: e.to_string(),
        })
    }
}

pub struct Journal {
    pub(super) conn: Connection,
    path: PathBuf,
}

impl Journal {
    /// Opens (creating it and its folder when needed) and migrates the journal at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::JournalFolder {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        let fail = |e: rusqlite::Error| Error::journal(path, e);
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(15)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;
        conn.set_prepared_statement_cache_capacity(32);
        let mut journal = Self {
            conn,
            path: path.to_path_buf(),
        };
        journal.migrate()?;
        Ok(journal)
    }

    /// Opens an existing journal for reading only: a mistyped path is refused instead of
    /// creating an empty journal, nothing is written (no migration), and a journal in a
    /// folder the reader cannot write (an auditor's copy) is read as immutable.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::NoJournal {
                path: path.to_path_buf(),
            });
        }
        let fail = |e: rusqlite::Error| Error::journal(path, e);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let readable = |conn: &Connection| {
            conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        };
        let conn = match Connection::open_with_flags(path, flags) {
            Ok(conn) if readable(&conn).is_ok() => conn,
            _ => {
                // WAL needs its shared-memory file; without the right to create it, read
                // the file as it is on disk.
                let uri = format!("file:{}?immutable=1", uri_path(path));
                let conn = Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
                    .map_err(fail)?;
                readable(&conn).map_err(fail)?;
                conn
            }
        };
        conn.busy_timeout(Duration::from_secs(15)).map_err(fail)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A database error of this journal, with its path.
    pub(crate) fn error(&self, e: rusqlite::Error) -> Error {
        Error::journal(&self.path, e)
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let sql = |e: rusqlite::Error| Error::journal(&path, e);
        // Up to date (the common case): nothing to write, so no commit to pay for.
        let current: usize = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if current == MIGRATIONS.len() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let applied: usize = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if applied > MIGRATIONS.len() {
            return Err(Error::JournalTooNew {
                path: self.path.clone(),
                version: applied,
                known: MIGRATIONS.len(),
            });
        }
        for migration in &MIGRATIONS[applied..] {
            tx.execute_batch(migration).map_err(sql)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len())
            .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Appends `event` to run `run_id` in its own durable transaction and returns it as stored.
    pub fn append(&mut self, run_id: &str, event: &Event) -> Result<StoredEvent> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| append_error(&path, e))?;
        let stored = append_in(&tx, run_id, event).map_err(|e| append_error(&path, e))?;
        tx.commit().map_err(|e| append_error(&path, e))?;
        Ok(stored)
    }

    /// Appends events that happen at the same instant (an attempt's end and its step's end)
    /// in one durable transaction: all of them are on disk before the engine moves on.
    pub fn append_all(&mut self, run_id: &str, events: &[Event]) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| append_error(&path, e))?;
        for event in events {
            append_in(&tx, run_id, event).map_err(|e| append_error(&path, e))?;
        }
        tx.commit().map_err(|e| append_error(&path, e))
    }

    /// Reads run `run_id`'s events and appends what `decide` returns, atomically: no other
    /// process can append in between, so a decision based on what was read stays valid (two
    /// people signing one gate at once: exactly one decision counts).
    pub fn append_checked<T>(
        &mut self,
        run_id: &str,
        decide: impl FnOnce(&[StoredEvent]) -> Result<(Vec<Event>, T)>,
    ) -> Result<T> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| append_error(&path, e))?;
        let events = query_events(
            &tx,
            "SELECT seq, run_id, run_seq, at, kind, step, body, prev_hash, hash
             FROM events WHERE run_id = ?1 ORDER BY seq",
            [run_id],
        )
        .map_err(|e| append_error(&path, e))?;
        let (new_events, answer) = decide(&events)?;
        for event in &new_events {
            append_in(&tx, run_id, event).map_err(|e| append_error(&path, e))?;
        }
        tx.commit().map_err(|e| append_error(&path, e))?;
        Ok(answer)
    }

    /// The connection, for reading the tables and events with a query of one's own.
    pub(crate) fn connection_ref(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for the tables that live beside the events (operators, leases).
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The events of one run, in order.
    pub fn run_events(&self, run_id: &str) -> Result<Vec<StoredEvent>> {
        self.query(
            "SELECT seq, run_id, run_seq, at, kind, step, body, prev_hash, hash
             FROM events WHERE run_id = ?1 ORDER BY seq",
            [run_id],
        )
    }

    /// Every event of the journal, in order.
    pub fn all_events(&self) -> Result<Vec<StoredEvent>> {
        self.query(
            "SELECT seq, run_id, run_seq, at, kind, step, body, prev_hash, hash
             FROM events ORDER BY seq",
            [],
        )
    }

    /// The events of one kind, in order (the operator directory's changes, for one).
    pub fn events_of_kind(&self, kind: &str) -> Result<Vec<StoredEvent>> {
        self.query(
            "SELECT seq, run_id, run_seq, at, kind, step, body, prev_hash, hash
             FROM events WHERE kind = ?1 ORDER BY seq",
            [kind],
        )
    }

    /// The run-level events (start, pause, finish) of every run, for listings.
    pub fn run_level_events(&self) -> Result<Vec<StoredEvent>> {
        self.query(
            "SELECT seq, run_id, run_seq, at, kind, step, body, prev_hash, hash
             FROM events WHERE kind IN ('run_started', 'run_paused', 'run_finished',
                                        'run_resumed', 'acceptance_decided')
             ORDER BY seq",
            [],
        )
    }

    /// Run ids that start with `prefix` (so a unique prefix of a ULID is enough).
    pub fn find_runs(&self, prefix: &str) -> Result<Vec<String>> {
        // Run ids are ULIDs: anything else names no run (and is never a pattern).
        let ulid_char = |c: char| c.is_ascii_digit() || c.is_ascii_uppercase();
        let prefix = prefix.to_uppercase();
        if prefix.is_empty() || !prefix.chars().all(ulid_char) {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT run_id FROM events
                 WHERE kind = 'run_started' AND substr(run_id, 1, length(?1)) = ?1",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([prefix], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.error(e))?;
        Ok(rows)
    }

    fn query(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<StoredEvent>> {
        query_events(&self.conn, sql, args).map_err(|e| self.error(e))
    }
}

/// A path as the path part of a `file:` URI: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// An event from the columns `seq, run_id, run_seq, at, kind, step, body, prev_hash, hash`.
pub(super) fn stored_event_of(r: &rusqlite::Row) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: r.get(0)?,
        run_id: r.get(1)?,
        run_seq: r.get(2)?,
        at: r.get(3)?,
        kind: r.get(4)?,
        step: r.get(5)?,
        body: r.get(6)?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

fn append_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::journal(path, e)
}

fn query_events(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, stored_event_of)?;
    rows.collect()
}

/// Appends one event inside the caller's (immediate) transaction.
pub(crate) fn append_in(
    tx: &Connection,
    run_id: &str,
    event: &Event,
) -> rusqlite::Result<StoredEvent> {
    let (last_seq, prev_hash): (i64, String) = tx
        .prepare_cached("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS_HASH.to_string()));
    let run_seq: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(run_seq), 0) FROM events WHERE run_id = ?1")?
        .query_row([run_id], |r| r.get::<_, i64>(0))?
        + 1;
    let mut stored = StoredEvent {
        seq: last_seq + 1,
        run_id: run_id.to_string(),
        run_seq,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        kind: event.kind().to_string(),
        step: event.step().map(str::to_string),
        body: event.canonical_json(),
        prev_hash,
        hash: String::new(),
    };
    stored.hash = event_hash(&stored);
    tx.prepare_cached(
        "INSERT INTO events (seq, run_id, run_seq, at, kind, step, body, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        stored.seq,
        stored.run_id,
        stored.run_seq,
        stored.at,
        stored.kind,
        stored.step,
        stored.body,
        stored.prev_hash,
        stored.hash
    ])?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::chain::verify_chain;
    use crate::journal::event::Event;

    fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("deep/er/j.db")).unwrap();
        (dir, journal)
    }

    fn note(text: &str) -> Event {
        Event::AbortRequested { by: text.into() }
    }

    #[test]
    fn appends_chain_and_verify() {
        let (_dir, mut j) = journal();
        j.append("R1", &note("a")).unwrap();
        j.append("R2", &note("b")).unwrap();
        let third = j.append("R1", &note("c")).unwrap();
        assert_eq!((third.seq, third.run_seq), (3, 2));
        let all = j.all_events().unwrap();
        assert_eq!(all[1].prev_hash, all[0].hash);
        assert_eq!(verify_chain(&all), None);
        assert_eq!(j.run_events("R1").unwrap().len(), 2);
    }

    #[test]
    fn detects_edit_removal_and_reorder() {
        let (_dir, mut j) = journal();
        for t in ["a", "b", "c", "d"] {
            j.append("R", &note(t)).unwrap();
        }
        let all = j.all_events().unwrap();

        let mut edited = all.clone();
        edited[1].body = edited[1].body.replace("\"b\"", "\"x\"");
        assert_eq!(verify_chain(&edited).unwrap().seq, 2);

        let mut removed = all.clone();
        removed.remove(2);
        assert_eq!(verify_chain(&removed).unwrap().seq, 3);

        let mut swapped = all.clone();
        swapped.swap(1, 2);
        assert_eq!(verify_chain(&swapped).unwrap().seq, 2);
    }

    #[test]
    fn reopening_keeps_schema_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        Journal::open(&path)
            .unwrap()
            .append("R", &note("a"))
            .unwrap();
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.all_events().unwrap().len(), 1);
    }
}
