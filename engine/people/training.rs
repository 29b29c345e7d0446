//! Supervised training: a trainee runs a test script or runbook under a supervisor who
//! counter-signs every gate and manual step and then accepts or rejects the whole run. The
//! training record counts accepted runs per trainee and runbook towards its qualification.

use serde::Serialize;

use crate::error::Result;
use crate::journal::event::AcceptanceDecision;
use crate::journal::view;
use crate::journal::Journal;

/// Accepted supervised runs of `runbook` by `person`.
pub fn accepted_runs(journal: &Journal, person: &str, runbook: &str) -> Result<usize> {
    Ok(view::list_runs(journal)?
        .iter()
        .filter(|r| r.supervisor.is_some() && r.person == person && r.runbook == runbook)
        .filter(|r| r.acceptance == Some(AcceptanceDecision::Accepted))
        .count())
}

/// One trainee's record on one runbook.
#[derive(Debug, Serialize)]
pub struct TrainingLine {
    pub trainee: String,
    pub runbook: String,
    pub supervised_runs: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub awaiting: usize,
    pub last_run: Option<String>,
    pub required: Option<u32>,
    pub qualified: Option<bool>,
}

/// The training record: supervised runs grouped by trainee (a person) and runbook, oldest
/// first. `required` says how many accepted runs a runbook's qualification asks for.
pub fn record(
    journal: &Journal,
    person: Option<&str>,
    required: &dyn Fn(&str) -> Option<u32>,
) -> Result<Vec<TrainingLine>> {
    let runs = view::list_runs(journal)?;
    let mut lines: Vec<TrainingLine> = Vec::new();
    for r in runs.iter().filter(|r| r.supervisor.is_some()) {
        if person.is_some_and(|p| r.person != p) {
            continue;
        }
        let index = match lines
            .iter()
            .position(|l| l.trainee == r.person && l.runbook == r.runbook)
        {
            Some(i) => i,
            None => {
                lines.push(TrainingLine {
                    trainee: r.person.clone(),
                    runbook: r.runbook.clone(),
                    supervised_runs: 0,
                    accepted: 0,
                    rejected: 0,
                    awaiting: 0,
                    last_run: None,
                    required: required(&r.runbook),
                    qualified: None,
                });
                lines.len() - 1
            }
        };
        let line = &mut lines[index];
        line.supervised_runs += 1;
        match r.acceptance {
            Some(AcceptanceDecision::Accepted) => line.accepted += 1,
            Some(AcceptanceDecision::Rejected) => line.rejected += 1,
            None => line.awaiting += 1,
        }
        line.last_run = Some(r.started_at.clone());
        line.qualified = line.required.map(|n| line.accepted >= n as usize);
    }
    Ok(lines)
}
