//! Go/no-go: before each step of a run bound to a maintenance window, whether the step may
//! start in the time the window has left. No step starts after the window's cutoff; a step
//! whose 95th-percentile duration (from at least five earlier runs of the same runbook
//! content) exceeds the time left does not start either, unless the operator said to ignore
//! the history. Either way the run parks, to go on in a later window, and every verdict is
//! journaled.

use chrono::{DateTime, Utc};
use rusqlite::params;

use crate::calendar::Window;
use crate::error::Result;
use crate::journal::event::WindowVerdict;
use crate::journal::Journal;

/// The maintenance window a run is driven in.
#[derive(Debug, Clone)]
pub struct WindowLimit {
    pub window: Window,
    /// Start steps even when their history says they will not fit (the cutoff still holds).
    pub ignore_history: bool,
}

/// How many earlier durations a step needs before its history is trusted.
pub const MIN_SAMPLES: usize = 5;

/// A verdict on one step, with the words the journal and the operator get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub verdict: WindowVerdict,
    pub reason: String,
    pub remaining_ms: i64,
    pub p95_ms: Option<i64>,
    pub samples: Option<usize>,
}

impl Verdict {
    /// The step must not start.
    pub fn parks(&self) -> bool {
        matches!(self.verdict, WindowVerdict::NoGo | WindowVerdict::Cutoff)
    }
}

/// Decides whether `step` may start at `now`, given its earlier durations in milliseconds.
pub fn decide(limit: &WindowLimit, step: &str, now: DateTime<Utc>, history: &[i64]) -> Verdict {
    let name = &limit.window.name;
    let Some(open) = limit.window.open_at(now).filter(|o| now < o.last_start) else {
        let since = limit
            .window
            .open_at(now)
            .map(|o| {
                format!(
                    "after the cutoff of window {name} ({})",
                    o.last_start
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            })
            .unwrap_or_else(|| format!("while window {name} is closed"));
        return Verdict {
            verdict: WindowVerdict::Cutoff,
            reason: format!("`{step}` would start {since}; no step starts then"),
            remaining_ms: 0,
            p95_ms: None,
            samples: None,
        };
    };
    let remaining_ms = (open.last_start - now).num_milliseconds();
    let left = roughly(remaining_ms);
    if history.len() < MIN_SAMPLES {
        return Verdict {
            verdict: WindowVerdict::Go,
            reason: format!(
                "{left} remain in {name}; `{step}` has {} earlier run(s), fewer than {MIN_SAMPLES} to estimate from",
                history.len()
            ),
            remaining_ms,
            p95_ms: None,
            samples: Some(history.len()),
        };
    }
    let p95 = percentile(history, 95);
    let usually = roughly(p95);
    let estimate = format!(
        "`{step}` usually takes {usually} (p95 of {} runs); {left} remain in {name}",
        history.len(),
    );
    let verdict = match (p95 > remaining_ms, limit.ignore_history) {
        (false, _) => WindowVerdict::Go,
        (true, false) => WindowVerdict::NoGo,
        (true, true) => WindowVerdict::Overridden,
    };
    let reason = match verdict {
        WindowVerdict::Overridden => {
            format!("{estimate}; started anyway (--ignore-window-history)")
        }
        _ => estimate,
    };
    Verdict {
        verdict,
        reason,
        remaining_ms,
        p95_ms: Some(p95),
        samples: Some(history.len()),
    }
}

/// A span for people, to the minute once it is a minute or more: `42m`, `1h05m`, `40s`.
fn roughly(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    match seconds {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The nearest-rank percentile `p` of `values` (not empty).
fn percentile(values: &[i64], p: usize) -> i64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// How long `step` took, in milliseconds, in each earlier run (not a dry run, not `except`)
/// of the runbook content `content_hash` where it succeeded: from its start to its end.
pub fn step_history(
    journal: &Journal,
    content_hash: &str,
    step: &str,
    except: &str,
) -> Result<Vec<i64>> {
    let mut statement = journal
        .connection_ref()
        .prepare_cached(
            "SELECT s.at, (SELECT f.at FROM events f
                           WHERE f.run_id = s.run_id AND f.step = s.step
                             AND f.kind = 'step_finished' AND f.seq > s.seq
                             AND json_extract(f.body, '$.status') = 'succeeded'
                           ORDER BY f.seq LIMIT 1)
             FROM events s
             JOIN events r ON r.run_id = s.run_id AND r.kind = 'run_started'
             WHERE s.kind = 'step_started' AND s.step = ?1 AND s.run_id <> ?3
               AND json_extract(r.body, '$.content_hash') = ?2
               AND json_extract(r.body, '$.dry_run') = 0
             ORDER BY s.seq DESC LIMIT 200",
        )
        .map_err(|e| journal.error(e))?;
    let rows = statement
        .query_map(params![step, content_hash, except], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
        })
        .map_err(|e| journal.error(e))?;
    let mut durations = Vec::new();
    for row in rows {
        let (started, finished) = row.map_err(|e| journal.error(e))?;
        let Some(finished) = finished else { continue };
        if let (Ok(s), Ok(f)) = (
            DateTime::parse_from_rfc3339(&started),
            DateTime::parse_from_rfc3339(&finished),
        ) {
            durations.push((f - s).num_milliseconds());
        }
    }
    Ok(durations)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sundays 00:00 to 02:00 UTC, nothing starting after 01:30 (2026-03-01 is a Sunday).
    fn limit(ignore_history: bool) -> WindowLimit {
        let spec = crate::config::WindowSpec {
            schedule: "0 0 * * SUN".into(),
            timezone: None,
            duration: "2h".into(),
            cutoff: Some("30m".into()),
            offset_days: None,
            start: None,
            end: None,
            enabled: true,
        };
        WindowLimit {
            window: Window::compile("sunday-night", &spec, std::path::Path::new("opsbook.yaml"))
                .unwrap(),
            ignore_history,
        }
    }

    use crate::calendar::utc as now;

    const MINUTE: i64 = 60_000;

    #[test]
    fn a_step_that_usually_takes_longer_than_what_is_left_does_not_start() {
        let history = [40, 41, 42, 39, 38, 42, 40, 41, 40, 42, 41, 39].map(|m| m * MINUTE);
        let v = decide(
            &limit(false),
            "vacuum",
            now("2026-03-01T01:12:00Z"),
            &history,
        );
        assert_eq!(
            v,
            Verdict {
                verdict: WindowVerdict::NoGo,
                reason: "`vacuum` usually takes 42m (p95 of 12 runs); 18m remain in sunday-night"
                    .into(),
                remaining_ms: 18 * MINUTE,
                p95_ms: Some(42 * MINUTE),
                samples: Some(12),
            }
        );
        assert!(v.parks());
        let overridden = decide(
            &limit(true),
            "vacuum",
            now("2026-03-01T01:12:00Z"),
            &history,
        );
        assert_eq!(overridden.verdict, WindowVerdict::Overridden);
        assert!(!overridden.parks());
    }

    #[test]
    fn too_little_history_goes_and_the_cutoff_always_holds() {
        let few = [50 * MINUTE; 4];
        let v = decide(&limit(false), "vacuum", now("2026-03-01T01:12:00Z"), &few);
        assert_eq!(v.verdict, WindowVerdict::Go);
        assert_eq!(
            v.reason,
            "18m remain in sunday-night; `vacuum` has 4 earlier run(s), fewer than 5 to estimate from"
        );
        let late = decide(&limit(true), "vacuum", now("2026-03-01T01:31:00Z"), &few);
        assert_eq!(late.verdict, WindowVerdict::Cutoff);
        let closed = decide(&limit(false), "vacuum", now("2026-03-01T03:00:00Z"), &few);
        assert_eq!(
            closed.reason,
            "`vacuum` would start while window sunday-night is closed; no step starts then"
        );
        assert_eq!(
            late.reason,
            "`vacuum` would start after the cutoff of window sunday-night (2026-03-01T01:30:00Z); no step starts then"
        );
    }

    #[test]
    fn percentile_is_nearest_rank() {
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 95), 5);
        assert_eq!(percentile(&(1..=100).collect::<Vec<_>>(), 95), 95);
        assert_eq!(percentile(&[7], 95), 7);
    }
}
