//! The durable outbox: every notification is written to the journal before anything tries to
//! deliver it, and every try is journaled after it ends.
//!
//! [`queue`] writes, for each channel the routes choose, an `outbox` row and a chained
//! `notification_queued` event (log `outbox`, its payload the very document the channel will
//! receive) in one transaction. [`deliver_due`] claims the rows that are due, delivers each
//! outside any transaction (a slow receiver never holds the journal), and records each
//! outcome in its own transaction: `notification_delivered`, or `notification_failed` and a
//! next try after an exponential backoff (1 s, 2 s, 4 s, … capped at the channel's
//! `max_backoff`).
//!
//! What is promised, honestly: a queued notification is never dropped. It stays in the outbox
//! until a channel accepts it, including when its channel is no longer configured (then it
//! waits, saying so, for the channel to come back). Delivery is **at least once**, not exactly
//! once: a process killed after a channel accepted a notification and before the journal
//! recorded it delivers it again once its claim expires, and so may a delivery that outlives
//! its claim. Each channel receives the notification's id (the document's `id`, the webhook's
//! `Idempotency-Key` header, a command's `OPSBOOK_NOTIFICATION_ID`) so that a receiver can
//! drop the duplicate. Claims make two processes running [`deliver_due`] at once take
//! different rows, so outside a crash a row is delivered once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::journal::event::Event;
use crate::journal::{append_in, Journal};
use crate::notify::channel::{Channel, Channels, DEFAULT_MAX_BACKOFF};
use crate::notify::route::Routes;
use crate::printable::escape_line;

/// The journal log (run id) the outbox's events are appended to.
pub const OUTBOX_LOG: &str = "outbox";
/// A round tries at most this many rows...
const MAX_ROUND_ROWS: usize = 100;
/// ...and claims no more than this much delivery time (the sum of the channels' timeouts), so
/// that the claims of a process that dies mid-round expire soon enough.
const MAX_ROUND_BUDGET: Duration = Duration::from_secs(300);
/// How much longer than its delivery a claim lasts, for recording the outcome.
const CLAIM_SLACK: Duration = Duration::from_secs(5);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
/// What is kept of a failed try's error.
const MAX_ERROR_CHARS: usize = 1000;

/// Something worth telling people.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// What happened, as a fixed word: `run-parked`, `slot-decided`.
    pub topic: String,
    /// One line for people.
    pub summary: String,
    /// What routes match on: runbook, run, schedule, step, priority, service, …
    pub fields: BTreeMap<String, String>,
    pub details: Value,
}

/// One notification for one channel, as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEntry {
    pub id: String,
    pub channel: String,
    pub topic: String,
    pub summary: String,
    pub queued_at: String,
    /// Tries made so far, the successful one included.
    pub attempts: u32,
    /// When it is tried next; None once delivered.
    pub next_try_at: Option<String>,
    pub delivered_at: Option<String>,
    /// Why the latest failed try failed (kept after a later success).
    pub last_error: Option<String>,
}

/// What one [`deliver_due`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub delivered: usize,
    pub failed: usize,
    /// Due rows left waiting because their channel is not configured (not a try).
    pub unconfigured: usize,
    /// When the next pending notification of a configured channel is due (in the past when
    /// this round left due rows for the next one).
    pub next_due: Option<DateTime<Utc>>,
}

/// Queues `notification` for every channel the routes choose: one transaction writes, for
/// each, its outbox row (due at once) and a `notification_queued` event in log `outbox` whose
/// payload is the [`document`] the channel will receive. Returns the ids (ULIDs), one per
/// channel, in route order; none when the routes choose no channel. Nothing is delivered here.
pub fn queue(
    journal: &mut Journal,
    notification: &Notification,
    routes: &Routes,
    channels: &Channels,
) -> Result<Vec<String>> {
    let targets = routes.channels_for(notification, channels);
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let path = journal.path().to_path_buf();
    let sql = |e| Error::journal(&path, e);
    let now = Utc::now();
    let at = timestamp(now);
    // Monotonic, so the ids of one notification sort in route order.
    let mut ids = ulid::Generator::new();
    let tx = journal
        .connection()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let mut queued = Vec::with_capacity(targets.len());
    for channel in targets {
        let id = ids
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
            .to_string();
        let document = document(&id, notification, now);
        tx.execute(
            "INSERT INTO outbox (id, channel, topic, payload, queued_at, next_try_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![id, channel, notification.topic, document.to_string(), at],
        )
        .map_err(sql)?;
        let event = Event::NotificationQueued {
            id: id.clone(),
            channel,
            topic: notification.topic.clone(),
            payload: document,
        };
        append_in(&tx, OUTBOX_LOG, &event).map_err(sql)?;
        queued.push(id);
    }
    tx.commit().map_err(sql)?;
    Ok(queued)
}

/// The document a channel receives: `{"id", "topic", "summary", "at" (RFC 3339 UTC, when it
/// was queued), "fields": {...}, "details": ...}`.
pub fn document(id: &str, notification: &Notification, at: DateTime<Utc>) -> Value {
    let fields: Map<String, Value> = notification
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut document = Map::new();
    document.insert("id".into(), Value::String(id.to_string()));
    document.insert("topic".into(), Value::String(notification.topic.clone()));
    document.insert(
        "summary".into(),
        Value::String(notification.summary.clone()),
    );
    document.insert("at".into(), Value::String(timestamp(at)));
    document.insert("fields".into(), Value::Object(fields));
    document.insert("details".into(), notification.details.clone());
    Value::Object(document)
}

/// The outbox, oldest first; only what is not delivered yet when `pending_only`.
pub fn list(journal: &mut Journal, pending_only: bool) -> Result<Vec<OutboxEntry>> {
    let path = journal.path().to_path_buf();
    let sql = |e| Error::journal(&path, e);
    let conn = journal.connection();
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, channel, topic, payload, queued_at, attempts, next_try_at, delivered_at,
                    last_error
             FROM outbox WHERE ?1 = 0 OR delivered_at IS NULL
             ORDER BY queued_at, id",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([pending_only], |r| {
            let payload: String = r.get(3)?;
            let delivered_at: Option<String> = r.get(7)?;
            Ok(OutboxEntry {
                id: r.get(0)?,
                channel: r.get(1)?,
                topic: r.get(2)?,
                summary: summary_of(&payload),
                queued_at: r.get(4)?,
                attempts: r.get(5)?,
                next_try_at: if delivered_at.is_some() {
                    None
                } else {
                    Some(r.get(6)?)
                },
                delivered_at,
                last_error: r.get(8)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(sql)?;
    Ok(rows)
}

fn summary_of(payload: &str) -> String {
    serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|d| d.get("summary").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

/// Delivers every notification that is due at `now` (at most 100 in one round): claims the
/// due rows in one transaction, so that a second process running `deliver_due` at once takes
/// none of them and the claims of one that dies expire; delivers each, one after another,
/// outside any transaction; records each outcome in its own transaction (delivered: the time
/// and a `notification_delivered` event; failed: the error, the next try after the backoff,
/// and a `notification_failed` event). A row whose channel is not configured stays pending
/// with the error "channel X is not configured" and is looked at again 30 s later.
///
/// `now` is when the round starts; the times it records move on from it with the clock.
pub fn deliver_due(
    journal: &mut Journal,
    channels: &Channels,
    now: DateTime<Utc>,
) -> Result<Round> {
    let started = Instant::now();
    let mut round = Round::default();
    for claim in claim_due(journal, channels, now, &mut round)? {
        // Only rows of configured channels are claimed.
        let Some(channel) = channels.get(&claim.channel) else {
            continue;
        };
        let outcome = match serde_json::from_str::<Value>(&claim.payload) {
            Ok(document) => channel.deliver(&claim.id, &document),
            Err(e) => Err(format!("the stored notification is not JSON: {e}")),
        };
        match &outcome {
            Ok(()) => round.delivered += 1,
            Err(_) => round.failed += 1,
        }
        let at = after(now, started.elapsed());
        record(journal, &claim, channel, outcome, at)?;
    }
    round.next_due = next_due(journal, channels)?;
    Ok(round)
}

/// A row this process is delivering.
struct Claim {
    id: String,
    channel: String,
    payload: String,
    /// Until when the row is this process's; also what tells the claim apart from a later one.
    claimed_until: String,
}

fn claim_due(
    journal: &mut Journal,
    channels: &Channels,
    now: DateTime<Utc>,
    round: &mut Round,
) -> Result<Vec<Claim>> {
    let path = journal.path().to_path_buf();
    let sql = |e| Error::journal(&path, e);
    let stamp = timestamp(now);
    let tx = journal
        .connection()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let due: Vec<(String, String, String)> = tx
        .prepare_cached(
            "SELECT id, channel, payload FROM outbox
             WHERE delivered_at IS NULL AND next_try_at <= ?1
               AND (claimed_until IS NULL OR claimed_until <= ?1)
             ORDER BY next_try_at, id LIMIT ?2",
        )
        .and_then(|mut stmt| {
            let rows = stmt
                .query_map(params![stamp, MAX_ROUND_ROWS as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>();
            rows
        })
        .map_err(sql)?;
    // Deliveries run one after another, so a row's claim covers the deliveries before it.
    let mut budget = Duration::ZERO;
    let mut claims = Vec::new();
    for (id, channel, payload) in due {
        let Some(configured) = channels.get(&channel) else {
            let error = format!("channel {} is not configured", escape_line(&channel));
            tx.execute(
                "UPDATE outbox SET last_error = ?2, next_try_at = ?3 WHERE id = ?1",
                params![id, error, timestamp(after(now, DEFAULT_MAX_BACKOFF))],
            )
            .map_err(sql)?;
            round.unconfigured += 1;
            continue;
        };
        let cost = configured.timeout + CLAIM_SLACK;
        if !claims.is_empty() && budget + cost > MAX_ROUND_BUDGET {
            continue; // the next round takes it
        }
        budget += cost;
        let claimed_until = timestamp(after(now, budget));
        tx.execute(
            "UPDATE outbox SET claimed_until = ?2 WHERE id = ?1",
            params![id, claimed_until],
        )
        .map_err(sql)?;
        claims.push(Claim {
            id,
            channel,
            payload,
            claimed_until,
        });
    }
    tx.commit().map_err(sql)?;
    Ok(claims)
}

/// Records the outcome of one try, with its event, in one transaction.
fn record(
    journal: &mut Journal,
    claim: &Claim,
    channel: &Channel,
    outcome: std::result::Result<(), String>,
    at: DateTime<Utc>,
) -> Result<()> {
    let path = journal.path().to_path_buf();
    let sql = |e| Error::journal(&path, e);
    let tx = journal
        .connection()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let row: Option<(u32, Option<String>)> = tx
        .query_row(
            "SELECT attempts, delivered_at FROM outbox WHERE id = ?1",
            [&claim.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    // Already delivered: by another process that took the row after this claim expired.
    let Some((attempts, None)) = row else {
        return Ok(());
    };
    let attempt = attempts.saturating_add(1);
    let event = match outcome {
        Ok(()) => {
            tx.execute(
                "UPDATE outbox SET attempts = ?2, delivered_at = ?3, claimed_until = NULL
                 WHERE id = ?1",
                params![claim.id, attempt, timestamp(at)],
            )
            .map_err(sql)?;
            Event::NotificationDelivered {
                id: claim.id.clone(),
                channel: claim.channel.clone(),
                attempts: attempt,
            }
        }
        Err(error) => {
            let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
            let next_try_at = after(at, backoff(attempt, channel.max_backoff));
            // A claim taken by another process meanwhile stays that process's.
            tx.execute(
                "UPDATE outbox SET attempts = ?2, last_error = ?3, next_try_at = ?4,
                     claimed_until = CASE WHEN claimed_until = ?5 THEN NULL ELSE claimed_until END
                 WHERE id = ?1",
                params![
                    claim.id,
                    attempt,
                    error,
                    timestamp(next_try_at),
                    claim.claimed_until
                ],
            )
            .map_err(sql)?;
            Event::NotificationFailed {
                id: claim.id.clone(),
                channel: claim.channel.clone(),
                attempt,
                error,
            }
        }
    };
    append_in(&tx, OUTBOX_LOG, &event).map_err(sql)?;
    tx.commit().map_err(sql)
}

/// When the earliest pending row of a configured channel may be tried (a row claimed by
/// another process: when its claim ends).
fn next_due(journal: &mut Journal, channels: &Channels) -> Result<Option<DateTime<Utc>>> {
    let path = journal.path().to_path_buf();
    let sql = |e| Error::journal(&path, e);
    let by_channel: Vec<(String, String)> = journal
        .connection()
        .prepare_cached(
            "SELECT channel, MIN(MAX(next_try_at, COALESCE(claimed_until, next_try_at)))
             FROM outbox WHERE delivered_at IS NULL GROUP BY channel",
        )
        .and_then(|mut stmt| {
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>();
            rows
        })
        .map_err(sql)?;
    Ok(by_channel
        .into_iter()
        .filter(|(channel, _)| channels.get(channel).is_some())
        .filter_map(|(_, due)| DateTime::parse_from_rfc3339(&due).ok())
        .map(|due| due.with_timezone(&Utc))
        .min())
}

/// The wait after the `attempt`th failed try: 1 s, 2 s, 4 s, … capped at `max`.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(32);
    Duration::from_secs(1u64 << doublings).min(max)
}

/// How the outbox stores a time: RFC 3339 in UTC with microseconds, so that text order is
/// time order.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    // Waits here are at most a day (the config checks that); the cap at a year keeps the sum
    // well inside chrono's range and in four-digit years, whose text order is time order.
    let d = TimeDelta::from_std(d.min(YEAR)).unwrap_or(TimeDelta::zero());
    t.checked_add_signed(d).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::chain::verify_chain;
    use crate::notify::testing::{settings, Server};
    use std::path::Path;
    use std::sync::{Arc, Barrier};

    fn setup(yaml: &str, base: &Path) -> (Channels, Routes) {
        let settings = settings(yaml, base);
        let channels = Channels::from_settings(&settings).unwrap();
        let routes = Routes::from_settings(&settings, &channels).unwrap();
        (channels, routes)
    }

    fn notification(priority: &str) -> Notification {
        Notification {
            topic: "run-parked".into(),
            summary: "pg-vacuum waits for a sign-off at `gate`".into(),
            fields: [
                ("runbook".to_string(), "pg-vacuum".to_string()),
                ("priority".to_string(), priority.to_string()),
            ]
            .into(),
            details: serde_json::json!({"step": "gate", "waiting_for": ["supervisor"]}),
        }
    }

    fn events(journal: &Journal) -> Vec<String> {
        journal
            .run_events(OUTBOX_LOG)
            .unwrap()
            .iter()
            .map(|e| e.event().unwrap().canonical_json())
            .collect()
    }

    fn queued_event(entry: &OutboxEntry, n: &Notification) -> String {
        let at = DateTime::parse_from_rfc3339(&entry.queued_at)
            .unwrap()
            .with_timezone(&Utc);
        Event::NotificationQueued {
            id: entry.id.clone(),
            channel: entry.channel.clone(),
            topic: n.topic.clone(),
            payload: document(&entry.id, n, at),
        }
        .canonical_json()
    }

    /// Now, as precise as the outbox stores times.
    fn now() -> DateTime<Utc> {
        use chrono::SubsecRound;
        Utc::now().trunc_subsecs(6)
    }

    fn secs(s: f64) -> TimeDelta {
        TimeDelta::milliseconds((s * 1000.0) as i64)
    }

    #[test]
    fn a_webhook_that_fails_three_times_gets_the_notification_on_the_fourth_try() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(vec![
            (500, "down"),
            (500, "down"),
            (500, "down"),
            (200, "ok"),
        ]);
        let (channels, routes) = setup(
            &format!(
                "channels:\n  hook: {{ webhook: '{}', max_backoff: 3s }}\n",
                server.url("/in")
            ),
            dir.path(),
        );
        let mut journal = Journal::open(&dir.path().join("x.db")).unwrap();
        let n = notification("1");
        let ids = queue(&mut journal, &n, &routes, &channels).unwrap();
        assert_eq!(ids.len(), 1);
        let id = &ids[0];

        // Each failed try waits 1 s, 2 s, then 3 s (4 s capped by max_backoff).
        let mut now = now();
        for (try_no, wait) in [(1, 1.0), (2, 2.0), (3, 3.0)] {
            let round = deliver_due(&mut journal, &channels, now).unwrap();
            assert_eq!((round.delivered, round.failed), (0, 1), "try {try_no}");
            let due = round.next_due.unwrap();
            assert!(
                due >= now + secs(wait) && due < now + secs(wait + 2.0),
                "try {try_no}"
            );
            // Not due a moment before.
            let early = deliver_due(&mut journal, &channels, due - secs(0.001)).unwrap();
            assert_eq!(
                early,
                Round {
                    next_due: Some(due),
                    ..Round::default()
                }
            );
            now = due;
        }
        let last = deliver_due(&mut journal, &channels, now).unwrap();
        assert_eq!(
            last,
            Round {
                delivered: 1,
                ..Round::default()
            }
        );
        assert_eq!(
            deliver_due(&mut journal, &channels, now + secs(60.0)).unwrap(),
            Round::default()
        );

        let entries = list(&mut journal, false).unwrap();
        let entry = &entries[0];
        assert_eq!(
            entries,
            [OutboxEntry {
                id: id.clone(),
                channel: "hook".into(),
                topic: "run-parked".into(),
                summary: "pg-vacuum waits for a sign-off at `gate`".into(),
                queued_at: entry.queued_at.clone(),
                attempts: 4,
                next_try_at: None,
                delivered_at: entry.delivered_at.clone(),
                last_error: Some("HTTP 500: down".into()),
            }]
        );
        assert!(entry.delivered_at.is_some());
        assert!(list(&mut journal, true).unwrap().is_empty());

        let queued_at = DateTime::parse_from_rfc3339(&entry.queued_at)
            .unwrap()
            .with_timezone(&Utc);
        let expected_body = document(id, &n, queued_at).to_string();
        let requests = server.finish();
        assert_eq!(requests.len(), 4);
        for request in &requests {
            assert_eq!(request.line, "POST /in HTTP/1.1");
            assert_eq!(request.header("idempotency-key"), Some(id.as_str()));
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert_eq!(request.header("authorization"), None);
            assert_eq!(request.body, expected_body);
        }

        let failed = |attempt| {
            Event::NotificationFailed {
                id: id.clone(),
                channel: "hook".into(),
                attempt,
                error: "HTTP 500: down".into(),
            }
            .canonical_json()
        };
        assert_eq!(
            events(&journal),
            [
                queued_event(entry, &n),
                failed(1),
                failed(2),
                failed(3),
                Event::NotificationDelivered {
                    id: id.clone(),
                    channel: "hook".into(),
                    attempts: 4
                }
                .canonical_json(),
            ]
        );
        assert_eq!(verify_chain(&journal.all_events().unwrap()), None);
        assert!(journal.verify().unwrap().intact);
    }

    #[test]
    fn routes_send_one_notification_to_a_file_a_command_and_a_failing_command() {
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("got.jsonl");
        let yaml = format!(
            r#"
channels:
  log: {{ file: logs/events.jsonl }}
  cmd: {{ command: [/bin/sh, -c, 'cat >> "$0"', "{}"] }}
  broken: {{ command: [/bin/sh, -c, 'echo no pager here >&2; exit 1'] }}
routes:
  - {{ match: {{ priority: [1, 2] }}, channels: [log, cmd, broken] }}
  - {{ channels: [log] }}
"#,
            got.display()
        );
        let (channels, routes) = setup(&yaml, dir.path());
        let mut journal = Journal::open(&dir.path().join("x.db")).unwrap();
        let urgent = notification("1");
        let routine = notification("4");
        let urgent_ids = queue(&mut journal, &urgent, &routes, &channels).unwrap();
        let routine_ids = queue(&mut journal, &routine, &routes, &channels).unwrap();
        assert_eq!((urgent_ids.len(), routine_ids.len()), (3, 1));

        let round = deliver_due(&mut journal, &channels, now()).unwrap();
        assert_eq!((round.delivered, round.failed), (3, 1));
        assert!(round.next_due.is_some());

        let entries = list(&mut journal, false).unwrap();
        let channel_of: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.id.as_str(), e.channel.as_str()))
            .collect();
        assert_eq!(
            channel_of,
            [
                (urgent_ids[0].as_str(), "log"),
                (urgent_ids[1].as_str(), "cmd"),
                (urgent_ids[2].as_str(), "broken"),
                (routine_ids[0].as_str(), "log"),
            ]
        );
        let doc_of = |i: usize, n: &Notification| {
            let at = DateTime::parse_from_rfc3339(&entries[i].queued_at)
                .unwrap()
                .with_timezone(&Utc);
            document(&entries[i].id, n, at).to_string()
        };
        assert_eq!(
            std::fs::read_to_string(dir.path().join("logs/events.jsonl")).unwrap(),
            format!("{}\n{}\n", doc_of(0, &urgent), doc_of(3, &routine))
        );
        assert_eq!(
            std::fs::read_to_string(&got).unwrap(),
            format!("{}\n", doc_of(1, &urgent))
        );
        let pending = list(&mut journal, true).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].channel, "broken");
        assert_eq!(pending[0].attempts, 1);
        assert_eq!(
            pending[0].last_error.as_deref(),
            Some("/bin/sh exited with code 1: no pager here")
        );
    }

    #[test]
    fn a_row_whose_channel_is_gone_waits_for_it_and_is_never_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (channels, routes) = setup("channels:\n  log: { file: events.jsonl }\n", dir.path());
        let mut journal = Journal::open(&dir.path().join("x.db")).unwrap();
        let ids = queue(&mut journal, &notification("1"), &routes, &channels).unwrap();

        let now = now();
        let round = deliver_due(&mut journal, &Channels::default(), now).unwrap();
        assert_eq!(
            round,
            Round {
                unconfigured: 1,
                ..Round::default()
            }
        );
        let pending = list(&mut journal, true).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, ids[0]);
        assert_eq!(pending[0].attempts, 0);
        assert_eq!(
            pending[0].last_error.as_deref(),
            Some("channel log is not configured")
        );
        assert_eq!(journal.run_events(OUTBOX_LOG).unwrap().len(), 1);

        // The channel comes back: the row goes out at its next look.
        let round = deliver_due(&mut journal, &channels, now + secs(30.0)).unwrap();
        assert_eq!(round.delivered, 1);
        assert!(list(&mut journal, true).unwrap().is_empty());
    }

    #[test]
    fn a_notification_no_route_chooses_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (channels, routes) = setup(
            "channels:\n  log: { file: events.jsonl }\nroutes:\n  - { match: { priority: 1 }, channels: [log] }\n",
            dir.path(),
        );
        let mut journal = Journal::open(&dir.path().join("x.db")).unwrap();
        assert!(queue(&mut journal, &notification("3"), &routes, &channels)
            .unwrap()
            .is_empty());
        assert!(list(&mut journal, false).unwrap().is_empty());
        assert!(journal.all_events().unwrap().is_empty());
    }

    #[test]
    fn two_processes_delivering_at_once_deliver_each_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("got.jsonl");
        let (channels, routes) = setup(
            &format!(
                "channels:\n  slow: {{ command: [/bin/sh, -c, 'sleep 0.2; cat >> \"$0\"', \"{}\"] }}\n",
                got.display()
            ),
            dir.path(),
        );
        let db = dir.path().join("x.db");
        let mut journal = Journal::open(&db).unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.extend(queue(&mut journal, &notification("1"), &routes, &channels).unwrap());
        }
        let now = now();
        let start = Arc::new(Barrier::new(2));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (db, channels, start) = (db.clone(), channels.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    let mut journal = Journal::open(&db).unwrap();
                    start.wait();
                    deliver_due(&mut journal, &channels, now).unwrap()
                })
            })
            .collect();
        let rounds: Vec<Round> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(rounds.iter().map(|r| r.delivered).sum::<usize>(), 3);
        assert_eq!(rounds.iter().map(|r| r.failed).sum::<usize>(), 0);

        let mut delivered: Vec<String> = std::fs::read_to_string(&got)
            .unwrap()
            .lines()
            .map(|line| {
                let doc: Value = serde_json::from_str(line).unwrap();
                doc["id"].as_str().unwrap().to_string()
            })
            .collect();
        delivered.sort();
        ids.sort();
        assert_eq!(delivered, ids);
        let kinds: Vec<String> = journal
            .run_events(OUTBOX_LOG)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                "notification_queued",
                "notification_queued",
                "notification_queued",
                "notification_delivered",
                "notification_delivered",
                "notification_delivered"
            ]
        );
        assert_eq!(verify_chain(&journal.all_events().unwrap()), None);
    }

    #[test]
    fn the_claim_of_a_process_that_died_expires() {
        let dir = tempfile::tempdir().unwrap();
        let (channels, routes) = setup(
            "channels:\n  log: { file: events.jsonl, timeout: 2s }\n",
            dir.path(),
        );
        let mut journal = Journal::open(&dir.path().join("x.db")).unwrap();
        queue(&mut journal, &notification("1"), &routes, &channels).unwrap();
        let now = now();
        // A process claims the row and dies before delivering it.
        let mut round = Round::default();
        let claims = claim_due(&mut journal, &channels, now, &mut round).unwrap();
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].claimed_until, timestamp(now + secs(7.0)));

        let held = deliver_due(&mut journal, &channels, now).unwrap();
        assert_eq!(
            held,
            Round {
                next_due: Some(now + secs(7.0)),
                ..Round::default()
            }
        );
        let later = deliver_due(&mut journal, &channels, now + secs(7.0)).unwrap();
        assert_eq!(later.delivered, 1);
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let cap = Duration::from_secs(30);
        let waits: Vec<u64> = (1..=7).map(|a| backoff(a, cap).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(u32::MAX, cap), cap);
        assert_eq!(
            backoff(3, Duration::from_millis(1500)),
            Duration::from_millis(1500)
        );
    }
}
