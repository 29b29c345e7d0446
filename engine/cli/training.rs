//! `opsbook training`: the training record.

use super::{load_plan, to_json};
use crate::config::Settings;
use crate::error::{exit, Result};
use crate::journal::Journal;
use crate::people::directory::Directory;
use crate::people::training;
use crate::runbook::library;

pub fn training(settings: &Settings, name: Option<&str>, json: bool) -> Result<i32> {
    let mut journal = Journal::open_read_only(&settings.db)?;
    let person = match name {
        Some(n) => Some(Directory::new(&mut journal).person_of(n)?),
        None => None,
    };
    let required = |runbook: &str| {
        library::resolve(settings, runbook)
            .ok()
            .and_then(|p| load_plan(settings, &p).ok())
            .and_then(|(plan, _)| plan.runbook.qualification.map(|q| q.supervised_runs))
    };
    let lines = training::record(&journal, person.as_deref(), &required)?;
    if json {
        outln!("{}", to_json(&lines)?);
        return Ok(exit::SUCCESS);
    }
    if lines.is_empty() {
        outln!(
            "no supervised training runs{}",
            name.map(|n| format!(" for {n}")).unwrap_or_default()
        );
    }
    for l in &lines {
        let qualified = match (l.qualified, l.required) {
            (Some(true), Some(n)) => format!("qualified ({n} needed)"),
            (Some(false), Some(n)) => format!(
                "not qualified: {} more accepted run(s) needed",
                n as usize - l.accepted.min(n as usize)
            ),
            _ => "no qualification set".into(),
        };
        outln!(
            "{:<16} {:<24} {} supervised, {} accepted, {} rejected, {} awaiting; last {}; {qualified}",
            l.trainee,
            l.runbook,
            l.supervised_runs,
            l.accepted,
            l.rejected,
            l.awaiting,
            l.last_run.as_deref().map(|t| t.get(..10).unwrap_or(t)).unwrap_or("-")
        );
    }
    Ok(exit::SUCCESS)
}
