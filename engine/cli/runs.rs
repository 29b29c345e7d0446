//! `opsbook runs` and `opsbook show`: runs as the journal has them.

use super::to_json;
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::journal::event::RunStatus;
use crate::journal::view;
use crate::journal::Journal;
use crate::report::text;

/// Which runs `opsbook runs` lists.
pub struct RunFilter {
    pub runbook: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub limit: Option<usize>,
}

const STATUSES: &str = "use one of running, interrupted, awaiting-signoff, awaiting-acceptance, succeeded, failed, aborted, rejected";

pub fn runs(settings: &Settings, filter: RunFilter, json: bool) -> Result<i32> {
    // `interrupted` is a running run whose process is gone.
    let wanted_status = match filter.status.as_deref() {
        Some("interrupted") => Some((RunStatus::Running, true)),
        Some(s) => Some((
            RunStatus::parse(s).ok_or_else(|| Error::BadValue {
                flag: "--status",
                value: s.to_string(),
                expected: STATUSES.into(),
            })?,
            false,
        )),
        None => None,
    };
    let since = filter.since.as_deref().map(parse_since).transpose()?;
    let journal = Journal::open_read_only(&settings.db)?;
    let mut runs: Vec<_> = view::list_runs(&journal)?
        .into_iter()
        .filter(|r| filter.runbook.as_deref().is_none_or(|id| r.runbook == id))
        .filter(|r| {
            since.is_none_or(|t| {
                chrono::DateTime::parse_from_rfc3339(&r.started_at).is_ok_and(|s| s >= t)
            })
        })
        .collect();
    // A run still marked running whose process is gone was interrupted: it needs a resume.
    for r in runs.iter_mut().filter(|r| r.status == RunStatus::Running) {
        r.interrupted = !crate::journal::lease::Lease::is_held_elsewhere(&settings.db, &r.id)?;
    }
    if let Some((status, interrupted)) = wanted_status {
        runs.retain(|r| {
            r.status == status && (status != RunStatus::Running || r.interrupted == interrupted)
        });
    }
    runs.reverse();
    if let Some(n) = filter.limit {
        runs.truncate(n);
    }
    if json {
        outln!("{}", to_json(&runs)?);
        return Ok(exit::SUCCESS);
    }
    if runs.is_empty() {
        outln!("no runs");
    }
    for r in &runs {
        outln!(
            "{}  {:<20} v{:<3} {:<16} {}  {}{}",
            r.id,
            r.runbook,
            r.version,
            if r.interrupted {
                "interrupted"
            } else {
                r.status.name()
            },
            text::short_time(&r.started_at),
            r.operator,
            if r.dry_run { "  (dry run)" } else { "" }
        );
    }
    Ok(exit::SUCCESS)
}

/// `--since`: a duration back from now, or an RFC 3339 time.
fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time);
    }
    let back = crate::runbook::duration::parse_duration(text).map_err(|_| Error::BadValue {
        flag: "--since",
        value: text.to_string(),
        expected: "give a duration back from now (`7d`, `12h`) or an RFC 3339 time (`2026-11-01T00:00:00Z`)".into(),
    })?;
    let back = chrono::Duration::from_std(back).unwrap_or(chrono::Duration::MAX);
    let then = chrono::Utc::now()
        .checked_sub_signed(back)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    Ok(then.fixed_offset())
}

pub fn show(settings: &Settings, run: &str, json: bool, full: bool) -> Result<i32> {
    let journal = Journal::open_read_only(&settings.db)?;
    let view = view::load_run(&journal, run)?;
    // A run still marked running whose process is gone was interrupted: it needs a resume.
    let interrupted = view.status == RunStatus::Running
        && !crate::journal::lease::Lease::is_held_elsewhere(&settings.db, &view.id)?;
    if json {
        // The journal's status, and `interrupted: true` when its process is gone, as `runs
        // --json` says it.
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            #[serde(flatten)]
            run: &'a view::RunView,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            interrupted: bool,
        }
        let json = to_json(&Shown {
            run: &view,
            interrupted,
        })?;
        // JSON escapes every control character but DEL: `\u007f` keeps it valid when printed.
        outln!("{}", json.replace('\u{7f}', "\\u007f"));
    } else {
        out!(
            "{}",
            text::render_run(&view, text::ShowOptions { interrupted, full })
        );
        if interrupted {
            outln!(
                "\nthis run was interrupted: no process drives it. Continue it with: opsbook resume {}",
                view.id
            );
        }
    }
    Ok(exit::SUCCESS)
}
