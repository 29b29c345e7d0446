//! `opsbook runs` and `opsbook show`: runs as the journal has them.

use super::to_json;
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::journal::event::RunStatus;
use crate::journal::view;
use crate::journal::Journal;
use crate::report::text;

pub fn runs(
    settings: &Settings,
    runbook: Option<&str>,
    status: Option<&str>,
    json: bool,
) -> Result<i32> {
    let wanted_status = match status {
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            Error::BadValue {
                flag: "--status",
                value: s.to_string(),
                expected: "use one of running, awaiting-signoff, awaiting-acceptance, succeeded, failed, aborted, rejected".into(),
            }
        })?),
        None => None,
    };
    let journal = Journal::open_read_only(&settings.db)?;
    let mut runs: Vec<_> = view::list_runs(&journal)?
        .into_iter()
        .filter(|r| runbook.is_none_or(|id| r.runbook == id))
        .filter(|r| wanted_status.is_none_or(|s| r.status == s))
        .collect();
    // A run still marked running whose process is gone was interrupted: it needs a resume.
    for r in runs.iter_mut().filter(|r| r.status == RunStatus::Running) {
        r.interrupted = !crate::journal::lease::Lease::is_held_elsewhere(&settings.db, &r.id)?;
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

pub fn show(settings: &Settings, run: &str, json: bool) -> Result<i32> {
    let journal = Journal::open_read_only(&settings.db)?;
    let view = view::load_run(&journal, run)?;
    if json {
        outln!("{}", to_json(&view)?);
    } else {
        out!("{}", text::render_run(&view));
        if view.status == RunStatus::Running
            && !crate::journal::lease::Lease::is_held_elsewhere(&settings.db, &view.id)?
        {
            outln!(
                "\nthis run was interrupted: no process drives it. Continue it with: opsbook resume {}",
                view.id
            );
        }
    }
    Ok(exit::SUCCESS)
}
