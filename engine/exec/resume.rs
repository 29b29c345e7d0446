//! Resuming a run: who may (its owner, or a supervisor), the lease that keeps a second
//! process out, the runbook unchanged since the run started, the parameters as they were
//! (secrets asked for again), and a decision about every step that started and never finished.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::exec::console::Console;
use crate::exec::request::{RunRequest, Supervision};
use crate::exec::window::WindowLimit;
use crate::journal::event::RunStatus;
use crate::journal::lease::Lease;
use crate::journal::view::{self, RunView};
use crate::journal::Journal;
use crate::people::directory::{Directory, Operator};
use crate::people::Role;
use crate::runbook::params::{value_text, Params, SecretSource};
use crate::runbook::plan::{Plan, PlannedStep, StepKind};

/// What to do with a step that was started and never finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterruptedChoice {
    Rerun { why: String },
    MarkDone { comment: String },
    Abort,
}

/// An existing run to continue, with the decisions about its interrupted steps.
pub struct Resumption {
    pub view: RunView,
    pub lease: Lease,
    pub choices: HashMap<String, InterruptedChoice>,
}

/// What the operator said up front about interrupted steps.
#[derive(Debug, Clone, Default)]
pub struct InterruptedPolicy {
    /// `--rerun-interrupted`.
    pub rerun: bool,
    /// `--skip-interrupted --comment TEXT`: mark them done, with this comment.
    pub mark_done: Option<String>,
}

/// How to resume.
pub struct ResumeOptions<'a> {
    pub db: &'a Path,
    pub operator: Operator,
    pub interrupted: InterruptedPolicy,
    pub console: Option<Arc<dyn Console>>,
    pub wait: bool,
    pub secrets: &'a dyn SecretSource,
    /// The occurrence of the runbook's window the resumed steps must start in (refused while
    /// the window is closed).
    pub window: &'a dyn Fn(&Plan) -> Result<Option<WindowLimit>>,
    /// A stop request parks the run between steps instead of aborting it (the daemon).
    pub park_on_stop: bool,
}

/// Interrupted steps of a run that need a decision: scripts and commands that were started
/// and never finished (gates, manual steps and groups are simply re-entered).
pub fn interrupted_steps<'a>(plan: &'a Plan, view: &RunView) -> Vec<&'a PlannedStep> {
    plan.all_steps()
        .into_iter()
        .filter(|s| matches!(s.kind, StepKind::Rhai { .. } | StepKind::Shell { .. }))
        .filter(|s| view.step(&s.id).is_some_and(|v| v.status.is_none()))
        .collect()
}

/// Loads the runbook file a run started with: its plan and the engine its scripts compiled in.
pub type LoadRunbook<'a> = dyn Fn(&Path) -> Result<(Plan, Arc<rhai::Engine>)> + 'a;

/// Prepares run `run` (an id or a unique prefix) to continue; `load` loads the runbook the
/// run started with.
pub fn prepare(
    journal: &mut Journal,
    run: &str,
    options: ResumeOptions,
    load: &LoadRunbook,
) -> Result<RunRequest> {
    let operator = options.operator;
    let view = view::load_run(journal, run)?;
    check_resumable(&view)?;
    let owner_person = Directory::new(journal).person_of(&view.owner)?;
    if operator.verified()
        && operator.person != owner_person
        && operator.role != Some(Role::Supervisor)
    {
        return Err(Error::NotOwner {
            run: view.id.clone(),
            owner: view.owner.clone(),
            what: format!(
                "they resume it, or they (or a supervisor) hand it over to you first: opsbook handover {} --to {} --note TEXT",
                view.id, operator.name
            ),
        });
    }
    // Taken before anything is journaled: a second resume of a live run stops here (exit 5).
    let lease = Lease::acquire(options.db, &view.id)?;
    // What was read before the lease may be stale: another resume may have finished the run.
    let view = view::load_run(journal, &view.id)?;
    check_resumable(&view)?;

    let (plan, engine) = load(&PathBuf::from(&view.path))?;
    if !crate::people::signoff::plan_matches_run(&plan, &view) {
        return Err(Error::ChangedSinceStart {
            path: view.path.clone(),
            run: view.id.clone(),
            then: view.bound_hash().chars().take(12).collect(),
            now: match view.bundle_hash {
                Some(_) => plan.bundle_hash(),
                None => plan.source.content_hash.clone(),
            }
            .chars()
            .take(12)
            .collect(),
        });
    }
    let given: Vec<(String, String)> = view
        .params
        .iter()
        .filter(|(name, _)| !plan.runbook.params.get(*name).is_some_and(|s| s.secret))
        .map(|(name, value)| (name.clone(), value_text(value)))
        .collect();
    let params = Params::resolve(
        &plan.runbook.params,
        &given,
        &|var| std::env::var(var).ok(),
        options.secrets,
    )?;
    crate::exec::request::secrets_present(&plan, &params)?;

    let mut choices = HashMap::new();
    for step in interrupted_steps(&plan, &view) {
        let choice = if step.idempotent {
            InterruptedChoice::Rerun {
                why: "the step is idempotent".into(),
            }
        } else if options.interrupted.rerun {
            InterruptedChoice::Rerun {
                why: "--rerun-interrupted".into(),
            }
        } else if let Some(comment) = &options.interrupted.mark_done {
            InterruptedChoice::MarkDone {
                comment: comment.clone(),
            }
        } else if let Some(console) = &options.console {
            console
                .interrupted(&step.id, &step.name)
                .unwrap_or(InterruptedChoice::Abort)
        } else {
            return Err(Error::InterruptedStep {
                run: view.id.clone(),
                step: step.id.clone(),
            });
        };
        choices.insert(step.id.clone(), choice);
    }
    let supervision = match &view.supervisor {
        Some(name) => Some(Supervision {
            supervisor: name.clone(),
            person: Directory::new(journal).person_of(name)?,
        }),
        None => None,
    };
    let window = match view.dry_run {
        true => None,
        false => (options.window)(&plan)?,
    };
    Ok(RunRequest {
        window,
        slot: view.slot.clone(),
        park_on_stop: options.park_on_stop,
        freeze_break: None,
        plan,
        engine,
        params,
        operator,
        dry_run: view.dry_run,
        console: options.console,
        wait: options.wait,
        supervision,
        change: view.change.clone(),
        db: options.db.to_path_buf(),
        resume: Some(Resumption {
            view,
            lease,
            choices,
        }),
    })
}

/// A run that can be continued: running (its driver gone) or waiting for a person.
fn check_resumable(view: &RunView) -> Result<()> {
    match view.status {
        RunStatus::Running | RunStatus::AwaitingSignoff | RunStatus::Parked => Ok(()),
        RunStatus::AwaitingAcceptance => Err(Error::AwaitsAcceptance {
            run: view.id.clone(),
            supervisor: view
                .supervisor
                .clone()
                .unwrap_or_else(|| "SUPERVISOR".into()),
        }),
        finished => Err(Error::RunFinished {
            run: view.id.clone(),
            status: finished.name().to_string(),
            what: "start a new run instead",
        }),
    }
}
