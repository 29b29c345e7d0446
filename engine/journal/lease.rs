//! One process drives a run at a time. The driver holds a lease row, taken in an immediate
//! transaction and renewed while it runs; a lease is stale once its process is gone (same
//! host: the pid is dead, or reused by another process) or it has not been renewed for a while.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};
use crate::sys::hostinfo;

/// How often a held lease is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A lease not renewed for this long is stale even if its process cannot be checked.
const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// A held lease; dropping it releases the run.
pub struct Lease {
    db: PathBuf,
    run_id: String,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

struct Holder {
    pid: i64,
    process_start: String,
    host: String,
    renewed_at: String,
}

impl Lease {
    /// Takes the lease on `run_id`, or says who holds it (exit 5).
    pub fn acquire(db: &Path, run_id: &str) -> Result<Self> {
        let sql = |e| Error::journal(db, e);
        let mut conn = open(db)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let holder = holder_of(&tx, run_id).map_err(sql)?;
        if let Some(h) = holder.filter(is_live) {
            return Err(Error::LeaseHeld {
                run: run_id.to_string(),
                pid: h.pid,
                host: h.host,
                renewed_at: h.renewed_at,
            });
        }
        let now = now();
        tx.execute(
            "INSERT INTO leases (run_id, pid, process_start, host, acquired_at, renewed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (run_id) DO UPDATE SET pid = ?2, process_start = ?3, host = ?4,
                 acquired_at = ?5, renewed_at = ?5",
            params![
                run_id,
                std::process::id() as i64,
                process_start(std::process::id() as i64).unwrap_or_default(),
                hostinfo::hostname(),
                now
            ],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Self {
            db: db.to_path_buf(),
            run_id: run_id.to_string(),
            renewer: None,
        })
    }

    /// Keeps the lease fresh from a background task of the current runtime.
    pub fn keep_renewed(&mut self) {
        let db = self.db.clone();
        let run_id = self.run_id.clone();
        self.renewer = Some(tokio::spawn(async move {
            let Ok(conn) = open(&db) else { return };
            let mut tick = tokio::time::interval(RENEW_EVERY);
            loop {
                tick.tick().await;
                let _ = conn.execute(
                    "UPDATE leases SET renewed_at = ?2 WHERE run_id = ?1 AND pid = ?3",
                    params![run_id, now(), std::process::id() as i64],
                );
            }
        }));
    }

    /// Whether a live process other than this one holds the lease on `run_id`.
    pub fn is_held_elsewhere(db: &Path, run_id: &str) -> Result<bool> {
        let conn = open(db)?;
        let holder = holder_of(&conn, run_id).map_err(|e| Error::journal(db, e))?;
        Ok(holder.is_some_and(|h| is_live(&h) && h.pid != std::process::id() as i64))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
        if let Ok(conn) = open(&self.db) {
            let _ = conn.execute(
                "DELETE FROM leases WHERE run_id = ?1 AND pid = ?2",
                params![self.run_id, std::process::id() as i64],
            );
        }
    }
}

fn holder_of(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<Holder>> {
    let holder = conn
        .query_row(
            "SELECT pid, process_start, host, renewed_at FROM leases WHERE run_id = ?1",
            [run_id],
            |r| {
                Ok(Holder {
                    pid: r.get(0)?,
                    process_start: r.get(1)?,
                    host: r.get(2)?,
                    renewed_at: r.get(3)?,
                })
            },
        )
        .optional()?;
    Ok(holder)
}

fn open(db: &Path) -> Result<Connection> {
    let sql = |e| Error::journal(db, e);
    let conn = Connection::open(db).map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(15)).map_err(sql)?;
    // A lease is worth nothing after a crash (its process is gone), so its writes need no
    // fsync of their own; the journal's next durable commit carries them to disk anyway.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql)?;
    Ok(conn)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn is_live(h: &Holder) -> bool {
    if h.host == hostinfo::hostname() {
        // Same machine: the process must exist and be the same one (pids are reused).
        return process_start(h.pid).is_some_and(|start| start == h.process_start);
    }
    chrono::DateTime::parse_from_rfc3339(&h.renewed_at)
        .map(|t| chrono::Utc::now().signed_duration_since(t) < STALE_AFTER)
        .unwrap_or(false)
}

/// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
fn process_start(pid: i64) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3 (state); starttime is field 22.
    after_name.split_whitespace().nth(19).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_a_dead_one_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("j.db");
        crate::journal::Journal::open(&db).unwrap();
        let first = Lease::acquire(&db, "R").unwrap();
        assert!(matches!(
            Lease::acquire(&db, "R"),
            Err(Error::LeaseHeld { .. })
        ));
        drop(first);
        let _again = Lease::acquire(&db, "R").unwrap();

        // A lease left by a process that no longer exists is stale.
        let conn = Connection::open(&db).unwrap();
        conn.execute("UPDATE leases SET pid = 999999999, process_start = 'x'", [])
            .unwrap();
        assert!(Lease::acquire(&db, "R").is_ok());
    }

    #[test]
    fn this_process_has_a_start_time() {
        assert!(process_start(std::process::id() as i64).is_some());
    }
}
