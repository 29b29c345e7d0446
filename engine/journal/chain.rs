//! The hash chain: each event's hash over the previous hash and its canonical bytes (the
//! formula is in the journal's module documentation), and recomputing it to find the first
//! edited, removed or reordered event.

use rusqlite::OptionalExtension;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::journal::store::{stored_event_of, Journal, StoredEvent};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of an event, as described in the module documentation.
pub fn event_hash(e: &StoredEvent) -> String {
    let mut hasher = Sha256::new();
    hasher.update(e.prev_hash.as_bytes());
    for field in [
        e.seq.to_string().as_str(),
        e.run_id.as_str(),
        e.run_seq.to_string().as_str(),
        e.at.as_str(),
        e.kind.as_str(),
        e.step.as_deref().unwrap_or(""),
        e.body.as_str(),
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    pub seq: i64,
    /// The run whose event it is, when that is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    pub problem: String,
}

/// The result of recomputing the chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainStatus {
    pub intact: bool,
    pub first_break: Option<ChainBreak>,
    /// The hash of the last event, and how many events there are.
    pub head: String,
    pub events: i64,
}

/// Checks events one by one, in `seq` order from the first event of the journal.
pub struct ChainChecker {
    expected_prev: String,
    expected_seq: i64,
}

impl Default for ChainChecker {
    fn default() -> Self {
        Self {
            expected_prev: GENESIS_HASH.to_string(),
            expected_seq: 1,
        }
    }
}

impl ChainChecker {
    pub fn check(&mut self, e: &StoredEvent) -> Option<ChainBreak> {
        let seq = self.expected_seq;
        if e.seq != seq {
            return Some(ChainBreak {
                seq,
                run: None,
                problem: format!(
                    "event {seq} is missing (the next stored event is {})",
                    e.seq
                ),
            });
        }
        if e.prev_hash != self.expected_prev {
            return Some(ChainBreak {
                seq,
                run: Some(e.run_id.clone()),
                problem: "its prev_hash is not the hash of the event before it (an event was removed, reordered or rewritten)".into(),
            });
        }
        if event_hash(e) != e.hash {
            return Some(ChainBreak {
                seq,
                run: Some(e.run_id.clone()),
                problem: "its content does not match its hash (the event was edited)".into(),
            });
        }
        self.expected_prev.clone_from(&e.hash);
        self.expected_seq += 1;
        None
    }
}

/// Recomputes the chain over `events` and returns the first break (the unit tests check
/// stored events with it; the journal streams them through `ChainChecker`).
#[cfg(test)]
pub fn verify_chain(events: &[StoredEvent]) -> Option<ChainBreak> {
    let mut checker = ChainChecker::default();
    events.iter().find_map(|e| checker.check(e))
}

impl Journal {
    /// Recomputes the whole chain, streaming the events.
    pub fn verify(&self) -> Result<ChainStatus> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, run_id, run_seq, at, kind, step, body, prev_hash, hash FROM events ORDER BY seq")
            .map_err(|e| self.error(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.error(e))?;
        let mut checker = ChainChecker::default();
        let mut status = ChainStatus {
            intact: true,
            first_break: None,
            head: GENESIS_HASH.to_string(),
            events: 0,
        };
        while let Some(r) = rows.next().map_err(|e| self.error(e))? {
            let event = match stored_event_of(r) {
                Ok(event) => event,
                Err(e) => {
                    // A value of the wrong type where an event's column should be: the row
                    // was written by something other than opsbook.
                    let seq = r.get::<_, i64>(0).unwrap_or(status.events + 1);
                    if status.first_break.is_none() {
                        status.intact = false;
                        status.first_break = Some(ChainBreak {
                            seq,
                            run: r.get::<_, String>(1).ok(),
                            problem: format!(
                                "its stored values cannot be read ({e}): it was written outside opsbook"
                            ),
                        });
                    }
                    status.events += 1;
                    continue;
                }
            };
            if status.first_break.is_none() {
                if let Some(b) = checker.check(&event) {
                    status.intact = false;
                    status.first_break = Some(b);
                }
            }
            status.events += 1;
            status.head = event.hash;
        }
        Ok(status)
    }

    /// The seq of the event with this hash, if there is one.
    pub fn seq_of_hash(&self, hash: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT seq FROM events WHERE hash = ?1",
                [hash.to_lowercase()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))
    }
}

/// What `audit verify` says: intact or not, over what, and where it first breaks.
#[derive(Debug, Clone, Serialize)]
pub struct AuditVerdict {
    pub intact: bool,
    /// "the journal", or "run ID".
    pub scope: String,
    pub events: i64,
    pub head: String,
    pub first_break: Option<ChainBreak>,
}

/// Recomputes the whole chain and judges it for the journal or for one run: a run is
/// broken by a break at or before its last event, or by a gap in its own event numbers. A
/// head recorded earlier (`expect_head`, already checked to be 64 hex digits) must still be
/// in the journal, else it was rewritten and re-chained, or cut short, since.
pub fn audit(
    journal: &Journal,
    run_id: Option<&str>,
    expect_head: Option<&str>,
) -> Result<AuditVerdict> {
    let status = journal.verify()?;
    let mut first_break = status.first_break.clone();
    let mut events = status.events;
    if let Some(id) = run_id {
        let own = journal.run_events(id)?;
        events = own.len() as i64;
        // A break after this run's last event does not touch it.
        let last = own.last().map(|e| e.seq).unwrap_or(0);
        first_break = first_break.filter(|b| b.seq <= last).map(|b| match &b.run {
            // Another run's event: this run's own events may be intact, but the chain that
            // vouches for their order and completeness is broken before its end.
            Some(other) if other != id => ChainBreak {
                problem: format!(
                    "event {} belongs to run {other}, not this one: {}; this run's own events follow it in the chain, which no longer vouches for them",
                    b.seq, b.problem
                ),
                ..b
            },
            _ => b,
        });
        if first_break.is_none() {
            if let Some((expected, e)) = (1..).zip(&own).find(|(n, e)| e.run_seq != *n) {
                first_break = Some(ChainBreak {
                    seq: e.seq,
                    run: Some(id.to_string()),
                    problem: format!(
                        "the run's event {expected} is missing (found its event {} here)",
                        e.run_seq
                    ),
                });
            }
        }
    }
    // The head of an empty journal is the genesis hash, which every journal starts from.
    let recorded_empty = expect_head.is_some_and(|h| h == GENESIS_HASH);
    if let (None, Some(head), false) = (&first_break, expect_head, recorded_empty) {
        if journal.seq_of_hash(head)?.is_none() {
            first_break = Some(ChainBreak {
                seq: 0,
                run: None,
                problem: format!(
                    "the recorded head {head} is not in the journal: it was rewritten and re-chained, or cut short, after that head was recorded"
                ),
            });
        }
    }
    Ok(AuditVerdict {
        intact: first_break.is_none(),
        scope: run_id
            .map(|r| format!("run {r}"))
            .unwrap_or_else(|| "the journal".into()),
        events,
        head: status.head,
        first_break,
    })
}
