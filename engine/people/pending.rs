//! What waits for a person: gates and manual steps that runs are parked at (or held at by a
//! process that polls), and finished training runs that wait for their supervisor's verdict —
//! each with what is asked, who may answer, and the binding a signer checks.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::journal::event::RunStatus;
use crate::journal::view::{self, RunView};
use crate::journal::Journal;
use crate::people::policy;
use crate::people::signoff;
use crate::runbook::plan::Plan;

/// One thing waiting for a person.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub run: String,
    pub runbook: String,
    /// The gate or manual step; `(run)` for a training run's acceptance.
    pub step: String,
    /// gate, manual, or acceptance.
    pub kind: String,
    /// What the person is asked.
    pub prompt: String,
    pub who_may_sign: String,
    /// The binding hash a sign-off is tied to (empty for an acceptance, or when the runbook
    /// changed since the run started and nothing can be signed).
    pub binding: String,
    /// Since when it waits.
    pub since: String,
    pub owner: String,
}

/// Everything waiting, oldest first. `load` loads the runbook a run started with.
pub fn pending(
    journal: &mut Journal,
    load: &dyn Fn(&Path) -> Result<Plan>,
) -> Result<Vec<Pending>> {
    let mut out = Vec::new();
    let waiting: Vec<String> = view::list_runs(journal)?
        .into_iter()
        .filter(|r| {
            matches!(
                r.status,
                RunStatus::AwaitingSignoff | RunStatus::AwaitingAcceptance | RunStatus::Running
            )
        })
        .map(|r| r.id)
        .collect();
    for id in waiting {
        let run = view::load_run(journal, &id)?;
        if run.status == RunStatus::AwaitingAcceptance {
            let supervisor = run.supervisor.clone().unwrap_or_default();
            out.push(Pending {
                run: run.id.clone(),
                runbook: run.runbook.clone(),
                step: "(run)".into(),
                kind: "acceptance".into(),
                prompt: format!(
                    "accept or reject the supervised training run of {} ({})",
                    run.operator,
                    run.summary.clone().unwrap_or_default()
                ),
                who_may_sign: format!("the supervisor {supervisor}"),
                binding: String::new(),
                since: run.finished_at.clone().unwrap_or_default(),
                owner: run.owner.clone(),
            });
            continue;
        }
        let Some(step) = signoff::waiting_step(&run) else {
            continue;
        };
        out.push(waiting_at(journal, &run, &step.id, load)?);
    }
    Ok(out)
}

fn waiting_at(
    journal: &mut Journal,
    run: &RunView,
    step_id: &str,
    load: &dyn Fn(&Path) -> Result<Plan>,
) -> Result<Pending> {
    let step = run
        .step(step_id)
        .expect("the waiting step is a step of the run");
    let since = run
        .paused
        .as_ref()
        .map(|p| p.at.clone())
        .unwrap_or_else(|| step.started_at.clone());
    let base = Pending {
        run: run.id.clone(),
        runbook: run.runbook.clone(),
        step: step_id.to_string(),
        kind: step.kind.clone(),
        prompt: String::new(),
        who_may_sign: String::new(),
        binding: String::new(),
        since,
        owner: run.owner.clone(),
    };
    let plan = match load(Path::new(&run.path)) {
        Ok(plan) if signoff::plan_matches_run(&plan, run) => plan,
        _ => {
            return Ok(Pending {
                who_may_sign: "nobody: the runbook changed since the run started".into(),
                ..base
            })
        }
    };
    let policy = signoff::policy_for(journal, &plan, run, step_id)?;
    let evidence = policy::evidence(&policy, run);
    Ok(Pending {
        prompt: step
            .asks
            .clone()
            .unwrap_or_else(|| policy.prompt.trim().to_string()),
        who_may_sign: policy.who_may_sign(run),
        binding: policy::binding(&run.id, step_id, run.bound_hash(), &run.params, &evidence),
        ..base
    })
}
