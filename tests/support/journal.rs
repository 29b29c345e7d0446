//! The journal read straight from SQLite, not through the engine: its events, the hash chain
//! recomputed from the documented algorithm, and waiting for an event to be written.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Workspace;

/// One row of the journal's `events` table, read directly.
#[derive(Debug, Clone)]
pub struct JournalEvent {
    pub seq: i64,
    pub run_id: String,
    pub run_seq: i64,
    pub at: String,
    pub kind: String,
    pub step: Option<String>,
    /// The stored JSON text, byte for byte.
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Every event of the workspace's journal, in `seq` order.
pub fn journal_events(ws: &Workspace) -> Vec<JournalEvent> {
    let conn = ws.journal();
    let mut stmt = conn
        .prepare(
            "SELECT seq, run_id, run_seq, at, kind, step, body, prev_hash, hash
             FROM events ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(JournalEvent {
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
    })
    .unwrap()
    .collect::<rusqlite::Result<Vec<_>>>()
    .unwrap()
}

/// The hash an event must have, recomputed here from the documented algorithm (not from the
/// engine's code): SHA-256 over the previous hash (hex) and each field as its length (8 bytes,
/// big-endian) and its UTF-8 bytes, integers in decimal.
pub fn expected_hash(e: &JournalEvent) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(e.prev_hash.as_bytes());
    for field in [
        e.seq.to_string().as_str(),
        &e.run_id,
        e.run_seq.to_string().as_str(),
        &e.at,
        &e.kind,
        e.step.as_deref().unwrap_or(""),
        &e.body,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The chain recomputed from the stored columns: the seq of the first event that breaks it.
pub fn first_break(events: &[Event]) -> Option<i64> {
    let mut prev = "0".repeat(64);
    for (expected_seq, e) in (1..).zip(events) {
        if e.seq != expected_seq || e.raw.prev_hash != prev {
            return Some(expected_seq);
        }
        let hash = expected_hash(&e.raw);
        if hash != e.raw.hash {
            return Some(e.seq);
        }
        prev = hash;
    }
    None
}

/// One journaled event with its body parsed.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: i64,
    pub run_id: String,
    pub run_seq: i64,
    pub at: String,
    pub kind: String,
    pub step: Option<String>,
    pub body: Value,
    /// The row as stored, for recomputing its hash.
    pub raw: JournalEvent,
}

impl Event {
    fn parse(raw: JournalEvent) -> Self {
        Event {
            seq: raw.seq,
            run_id: raw.run_id.clone(),
            run_seq: raw.run_seq,
            at: raw.at.clone(),
            kind: raw.kind.clone(),
            step: raw.step.clone(),
            body: serde_json::from_str(&raw.body).unwrap_or(Value::Null),
            raw,
        }
    }

    /// When it was written.
    #[track_caller]
    pub fn at(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339(&self.at)
            .unwrap_or_else(|e| panic!("event {} has a bad timestamp {:?}: {e}", self.seq, self.at))
    }
}

/// Every event of the journal, in `seq` order.
pub fn all_events(ws: &Workspace) -> Vec<Event> {
    journal_events(ws).into_iter().map(Event::parse).collect()
}

/// The events of one run, in journal order.
pub fn events(ws: &Workspace, run_id: &str) -> Vec<Event> {
    all_events(ws)
        .into_iter()
        .filter(|e| e.run_id == run_id)
        .collect()
}

pub fn of_kind<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind == kind).collect()
}

pub fn of_step<'a>(events: &'a [Event], kind: &str, step: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.kind == kind && e.step.as_deref() == Some(step))
        .collect()
}

/// The one event of `kind` for `step`.
#[track_caller]
pub fn one<'a>(events: &'a [Event], kind: &str, step: &str) -> &'a Event {
    let found = of_step(events, kind, step);
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} for step {step}, got {found:#?}\nall events: {:#?}",
        kinds(events)
    );
    found[0]
}

/// `kind step` of each event, for assertion messages.
pub fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {}", e.kind, e.step.as_deref().unwrap_or("")))
        .collect()
}

/// The steps started, in order.
pub fn started_steps(events: &[Event]) -> Vec<String> {
    of_kind(events, "step_started")
        .iter()
        .filter_map(|e| e.step.clone())
        .collect()
}

/// How many events of `kind` the run has.
pub fn count(ws: &Workspace, run_id: &str, kind: &str) -> usize {
    of_kind(&events(ws, run_id), kind).len()
}

/// How many events the journal holds (0 when nothing ever opened it).
pub fn event_count(ws: &Workspace) -> i64 {
    if !ws.db().exists() {
        return 0;
    }
    let db = ws.journal();
    let has_table: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if has_table == 0 {
        return 0;
    }
    db.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

/// Waits (up to 15 s) until an event of `kind` for `step` is in the journal (the run's id need
/// not be known yet); returns its run id.
#[track_caller]
pub fn wait_for_event(ws: &Workspace, kind: &str, step: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if ws.db().exists() {
            let found: Option<String> = rusqlite::Connection::open(ws.db())
                .and_then(|conn| {
                    conn.busy_timeout(Duration::from_secs(5))?;
                    conn.query_row(
                        "SELECT run_id FROM events WHERE kind = ?1 AND step = ?2 LIMIT 1",
                        [kind, step],
                        |r| r.get(0),
                    )
                })
                .ok();
            if let Some(run_id) = found {
                return run_id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} event for step {step} within 15s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the run's `run_seq` values are 1, 2, 3, ... without gaps or repeats.
#[track_caller]
pub fn assert_contiguous(ws: &Workspace, run_id: &str) {
    let seqs: Vec<i64> = events(ws, run_id).iter().map(|e| e.run_seq).collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "run_seq of run {run_id} is not contiguous");
}

/// The bytes of every journal file: the database, and its -wal and -shm files if present.
#[track_caller]
pub fn journal_bytes(ws: &Workspace) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(ws.path()).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("opsbook.db")
        {
            bytes.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    assert!(!bytes.is_empty(), "no journal files in {:?}", ws.path());
    bytes
}
