//! A request to run a runbook, and admission: whether it may start at all. `run`, `resume`
//! and (later) the daemon build the same request and pass the same checks — the change
//! policy and trainee supervision today, maintenance windows and freezes next.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::Engine;

use crate::error::{Error, Result};
use crate::exec::console::Console;
use crate::exec::resume::Resumption;
use crate::journal::event::RunStatus;
use crate::journal::lease::Lease;
use crate::journal::view;
use crate::journal::Journal;
use crate::people::directory::{Directory, Operator};
use crate::people::{training, Role};
use crate::runbook::params::Params;
use crate::runbook::plan::Plan;
use crate::runbook::ChangePolicy;

pub struct RunRequest {
    pub plan: Plan,
    pub engine: Arc<Engine>,
    pub params: Params,
    pub operator: Operator,
    pub dry_run: bool,
    /// The person who answers gates and manual steps as they come; None: they park (or are
    /// polled for with `wait`).
    pub console: Option<Arc<dyn Console>>,
    /// Without a console, keep polling the journal for a sign-off instead of parking.
    pub wait: bool,
    /// A supervised training run: the supervisor counter-signs every gate and manual step.
    pub supervision: Option<Supervision>,
    pub change: Option<String>,
    /// The journal's path, for the lease.
    pub db: PathBuf,
    /// Continue an existing run instead of starting one.
    pub resume: Option<Resumption>,
}

#[derive(Debug, Clone)]
pub struct Supervision {
    pub supervisor: String,
    pub person: String,
}

/// How a drive of a run ended.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub run_id: String,
    /// Where the run stands now (a finished training run awaits acceptance).
    pub status: RunStatus,
    /// How its steps ended (for a training run, before acceptance).
    pub outcome: RunStatus,
    /// The counts of the run's steps, as journaled with its end.
    pub summary: String,
    pub elapsed: std::time::Duration,
    /// Set on a supervised training run that has finished: who accepts it.
    pub awaiting_acceptance_by: Option<String>,
    /// Gates and manual steps the run parked at, with the binding a signer checks.
    pub parked: Vec<ParkedStep>,
}

/// A step the run waits at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedStep {
    pub step: String,
    /// What the step asks of a person.
    pub asks: String,
    /// A sign-off needs a comment as evidence.
    pub evidence_required: bool,
    pub binding: String,
}

/// What a new run asks to be admitted with.
pub struct Admission<'a> {
    pub plan: &'a Plan,
    pub operator: &'a Operator,
    pub supervisor: Option<&'a str>,
    pub change: Option<&'a str>,
    pub dry_run: bool,
    /// Allow a second run of the same runbook while one is being driven.
    pub concurrent: bool,
}

/// Decides whether a new run may start, and under whose supervision.
pub fn admit(journal: &mut Journal, admission: Admission) -> Result<Option<Supervision>> {
    let plan = admission.plan;
    let change_given = admission.change.is_some_and(|c| !c.trim().is_empty());
    if plan.runbook.change == ChangePolicy::Required && !change_given && !admission.dry_run {
        return Err(Error::ChangeRequired {
            runbook: plan.runbook.runbook.clone(),
        });
    }
    if !admission.concurrent {
        let runbook = &plan.runbook.runbook;
        for run in view::list_runs(journal)?
            .iter()
            .filter(|r| r.runbook == *runbook && r.status == RunStatus::Running)
        {
            if Lease::is_held_elsewhere(journal.path(), &run.id)? {
                return Err(Error::AlreadyRunning {
                    runbook: runbook.clone(),
                    run: run.id.clone(),
                });
            }
        }
    }
    supervision(journal, admission.operator, plan, admission.supervisor)
}

/// Refuses to start (or resume) a run that a missing secret would fail half way: every
/// secret a step uses must have a value now (a resumed run asks for its secrets again).
pub fn secrets_present(plan: &Plan, params: &Params) -> Result<()> {
    for (name, spec) in plan.runbook.params.iter().filter(|(_, s)| s.secret) {
        if params.text(name).is_some() {
            continue;
        }
        let env_name = crate::runbook::params::env_name(name);
        let names: Vec<&str> = [Some(env_name.as_str()), spec.env.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if let Some(step) = plan
            .all_steps()
            .into_iter()
            .find(|s| s.uses_param(name, &names))
        {
            let how = match &spec.env {
                Some(var) => format!("set the environment variable {var}"),
                None => "run it on a terminal to be asked for it".into(),
            };
            return Err(Error::param(
                name,
                format!(
                    "is secret and step `{}` needs it, but it has no value: {how}",
                    step.id
                ),
            ));
        }
    }
    Ok(())
}

/// Who supervises this run: the named supervisor, or nobody — and whether a trainee may run
/// it unsupervised (qualified by enough accepted supervised runs).
fn supervision(
    journal: &mut Journal,
    operator: &Operator,
    plan: &Plan,
    supervisor: Option<&str>,
) -> Result<Option<Supervision>> {
    let mut directory = Directory::new(journal);
    if let Some(name) = supervisor {
        let registered = directory.count()? > 0;
        let person = match directory.get(name)? {
            Some(o) if o.disabled => {
                return Err(Error::OperatorDisabled { name: name.into() });
            }
            Some(o) if o.role != Role::Supervisor => {
                return Err(Error::NotASupervisor {
                    name: name.into(),
                    role: o.role.name(),
                })
            }
            Some(o) => o.person,
            None if !registered => name.to_string(),
            None => return Err(Error::NoSuchOperator { name: name.into() }),
        };
        if person == operator.person {
            return Err(Error::OwnSupervisor {
                name: operator.name.clone(),
            });
        }
        return Ok(Some(Supervision {
            supervisor: name.to_string(),
            person,
        }));
    }
    if operator.role != Some(Role::Trainee) {
        return Ok(None);
    }
    let runbook = &plan.runbook.runbook;
    match plan
        .runbook
        .qualification
        .as_ref()
        .map(|q| q.supervised_runs)
    {
        None => Err(Error::TraineeWithoutPath {
            trainee: operator.name.clone(),
            runbook: runbook.clone(),
        }),
        Some(needed) => {
            let accepted = training::accepted_runs(journal, &operator.person, runbook)?;
            if accepted >= needed as usize {
                Ok(None)
            } else {
                Err(Error::TraineeNotQualified {
                    trainee: operator.name.clone(),
                    runbook: runbook.clone(),
                    accepted,
                    needed: needed as usize,
                })
            }
        }
    }
}
