//! The journal's record of slots: a slot is claimed once (its row in `slot_claims` is the
//! key a second claim fails on, whoever makes it), and gets a chained `slot_decided` event in
//! the log `schedules` saying what became of it and why.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::error::Result;
use crate::journal::event::{Event, SlotDecision};
use crate::journal::{append_in, Journal};
use crate::schedule::instant;

/// The log schedule decisions are chained in.
pub const SCHEDULES_LOG: &str = "schedules";

/// Claims `slot` of `schedule` for starting, as `claimer` (the claiming daemon's lease):
/// false when it was claimed already.
pub fn claim(
    journal: &mut Journal,
    claimer: &str,
    schedule: &str,
    slot: DateTime<Utc>,
) -> Result<bool> {
    let path = journal.path().to_path_buf();
    insert_claim(journal.connection(), claimer, schedule, slot)
        .map_err(|e| crate::error::Error::journal(&path, e))
}

/// Inserts the claim row: false when the slot had one.
fn insert_claim(
    conn: &rusqlite::Connection,
    claimer: &str,
    schedule: &str,
    slot: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO slot_claims (schedule, slot, claimed_at, claimed_by)
         VALUES (?1, ?2, ?3, ?4)",
        params![schedule, instant(slot), instant(Utc::now()), claimer],
    )?;
    Ok(inserted == 1)
}

/// Claims `slot` and journals `decision` on it, atomically: false (and nothing written) when
/// the slot was claimed already.
pub fn claim_and_decide(
    journal: &mut Journal,
    claimer: &str,
    schedule: &str,
    slot: DateTime<Utc>,
    decision: SlotDecision,
    reason: &str,
) -> Result<bool> {
    let path = journal.path().to_path_buf();
    let fail = |e| crate::error::Error::journal(&path, e);
    let conn = journal.connection();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    if !insert_claim(&tx, claimer, schedule, slot).map_err(fail)? {
        return Ok(false);
    }
    append_in(
        &tx,
        SCHEDULES_LOG,
        &Event::SlotDecided {
            schedule: schedule.to_string(),
            slot: instant(slot),
            decision,
            reason: reason.to_string(),
            run: None,
        },
    )
    .map_err(fail)?;
    tx.commit().map_err(fail)?;
    Ok(true)
}

/// Journals a decision on a slot claimed before.
pub fn decide(
    journal: &mut Journal,
    schedule: &str,
    slot: DateTime<Utc>,
    decision: SlotDecision,
    reason: &str,
    run: Option<String>,
) -> Result<()> {
    journal.append(
        SCHEDULES_LOG,
        &Event::SlotDecided {
            schedule: schedule.to_string(),
            slot: instant(slot),
            decision,
            reason: reason.to_string(),
            run,
        },
    )?;
    Ok(())
}

/// The latest slot of `schedule` that was claimed, if any.
pub fn last_claimed(journal: &Journal, schedule: &str) -> Result<Option<DateTime<Utc>>> {
    let slot: Option<String> = journal
        .connection_ref()
        .query_row(
            "SELECT MAX(slot) FROM slot_claims WHERE schedule = ?1",
            [schedule],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| journal.error(e))?
        .flatten();
    Ok(slot.and_then(|s| parse_instant(&s)))
}

/// One journaled decision on a slot.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    pub schedule: String,
    pub slot: String,
    pub decision: SlotDecision,
    pub reason: String,
    pub run: Option<String>,
    /// When it was decided.
    pub at: String,
}

/// Every decision, oldest first.
pub fn decisions(journal: &Journal) -> Result<Vec<Decided>> {
    let mut out = Vec::new();
    for stored in journal.run_events(SCHEDULES_LOG)? {
        if let Event::SlotDecided {
            schedule,
            slot,
            decision,
            reason,
            run,
        } = stored.event()?
        {
            out.push(Decided {
                schedule,
                slot,
                decision,
                reason,
                run,
                at: stored.at,
            });
        }
    }
    Ok(out)
}

/// Journals a decision on a claimed slot unless one was journaled already (two daemons
/// reconciling the same claim): false when there was one.
pub fn decide_once(
    journal: &mut Journal,
    schedule: &str,
    slot: &str,
    decision: SlotDecision,
    reason: &str,
    run: Option<String>,
) -> Result<bool> {
    let path = journal.path().to_path_buf();
    let fail = |e| crate::error::Error::journal(&path, e);
    let tx = journal
        .connection()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    let decided: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM events WHERE run_id = ?1 AND kind = 'slot_decided'
                AND json_extract(body, '$.schedule') = ?2 AND json_extract(body, '$.slot') = ?3)",
            params![SCHEDULES_LOG, schedule, slot],
            |r| r.get(0),
        )
        .map_err(fail)?;
    if decided {
        return Ok(false);
    }
    append_in(
        &tx,
        SCHEDULES_LOG,
        &Event::SlotDecided {
            schedule: schedule.to_string(),
            slot: slot.to_string(),
            decision,
            reason: reason.to_string(),
            run,
        },
    )
    .map_err(fail)?;
    tx.commit().map_err(fail)?;
    Ok(true)
}

/// A claimed slot with no decision yet.
pub struct Undecided {
    pub schedule: String,
    pub slot: String,
    /// The lease of the daemon that claimed it.
    pub claimed_by: String,
    /// The run started for it, if one was.
    pub run: Option<String>,
}

/// Claimed slots with no decision yet (a daemon stopped between claiming a slot and
/// starting its run, or one that is starting it now), and the run started for each.
pub fn undecided_claims(journal: &Journal) -> Result<Vec<Undecided>> {
    let mut statement = journal
        .connection_ref()
        .prepare(
            "SELECT c.schedule, c.slot, c.claimed_by,
                    (SELECT r.run_id FROM events r WHERE r.kind = 'run_started'
                       AND json_extract(r.body, '$.slot.schedule') = c.schedule
                       AND json_extract(r.body, '$.slot.slot') = c.slot LIMIT 1)
             FROM slot_claims c
             WHERE NOT EXISTS (SELECT 1 FROM events d WHERE d.run_id = ?1
                                 AND d.kind = 'slot_decided'
                                 AND json_extract(d.body, '$.schedule') = c.schedule
                                 AND json_extract(d.body, '$.slot') = c.slot)
             ORDER BY c.slot",
        )
        .map_err(|e| journal.error(e))?;
    let rows = statement
        .query_map([SCHEDULES_LOG], |r| {
            Ok(Undecided {
                schedule: r.get(0)?,
                slot: r.get(1)?,
                claimed_by: r.get(2)?,
                run: r.get(3)?,
            })
        })
        .map_err(|e| journal.error(e))?;
    rows.collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| journal.error(e))
}

/// The runs started for schedules that have not finished (driven, parked or interrupted),
/// oldest first: (run id, schedule). Finished runs are not read at all, so the cost follows
/// what is open, not the schedule's history.
pub fn unfinished_scheduled_runs(journal: &Journal) -> Result<Vec<(String, String)>> {
    let mut statement = journal
        .connection_ref()
        .prepare_cached(
            "SELECT s.run_id, json_extract(s.body, '$.slot.schedule')
             FROM events s
             WHERE s.kind = 'run_started'
               AND json_extract(s.body, '$.slot.schedule') IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM events f
                               WHERE f.kind = 'run_finished' AND f.run_id = s.run_id)
             ORDER BY s.seq",
        )
        .map_err(|e| journal.error(e))?;
    let rows = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| journal.error(e))?;
    rows.collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| journal.error(e))
}

pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
