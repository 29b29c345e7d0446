//! A request to run a runbook, and admission: whether it may start at all. `run`, `resume`
//! and (later) the daemon build the same request and pass the same checks — the change
//! policy and trainee supervision today, maintenance windows and freezes next.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rhai::Engine;

use crate::calendar::{Calendars, FreezeReason, Windows};
use crate::error::{Error, Result};
use crate::exec::console::Console;
use crate::exec::resume::Resumption;
use crate::exec::window::WindowLimit;
use crate::journal::event::{RunStatus, ScheduledSlot};
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
    /// The occurrence of the runbook's maintenance window this drive must start its steps in.
    pub window: Option<WindowLimit>,
    /// Started by the daemon for a schedule's slot (journaled with the run's start).
    pub slot: Option<ScheduledSlot>,
    /// A stop request (the daemon stopping) parks the run after the current step, to be
    /// resumed, instead of aborting it.
    pub park_on_stop: bool,
    /// Starting inside a freeze, as a supervisor approved (journaled right after the start).
    pub freeze_break: Option<FreezeBreakApproval>,
}

/// A supervisor's approval to start one run inside a freeze.
#[derive(Debug, Clone)]
pub struct FreezeBreakApproval {
    pub calendar: String,
    pub freeze: String,
    pub reason: String,
    pub approved_by: String,
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
    /// Why a run stopped between steps to go on later (status `parked`).
    pub pause_reason: Option<String>,
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

/// When a run may happen: the maintenance windows and freeze calendars of the config, at `now`.
pub struct Timing<'a> {
    pub windows: &'a Windows,
    pub calendars: &'a Calendars,
    /// How the config file is named in messages.
    pub config: String,
    pub now: DateTime<Utc>,
}

impl Timing<'_> {
    /// The occurrence of its maintenance window a run of `plan` must start its steps in: None
    /// for a runbook that names no window (or a dry run, which changes nothing); refused while
    /// the window is closed, saying when it next opens.
    pub fn window_for(
        &self,
        plan: &Plan,
        dry_run: bool,
        ignore_history: bool,
    ) -> Result<Option<WindowLimit>> {
        let Some(name) = plan.runbook.window.as_ref().filter(|_| !dry_run) else {
            return Ok(None);
        };
        let runbook = &plan.runbook.runbook;
        let Some(window) = self.windows.get(name) else {
            let names = self.windows.names();
            return Err(Error::UnknownWindow {
                runbook: runbook.clone(),
                window: name.clone(),
                config: self.config.clone(),
                known: if names.is_empty() {
                    " (it defines no windows: add one under `windows:`)".into()
                } else {
                    format!(" (it defines: {})", names.join(", "))
                },
            });
        };
        match window.open_at(self.now) {
            Some(_) => Ok(Some(WindowLimit {
                window: window.clone(),
                ignore_history,
            })),
            None => Err(Error::OutsideWindow {
                runbook: runbook.clone(),
                window: name.clone(),
                next: match window.next_opening(self.now) {
                    Some(next) => format!(
                        "at {} ({} from now)",
                        next.opens
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        span(next.opens - self.now)
                    ),
                    None if !window.enabled() => "never: the window is disabled".into(),
                    None => "never: its schedule has no further opening".into(),
                },
            }),
        }
    }

    /// The freeze a run of `plan` would break: None when the calendars are open, or the run
    /// changes nothing (a dry run, or a runbook whose every step is read-only).
    pub fn freeze_for(&self, plan: &Plan, dry_run: bool) -> Option<FreezeReason> {
        let changes_nothing = plan.all_steps().iter().all(|s| s.readonly);
        if dry_run || changes_nothing {
            return None;
        }
        let state = self.calendars.state_at(self.now);
        state.reasons.into_iter().next()
    }
}

/// A span for people: `3d 4h`, `2h 05m`, `12m`, `40s`.
pub fn span(delta: chrono::TimeDelta) -> String {
    let s = delta.num_seconds().max(0);
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, (s / 3600) % 24),
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s / 60) % 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The error for a run refused by `freeze`.
pub fn inside_freeze(freeze: &FreezeReason) -> Error {
    Error::InsideFreeze {
        calendar: freeze.calendar.clone(),
        freeze: freeze.event.clone(),
        until: freeze.until.map_or_else(
            || "further notice".into(),
            |u| u.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    }
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
