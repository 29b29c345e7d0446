//! The executor: drives a [`Plan`] step by step — conditions, dry runs, retries with backoff,
//! timeouts, parallel groups, manual steps and gates, failure policies and rollback — and
//! journals every state change before it moves on. Running scripts and commands is in
//! `attempts.rs`; gates, manual steps and the terminal are in `people.rs`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::Engine;
use serde_json::{Map, Value};

use crate::error::{exit, Error, Result};
use crate::exec::redact::Redactor;
use crate::journal::event::{AttemptStatus, Event, Phase, RunStatus, StepStatus};
use crate::journal::lease::Lease;
use crate::journal::view::{RunView, StepView};
use crate::journal::Journal;
use crate::people::directory::{Directory, Operator};
use crate::people::policy::{self, Policy, Verdict};
use crate::runbook::duration::format_duration;
use crate::runbook::params::{value_text, Params};
use crate::runbook::plan::{Expectation, Plan, PlannedStep, ScriptSource, StepKind};
use crate::runbook::template::{self, Placeholder, Quoting};
use crate::runbook::{OnFailure, OnTimeout};
use crate::script::{self, ScriptContext, ScriptInputs, ScriptOutcome};
use crate::sys::abort::AbortSignal;
use crate::sys::hostinfo;
use crate::sys::shell::{self, CommandSpec};
use crate::term::progress::{FinishedStep, Progress};
use crate::term::prompt;

mod attempts;
mod people;
pub mod redact;

pub use people::signoff_event;

pub struct RunRequest {
    pub plan: Plan,
    pub engine: Arc<Engine>,
    pub params: Params,
    pub operator: Operator,
    pub dry_run: bool,
    /// A person can answer prompts (a terminal, and not `--non-interactive`).
    pub interactive: bool,
    /// Without a person to ask, keep polling the journal for a sign-off instead of parking.
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

pub struct RunResult {
    pub run_id: String,
    pub status: RunStatus,
    pub exit_code: i32,
}

/// How one step ended, as the run loop sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepOutcome {
    Done(StepStatus),
    /// Waiting for a person; the run stops here with exit 3.
    Parked,
}

pub struct Executor {
    plan: Plan,
    engine: Arc<Engine>,
    params: Params,
    params_rhai: rhai::Map,
    operator: Operator,
    dry_run: bool,
    interactive: bool,
    run_id: String,
    journal: Mutex<Journal>,
    redactor: Arc<Redactor>,
    progress: Arc<dyn Progress>,
    abort: AbortSignal,
    /// Outputs of finished steps: `vars.<step>.<name>`.
    vars: Mutex<Vars>,
    started: Mutex<HashSet<String>>,
    tally: Mutex<Vec<(Phase, StepStatus)>>,
    expectations: Mutex<Vec<bool>>,
    runtime: tokio::runtime::Handle,
    wait: bool,
    supervision: Option<Supervision>,
    change: Option<String>,
    /// Steps finished before this process took over (a resumed run).
    prior: HashMap<(Phase, String), StepStatus>,
    /// Steps started before this process took over and never finished: re-entered without a
    /// second start (gates, manual steps, groups) or decided by `choices` (scripts, commands).
    reentered: HashSet<(Phase, String)>,
    choices: HashMap<String, InterruptedChoice>,
    rollback_for: Option<String>,
    /// A step's end, journaled together with whatever comes next (see `defer`).
    pending: Mutex<Pending>,
}

/// Events that wait for the next commit, and the lines to show once they are durable.
#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    lines: Vec<FinishedLine>,
}

/// A finished step's line, shown once its end is durable.
struct FinishedLine {
    id: String,
    name: String,
    status: StepStatus,
    duration: Option<Duration>,
    detail: Option<String>,
    advances: bool,
}

/// Starts a new run of `request` (or continues `request.resume`) and drives it until it
/// finishes or parks.
pub async fn run(
    request: RunRequest,
    journal: Journal,
    progress: Arc<dyn Progress>,
    abort: AbortSignal,
) -> Result<RunResult> {
    let resumed = request.resume.is_some();
    let (run_id, mut lease, state) = match request.resume {
        Some(resumption) => {
            let state = PriorState::of(&resumption.view);
            (
                resumption.view.id.clone(),
                resumption.lease,
                Some((state, resumption.choices)),
            )
        }
        None => {
            let run_id = ulid::Ulid::new().to_string();
            let lease = Lease::acquire(&request.db, &run_id)?;
            (run_id, lease, None)
        }
    };
    lease.keep_renewed();
    let redactor = Arc::new(Redactor::new(request.params.secret_values()));
    let params_rhai = to_rhai_map(
        request
            .params
            .values()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    )?;
    let (prior, choices) = state.unwrap_or_default();
    let executor = Executor {
        params_rhai,
        plan: request.plan,
        engine: request.engine,
        params: request.params,
        operator: request.operator,
        dry_run: request.dry_run,
        interactive: request.interactive,
        run_id,
        journal: Mutex::new(journal),
        redactor,
        progress,
        abort,
        vars: Mutex::new(Vars::from_json(prior.vars)?),
        started: Mutex::new(prior.started),
        tally: Mutex::new(prior.tally),
        expectations: Mutex::new(prior.expectations),
        runtime: tokio::runtime::Handle::current(),
        wait: request.wait,
        supervision: request.supervision,
        change: request.change,
        prior: prior.done,
        reentered: prior.reentered,
        choices,
        rollback_for: prior.rollback_for,
        pending: Mutex::new(Pending::default()),
    };
    let result = if resumed {
        executor.resume().await
    } else {
        executor.start().await
    };
    // Whatever ended the drive, a step's end still waiting for a commit is written now.
    let flushed = executor.record_all(Vec::new());
    let result = result.and_then(|r| flushed.map(|_| r));
    drop(lease);
    result
}

/// Step outputs as later steps see them: as JSON for placeholders, and already converted for
/// scripts (each step's outputs are converted once, when they are set).
struct Vars {
    json: Map<String, Value>,
    /// A shared `rhai::Map`: scripts get a reference, not a copy.
    rhai: rhai::Dynamic,
}

impl Vars {
    fn from_json(json: Map<String, Value>) -> Result<Self> {
        let rhai = rhai::Dynamic::from_map(to_rhai_map(json.clone())?).into_shared();
        Ok(Self { json, rhai })
    }

    fn insert(&mut self, step: &str, outputs: &Map<String, Value>) -> Result<()> {
        let converted = rhai::Dynamic::from_map(to_rhai_map(outputs.clone())?);
        match self.rhai.write_lock::<rhai::Map>() {
            Some(mut map) => {
                map.insert(step.into(), converted);
            }
            None => return Err(Error::Internal("step outputs are not a map".into())),
        }
        self.json
            .insert(step.to_string(), Value::Object(outputs.clone()));
        Ok(())
    }
}

/// What a resumed run already did, from its journal.
#[derive(Default)]
struct PriorState {
    done: HashMap<(Phase, String), StepStatus>,
    reentered: HashSet<(Phase, String)>,
    vars: Map<String, Value>,
    started: HashSet<String>,
    tally: Vec<(Phase, StepStatus)>,
    expectations: Vec<bool>,
    rollback_for: Option<String>,
}

impl PriorState {
    fn of(view: &RunView) -> Self {
        let mut state = PriorState {
            rollback_for: view.rollback_for.clone(),
            ..Default::default()
        };
        for step in &view.steps {
            let key = (step.phase, step.id.clone());
            state.started.insert(step.id.clone());
            match step.status {
                Some(status) => {
                    state.reentered.remove(&key);
                    state.done.insert(key, status);
                    if step.kind != "parallel" {
                        state.tally.push((step.phase, status));
                    }
                }
                None => {
                    state.done.remove(&key);
                    state.reentered.insert(key);
                }
            }
            if let Some(attempt) = step.attempts.last() {
                state
                    .vars
                    .insert(step.id.clone(), Value::Object(attempt.outputs.clone()));
            }
            if let Some(e) = &step.expectation {
                state.expectations.push(e.passed);
            }
        }
        state
    }
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

impl Executor {
    async fn start(&self) -> Result<RunResult> {
        let rb = &self.plan.runbook;
        self.record(Event::RunStarted {
            runbook: rb.runbook.clone(),
            title: rb.title.clone(),
            version: rb.version,
            content_hash: self.plan.source.content_hash.clone(),
            // Absolute, so that resume and sign-off find the file from any folder.
            path: std::fs::canonicalize(&self.plan.source.path)
                .unwrap_or_else(|_| self.plan.source.path.clone())
                .display()
                .to_string(),
            params: self.params.redacted(),
            operator: self.operator.name.clone(),
            operator_verified: self.operator.verified(),
            host: hostinfo::hostname(),
            dry_run: self.dry_run,
            kind: rb.kind.name().to_string(),
            total_steps: self.plan.steps.len(),
            pid: std::process::id(),
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            person: self.operator.person.clone(),
            role: self.operator.role.map(|r| r.name().to_string()),
            auth: self.operator.auth.name().to_string(),
            supervisor: self.supervision.as_ref().map(|s| s.supervisor.clone()),
            change: self.change.clone(),
            owner: rb.owner.clone(),
            window: rb.window.clone(),
            risk: rb.risk.name().to_string(),
        })?;
        let dry = if self.dry_run { " (dry run)" } else { "" };
        // The run id is the first line: scripts and people read it from there.
        self.progress.run_started(
            &format!("run {} {} v{}{dry}", self.run_id, rb.runbook, rb.version),
            self.plan.steps.len(),
        );
        self.progress.message(&format!(
            "{} — {} step(s), operator {}{}",
            rb.title,
            self.plan.steps.len(),
            self.operator.name,
            if self.operator.verified() {
                ""
            } else {
                " (unverified)"
            }
        ));
        let started = Instant::now();
        let status = self.drive().await;
        self.progress.finish();
        let status = status?;
        self.conclude(status, started.elapsed())
    }

    async fn resume(&self) -> Result<RunResult> {
        self.record(Event::RunResumed {
            by: self.operator.name.clone(),
            pid: std::process::id(),
        })?;
        let rb = &self.plan.runbook;
        self.progress.run_started(
            &format!(
                "run {} {} v{} (resumed)",
                self.run_id, rb.runbook, rb.version
            ),
            self.plan.steps.len(),
        );
        self.progress
            .message(&format!("{} — resumed by {}", rb.title, self.operator.name));
        let started = Instant::now();
        let status = match self.rollback_for.clone() {
            // Interrupted during a rollback: finish the rollback, then the run has failed.
            Some(failed) => match self.plan.steps.iter().find(|s| s.id == failed) {
                Some(step) => self.rollback(step).await.map(|_| RunStatus::Failed),
                None => Ok(RunStatus::Failed),
            },
            None => self.drive().await,
        };
        self.progress.finish();
        self.conclude(status?, started.elapsed())
    }

    async fn drive(&self) -> Result<RunStatus> {
        let mut failed = self
            .tally
            .lock()
            .map(|t| t.contains(&(Phase::Main, StepStatus::Failed)))
            .unwrap_or(false);
        for step in &self.plan.steps {
            if self.abort.is_requested() {
                return self.aborted_between_steps();
            }
            match self.run_step(step, Phase::Main, None).await? {
                StepOutcome::Parked => return Ok(RunStatus::AwaitingSignoff),
                StepOutcome::Done(
                    StepStatus::Succeeded | StepStatus::Skipped | StepStatus::WouldRun,
                ) => {}
                StepOutcome::Done(StepStatus::Aborted) => {
                    self.record(Event::AbortRequested {
                        by: self.operator.name.clone(),
                    })?;
                    return Ok(RunStatus::Aborted);
                }
                StepOutcome::Done(StepStatus::Rejected) => return Ok(RunStatus::Rejected),
                StepOutcome::Done(StepStatus::Failed) => {
                    // An operator's stop request wins over the failure policy, except that a
                    // rollback still runs: it is what makes stopping here safe.
                    let stop = self.abort.is_requested();
                    match step.on_failure {
                        OnFailure::Rollback => {
                            self.rollback(step).await?;
                            if stop {
                                return self.aborted_between_steps();
                            }
                            return Ok(RunStatus::Failed);
                        }
                        _ if stop => return self.aborted_between_steps(),
                        OnFailure::Continue => failed = true,
                        OnFailure::Abort => return Ok(RunStatus::Failed),
                    }
                }
            }
        }
        Ok(if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        })
    }

    fn aborted_between_steps(&self) -> Result<RunStatus> {
        self.record(Event::AbortRequested {
            by: self.operator.name.clone(),
        })?;
        self.progress
            .message("stopped at the operator's request before the next step");
        Ok(RunStatus::Aborted)
    }

    fn conclude(&self, status: RunStatus, elapsed: Duration) -> Result<RunResult> {
        let exit_code = match status {
            RunStatus::Succeeded => exit::SUCCESS,
            RunStatus::Failed => exit::STEP_FAILED,
            RunStatus::AwaitingSignoff => exit::AWAITING_SIGNOFF,
            RunStatus::Aborted | RunStatus::Rejected => exit::REJECTED_OR_ABORTED,
            RunStatus::Running => exit::STEP_FAILED,
            RunStatus::AwaitingAcceptance => exit::AWAITING_SIGNOFF,
        };
        let summary = self.summary();
        if let (Some(s), true) = (&self.supervision, status != RunStatus::AwaitingSignoff) {
            self.record(Event::RunFinished {
                status,
                exit_code,
                summary: summary.clone(),
            })?;
            self.progress.message(&format!(
                "run {} {} in {}: {summary}. It awaits acceptance by the supervisor {}: opsbook signoff {} --accept (or --reject-run) --as {}",
                self.run_id,
                status.name(),
                format_duration(elapsed),
                s.supervisor,
                self.run_id,
                s.supervisor
            ));
            return Ok(RunResult {
                run_id: self.run_id.clone(),
                status: RunStatus::AwaitingAcceptance,
                exit_code: exit::AWAITING_SIGNOFF,
            });
        }
        if status == RunStatus::AwaitingSignoff {
            self.progress.message(&format!(
                "run {} parked ({summary}); it waits for a person. Continue it with: opsbook resume {}",
                self.run_id, self.run_id
            ));
        } else {
            self.record(Event::RunFinished {
                status,
                exit_code,
                summary: summary.clone(),
            })?;
            self.progress.message(&format!(
                "run {} {} in {}: {summary}. Details: opsbook show {}",
                self.run_id,
                status.name(),
                format_duration(elapsed),
                self.run_id
            ));
        }
        Ok(RunResult {
            run_id: self.run_id.clone(),
            status,
            exit_code,
        })
    }

    fn summary(&self) -> String {
        let tally = self.tally.lock().map(|t| t.clone()).unwrap_or_default();
        let count = |s: StepStatus| tally.iter().filter(|t| **t == (Phase::Main, s)).count();
        let mut parts = Vec::new();
        for status in [
            StepStatus::Succeeded,
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::WouldRun,
            StepStatus::Rejected,
            StepStatus::Aborted,
        ] {
            let n = count(status);
            if n > 0 || status == StepStatus::Succeeded || status == StepStatus::Failed {
                parts.push(format!("{n} {}", status.name()));
            }
        }
        // Rollback steps are counted apart: a rolled-back run must not read as mostly done.
        let rollback: Vec<StepStatus> = tally
            .iter()
            .filter(|(phase, _)| *phase == Phase::Rollback)
            .map(|(_, s)| *s)
            .collect();
        if !rollback.is_empty() {
            let failed = rollback
                .iter()
                .filter(|s| **s == StepStatus::Failed)
                .count();
            let ran = rollback
                .iter()
                .filter(|s| **s == StepStatus::Succeeded)
                .count();
            parts.push(format!(
                "rollback: {ran} of {} steps done, {failed} failed",
                rollback.len()
            ));
        }
        let expectations = self
            .expectations
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        if !expectations.is_empty() {
            let passed = expectations.iter().filter(|p| **p).count();
            parts.push(format!(
                "expectations: {passed} of {} passed",
                expectations.len()
            ));
        }
        parts.join(", ")
    }

    /// Journals an event, secrets masked, in its own durable transaction.
    fn record(&self, event: Event) -> Result<()> {
        self.record_all(vec![event])
    }

    /// Journals events, secrets masked, in one durable transaction — preceded by any step's
    /// end that was waiting for it — and then shows the lines of the ends it made durable.
    fn record_all(&self, events: Vec<Event>) -> Result<()> {
        let (events, lines) = {
            let mut pending = self
                .pending
                .lock()
                .map_err(|_| Error::Internal("the pending events lock was poisoned".into()))?;
            let mut all = std::mem::take(&mut pending.events);
            all.extend(events);
            (all, std::mem::take(&mut pending.lines))
        };
        if events.is_empty() {
            return Ok(());
        }
        self.commit(events)?;
        for line in lines {
            self.progress.step_finished(&FinishedStep {
                id: &line.id,
                name: &line.name,
                status: line.status,
                duration: line.duration,
                detail: line.detail.as_deref(),
                advances: line.advances,
            });
        }
        Ok(())
    }

    fn commit(&self, events: Vec<Event>) -> Result<()> {
        let events = if self.redactor.is_empty() {
            events
        } else {
            events
                .into_iter()
                .map(|event| {
                    let mut value = serde_json::to_value(&event)
                        .map_err(|e| Error::Internal(format!("event to JSON: {e}")))?;
                    self.redactor.value(&mut value);
                    serde_json::from_value(value)
                        .map_err(|e| Error::Internal(format!("event from JSON: {e}")))
                })
                .collect::<Result<Vec<_>>>()?
        };
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
        journal.append_all(&self.run_id, &events)
    }

    // ----- one step ----------------------------------------------------------------------

    fn run_step<'a>(
        &'a self,
        step: &'a PlannedStep,
        phase: Phase,
        group: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Result<StepOutcome>> + 'a>> {
        Box::pin(async move {
            let advances = group.is_none() && phase == Phase::Main;
            let key = (phase, step.id.clone());
            if let Some(status) = self.prior.get(&key) {
                // Finished before this process took over: never run again.
                self.progress.step_finished(&FinishedStep {
                    id: &step.id,
                    name: &step.name,
                    status: *status,
                    duration: None,
                    detail: Some("done before the resume"),
                    advances,
                });
                return Ok(StepOutcome::Done(*status));
            }
            let reentered = self.reentered.contains(&key);
            let leaf = matches!(step.kind, StepKind::Rhai { .. } | StepKind::Shell { .. });
            if reentered && leaf {
                if let Some(outcome) = self.decide_interrupted(step, advances)? {
                    return Ok(outcome);
                }
            } else if !reentered {
                if let Some(when) = &step.when {
                    match self.evaluate(step, when.ast.clone(), None).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let reason = format!("condition `when: {}` is false", when.text.trim());
                            return self.skip(step, phase, group, reason, None, advances);
                        }
                        Err(message) => {
                            self.begin(step, phase, group)?;
                            let reason =
                                format!("cannot evaluate `when: {}`: {message}", when.text.trim());
                            return self.end(
                                step,
                                StepStatus::Failed,
                                0,
                                Some(reason),
                                None,
                                advances,
                            );
                        }
                    }
                }
                if self.dry_run && !step.readonly && !matches!(step.kind, StepKind::Parallel(_)) {
                    let would_run = self.describe(step);
                    return self.skip(
                        step,
                        phase,
                        group,
                        "dry run: the step is not readonly".into(),
                        Some(would_run),
                        advances,
                    );
                }
            }
            if !reentered || leaf {
                self.begin(step, phase, group)?;
            } else {
                self.progress.step_started(&step.id, &step.name);
            }
            let started = Instant::now();
            match &step.kind {
                StepKind::Rhai { .. } | StepKind::Shell { .. } => {
                    self.run_attempts(step, advances, started).await
                }
                StepKind::Manual { .. } | StepKind::Gate(_) => {
                    self.await_person(step, advances, started).await
                }
                StepKind::Parallel(members) => {
                    let outcomes = futures::future::join_all(
                        members
                            .iter()
                            .map(|m| self.run_step(m, phase, Some(&step.id))),
                    )
                    .await;
                    let mut worst = StepStatus::Succeeded;
                    for outcome in outcomes {
                        if let StepOutcome::Done(status) = outcome? {
                            worst = worst.max(status);
                        }
                    }
                    let reason = (worst != StepStatus::Succeeded)
                        .then(|| format!("the worst member outcome was {}", worst.name()));
                    self.end(step, worst, 0, reason, Some(started.elapsed()), advances)
                }
            }
        })
    }

    /// Applies the decision about a script or command that was interrupted; None: run it again.
    fn decide_interrupted(
        &self,
        step: &PlannedStep,
        advances: bool,
    ) -> Result<Option<StepOutcome>> {
        let choice = self
            .choices
            .get(&step.id)
            .cloned()
            .unwrap_or(InterruptedChoice::Abort);
        let (decision, comment) = match &choice {
            InterruptedChoice::Rerun { why } => ("rerun", Some(why.clone())),
            InterruptedChoice::MarkDone { comment } => ("marked-done", Some(comment.clone())),
            InterruptedChoice::Abort => ("abort", None),
        };
        self.record(Event::InterruptedStepDecided {
            step: step.id.clone(),
            decision: decision.into(),
            by: self.operator.name.clone(),
            comment,
        })?;
        match choice {
            InterruptedChoice::Rerun { .. } => Ok(None),
            InterruptedChoice::MarkDone { comment } => {
                let reason = format!(
                    "interrupted; marked done by {}: {comment}",
                    self.operator.name
                );
                self.end(step, StepStatus::Succeeded, 0, Some(reason), None, advances)
                    .map(Some)
            }
            InterruptedChoice::Abort => {
                let reason = format!("interrupted; the run was aborted by {}", self.operator.name);
                self.end(step, StepStatus::Aborted, 0, Some(reason), None, advances)
                    .map(Some)
            }
        }
    }

    fn begin(&self, step: &PlannedStep, phase: Phase, group: Option<&str>) -> Result<()> {
        self.record(Event::StepStarted {
            step: step.id.clone(),
            name: step.name.clone(),
            kind: step.kind.name().into(),
            phase,
            group: group.map(str::to_string),
        })?;
        if let Ok(mut started) = self.started.lock() {
            started.insert(step.id.clone());
        }
        self.progress.step_started(&step.id, &step.name);
        Ok(())
    }

    fn end(
        &self,
        step: &PlannedStep,
        status: StepStatus,
        attempts: u32,
        reason: Option<String>,
        duration: Option<Duration>,
        advances: bool,
    ) -> Result<StepOutcome> {
        self.end_after(
            Vec::new(),
            step,
            status,
            attempts,
            reason,
            duration,
            advances,
        )
    }

    /// Ends a step, journaling `before` (its last attempt, its expectation) in the same
    /// transaction as the step's end.
    #[allow(clippy::too_many_arguments)]
    fn end_after(
        &self,
        mut before: Vec<Event>,
        step: &PlannedStep,
        status: StepStatus,
        attempts: u32,
        reason: Option<String>,
        duration: Option<Duration>,
        advances: bool,
    ) -> Result<StepOutcome> {
        let reason = reason.map(|r| self.redactor.text(&r));
        before.push(Event::StepFinished {
            step: step.id.clone(),
            status,
            attempts,
            reason: reason.clone(),
        });
        self.defer(before, step, status, duration, reason, advances)
    }

    /// A step's end is journaled in the same transaction as what the run does next (the next
    /// step's start, a pause, the run's end), and always before that next thing happens: one
    /// durable commit per step instead of two. Its line is shown once it is durable.
    fn defer(
        &self,
        events: Vec<Event>,
        step: &PlannedStep,
        status: StepStatus,
        duration: Option<Duration>,
        detail: Option<String>,
        advances: bool,
    ) -> Result<StepOutcome> {
        self.count(step, status);
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| Error::Internal("the pending events lock was poisoned".into()))?;
        pending.events.extend(events);
        pending.lines.push(FinishedLine {
            id: step.id.clone(),
            name: step.name.clone(),
            status,
            duration,
            detail,
            advances,
        });
        Ok(StepOutcome::Done(status))
    }

    fn skip(
        &self,
        step: &PlannedStep,
        phase: Phase,
        group: Option<&str>,
        reason: String,
        would_run: Option<String>,
        advances: bool,
    ) -> Result<StepOutcome> {
        let status = if would_run.is_some() {
            StepStatus::WouldRun
        } else {
            StepStatus::Skipped
        };
        let would_run = would_run.map(|w| self.redactor.text(&w));
        let skipped = Event::StepSkipped {
            step: step.id.clone(),
            name: step.name.clone(),
            kind: step.kind.name().into(),
            phase,
            group: group.map(str::to_string),
            reason: reason.clone(),
            would_run: would_run.clone(),
        };
        let detail = would_run
            .map(|w| format!("would run: {w}"))
            .unwrap_or(reason);
        self.defer(vec![skipped], step, status, None, Some(detail), advances)
    }

    fn finished(
        &self,
        step: &PlannedStep,
        status: StepStatus,
        duration: Option<Duration>,
        detail: Option<&str>,
        advances: bool,
    ) {
        self.count(step, status);
        self.progress.step_finished(&FinishedStep {
            id: &step.id,
            name: &step.name,
            status,
            duration,
            detail,
            advances,
        });
    }

    /// Counts a finished step for the summary (group entries are not steps of their own).
    fn count(&self, step: &PlannedStep, status: StepStatus) {
        if matches!(step.kind, StepKind::Parallel(_)) {
            return;
        }
        let phase = if self.plan.rollback.iter().any(|r| r.id == step.id) {
            Phase::Rollback
        } else {
            Phase::Main
        };
        if let Ok(mut tally) = self.tally.lock() {
            tally.push((phase, status));
        }
    }

    /// What a step would do, for dry runs: the rendered command, or the first script line.
    fn describe(&self, step: &PlannedStep) -> String {
        match &step.kind {
            StepKind::Shell { command } => self
                .render(command, Quoting::Shell)
                .unwrap_or_else(|e| format!("{command} ({e})")),
            StepKind::Rhai {
                source: ScriptSource::File(file),
                ..
            } => format!("script {file}"),
            StepKind::Rhai {
                source: ScriptSource::Inline(text),
                ..
            } => {
                let first = text
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default()
                    .trim();
                format!("rhai: {first}")
            }
            StepKind::Manual { instructions } => format!(
                "manual: {}",
                self.render(instructions, Quoting::Plain)
                    .unwrap_or_else(|_| instructions.clone())
            ),
            StepKind::Gate(gate) => format!("gate: {}", gate.prompt),
            StepKind::Parallel(members) => format!("parallel group of {}", members.len()),
        }
    }

    // ----- rollback ------------------------------------------------------------------------

    async fn rollback(&self, failed: &PlannedStep) -> Result<()> {
        let planned: Vec<String> = self
            .plan
            .rollback
            .iter()
            .rev()
            .map(|s| s.id.clone())
            .collect();
        self.record(Event::RollbackStarted {
            failed_step: failed.id.clone(),
            steps: planned.clone(),
        })?;
        if planned.is_empty() {
            self.progress.message(&format!(
                "step `{}` failed; it asks for a rollback, but the runbook has no rollback steps",
                failed.id
            ));
            return Ok(());
        }
        self.progress.message(&format!(
            "step `{}` failed; rolling back: {}",
            failed.id,
            planned.join(", ")
        ));
        let started = self.started.lock().map(|s| s.clone()).unwrap_or_default();
        for step in self.plan.rollback.iter().rev() {
            if let Some(undone) = step.undo.as_ref().filter(|u| !started.contains(*u)) {
                let reason = format!("it undoes `{undone}`, which did not run");
                self.skip(step, Phase::Rollback, None, reason, None, false)?;
                continue;
            }
            let outcome = self.run_step(step, Phase::Rollback, None).await?;
            if outcome == StepOutcome::Done(StepStatus::Failed)
                && step.on_failure == OnFailure::Abort
            {
                self.progress
                    .message(&format!("rollback stopped: step `{}` failed", step.id));
                break;
            }
        }
        Ok(())
    }
}

fn to_rhai_map(values: impl IntoIterator<Item = (String, Value)>) -> Result<rhai::Map> {
    values
        .into_iter()
        .map(|(k, v)| match rhai::serde::to_dynamic(&v) {
            Ok(d) => Ok((k.into(), d)),
            Err(e) => Err(Error::Internal(format!("value of `{k}` for a script: {e}"))),
        })
        .collect()
}
