//! The executor: drives a [`Plan`] step by step — conditions, dry runs, retries with backoff,
//! timeouts, parallel groups, manual steps and gates, failure policies and rollback — and
//! journals every state change before it moves on.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::Engine;
use serde_json::{Map, Value};

use crate::abort::AbortSignal;
use crate::duration::format_duration;
use crate::error::{exit, Error, Result};
use crate::event::{AttemptStatus, Event, Phase, RunStatus, StepStatus};
use crate::gate::{self, Policy, Verdict};
use crate::history::{RunView, StepView};
use crate::hostinfo;
use crate::identity::{Directory, Operator};
use crate::journal::Journal;
use crate::lease::Lease;
use crate::params::{value_text, Params};
use crate::plan::{Expectation, Plan, PlannedStep, ScriptSource, StepKind};
use crate::progress::{FinishedStep, Progress};
use crate::prompt;
use crate::redact::Redactor;
use crate::runbook::{OnFailure, OnTimeout};
use crate::script::{self, ScriptContext, ScriptInputs, ScriptOutcome};
use crate::shell::{self, CommandSpec};
use crate::template::{self, Placeholder, Quoting};

/// Lines and bytes of output kept in a step's journaled excerpt.
const EXCERPT_LINES: usize = 40;
const EXCERPT_BYTES: usize = 4096;
/// A shell step's stdout as an output (`vars.<step>.stdout`) is cut at this size.
const STDOUT_OUTPUT_BYTES: usize = 64 * 1024;

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

enum TerminalAnswer {
    /// Something was recorded (or nothing usable was said): look at the verdict again.
    Again,
    /// Nobody decides now: park.
    Defer,
}

/// The journal event of one sign-off.
pub fn signoff_event(
    step: &str,
    signer: &Operator,
    decision: &str,
    comment: Option<String>,
    evidence: Map<String, Value>,
    binding: String,
) -> Event {
    Event::SignoffRecorded {
        step: step.to_string(),
        signer: signer.name.clone(),
        person: signer.person.clone(),
        role: signer.role.map(|r| r.name()).unwrap_or("unverified").into(),
        auth: signer.auth.name().into(),
        decision: decision.into(),
        comment,
        evidence,
        binding,
    }
}

struct AttemptResult {
    status: AttemptStatus,
    exit_code: Option<i32>,
    duration: Duration,
    outputs: Map<String, Value>,
    metrics: Map<String, Value>,
    excerpt: String,
    error: Option<String>,
}

impl AttemptResult {
    fn failed(error: String) -> Self {
        Self {
            status: AttemptStatus::Failed,
            exit_code: None,
            duration: Duration::ZERO,
            outputs: Map::new(),
            metrics: Map::new(),
            excerpt: String::new(),
            error: Some(error),
        }
    }
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
            kind: format!("{:?}", rb.kind).to_lowercase(),
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
            risk: format!("{:?}", rb.risk).to_lowercase(),
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
                    let inputs = self.script_inputs()?;
                    match script::eval_condition(
                        &self.engine,
                        &when.ast,
                        &inputs,
                        None,
                        self.abort.clone(),
                    ) {
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

    // ----- scripts and commands --------------------------------------------------------

    async fn run_attempts(
        &self,
        step: &PlannedStep,
        advances: bool,
        started: Instant,
    ) -> Result<StepOutcome> {
        let mut attempt = 0;
        let (result, unrecorded) = loop {
            attempt += 1;
            let result = match &step.kind {
                StepKind::Shell { command } => self.attempt_shell(step, command).await,
                StepKind::Rhai { ast, .. } => self.attempt_rhai(step, ast.clone()).await,
                _ => unreachable!("run_attempts is only called for rhai and shell steps"),
            };
            let finished = Event::AttemptFinished {
                step: step.id.clone(),
                attempt,
                status: result.status,
                exit_code: result.exit_code,
                duration_ms: result.duration.as_millis() as u64,
                outputs: result.outputs.clone(),
                metrics: result.metrics.clone(),
                excerpt: result.excerpt.clone(),
                error: result.error.clone(),
            };
            let retryable = matches!(
                result.status,
                AttemptStatus::Failed | AttemptStatus::TimedOut
            );
            if !retryable || attempt >= step.retry.attempts || self.abort.is_requested() {
                // The last attempt is journaled together with the step's end.
                break (result, Some(finished));
            }
            self.record(finished)?;
            let delay = step.retry.delay_before(attempt + 1);
            self.progress.step_line(
                &step.id,
                &format!(
                    "attempt {attempt} of {} failed; next in {}",
                    step.retry.attempts,
                    format_duration(delay)
                ),
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.abort.requested() => break (result, None),
            }
        };
        // Outputs are visible to later steps whatever the outcome: a summary step must be able
        // to tell a failed check from a skipped one.
        if let Ok(mut vars) = self.vars.lock() {
            vars.insert(&step.id, &result.outputs)?;
        }
        let mut before: Vec<Event> = unrecorded.into_iter().collect();
        let expectation_missed = self.check_expectation(step, &result, &mut before)?;
        let (status, reason) = match result.status {
            AttemptStatus::Succeeded if expectation_missed.is_some() => {
                (StepStatus::Failed, expectation_missed)
            }
            AttemptStatus::Succeeded => (StepStatus::Succeeded, None),
            AttemptStatus::Skipped => (StepStatus::Skipped, result.error.clone()),
            AttemptStatus::Aborted => (
                StepStatus::Aborted,
                Some("stopped at the operator's request".into()),
            ),
            AttemptStatus::Failed | AttemptStatus::TimedOut => {
                let tries = if attempt > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                (
                    StepStatus::Failed,
                    result.error.clone().map(|e| format!("{e}{tries}")),
                )
            }
        };
        self.end_after(
            before,
            step,
            status,
            attempt,
            reason,
            Some(started.elapsed()),
            advances,
        )
    }

    fn base_env(&self, step: &PlannedStep) -> Vec<(String, String)> {
        let mut env = self.params.environment();
        env.push(("OPSBOOK_RUN_ID".into(), self.run_id.clone()));
        env.push(("OPSBOOK_STEP_ID".into(), step.id.clone()));
        env.push(("OPSBOOK_DRY_RUN".into(), self.dry_run.to_string()));
        env.push(("OPSBOOK_RUNBOOK".into(), self.plan.runbook.runbook.clone()));
        env
    }

    fn render(&self, text: &str, quoting: Quoting) -> Result<String, String> {
        let vars = self
            .vars
            .lock()
            .map_err(|_| "the outputs lock was poisoned".to_string())?;
        template::render(text, quoting, |placeholder| match placeholder {
            // A secret never goes into a command line (other users can read argv): the command
            // reads it from its environment instead.
            Placeholder::Param(name)
                if quoting == Quoting::Shell
                    && self.params.is_secret(name)
                    && self.params.text(name).is_some() =>
            {
                Some(format!("\"${}\"", crate::params::env_name(name)))
            }
            Placeholder::Param(name) => self.params.text(name),
            Placeholder::Var { step, output } => vars
                .json
                .get(step)
                .and_then(|o| o.get(output))
                .map(value_text),
            Placeholder::RunId => Some(self.run_id.clone()),
            Placeholder::DryRun => Some(self.dry_run.to_string()),
        })
    }

    fn line_sink(&self, step: &PlannedStep) -> Arc<dyn Fn(&str) + Send + Sync> {
        let progress = self.progress.clone();
        let redactor = self.redactor.clone();
        let id = step.id.clone();
        Arc::new(move |line: &str| progress.step_line(&id, &redactor.text(line)))
    }

    async fn attempt_shell(&self, step: &PlannedStep, command: &str) -> AttemptResult {
        let rendered = match self.render(command, Quoting::Shell) {
            Ok(r) => r,
            Err(e) => return AttemptResult::failed(format!("cannot render the command: {e}")),
        };
        let spec = CommandSpec {
            command: rendered,
            env: self.base_env(step),
            timeout: step.timeout,
        };
        let sink = self.line_sink(step);
        let output = match shell::run_command(&spec, &self.abort, |line| sink(line)).await {
            Ok(output) => output,
            Err(e) => return AttemptResult::failed(format!("cannot start /bin/sh: {e}")),
        };
        let stdout = output.stdout.text();
        let stderr = output.stderr.text();
        let (status, error) = if output.timed_out {
            (
                AttemptStatus::TimedOut,
                Some(format!(
                    "timed out after {}; its process group was stopped",
                    format_duration(step.timeout)
                )),
            )
        } else if output.aborted {
            (
                AttemptStatus::Aborted,
                Some("stopped at the operator's request".into()),
            )
        } else {
            match (output.exit_code, output.signal) {
                (Some(0), _) => (AttemptStatus::Succeeded, None),
                (Some(code), _) => {
                    let last = stderr
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| format!(": {}", l.trim()))
                        .unwrap_or_default();
                    (
                        AttemptStatus::Failed,
                        Some(format!("exit code {code}{last}")),
                    )
                }
                (None, Some(signal)) => (
                    AttemptStatus::Failed,
                    Some(format!("killed by signal {signal}")),
                ),
                (None, None) => (
                    AttemptStatus::Failed,
                    Some("ended without an exit status".into()),
                ),
            }
        };
        let mut outputs = Map::new();
        if let Some(code) = output.exit_code {
            outputs.insert("exit_code".into(), Value::from(code));
        }
        outputs.insert(
            "stdout".into(),
            Value::from(cut(stdout.trim_end(), STDOUT_OUTPUT_BYTES)),
        );
        AttemptResult {
            status,
            exit_code: output.exit_code,
            duration: output.duration,
            outputs,
            metrics: Map::new(),
            excerpt: excerpt(&[("", &stdout), ("stderr", &stderr)]),
            error,
        }
    }

    fn script_inputs(&self) -> Result<ScriptInputs> {
        let vars = self
            .vars
            .lock()
            .map_err(|_| Error::Internal("the outputs lock was poisoned".into()))?;
        Ok(ScriptInputs {
            params: self.params_rhai.clone(),
            vars: vars.rhai.clone(),
            dry_run: self.dry_run,
        })
    }

    async fn attempt_rhai(&self, step: &PlannedStep, ast: Arc<rhai::AST>) -> AttemptResult {
        let inputs = match self.script_inputs() {
            Ok(inputs) => inputs,
            Err(e) => return AttemptResult::failed(e.to_string()),
        };
        let context = ScriptContext::new(
            step.timeout,
            self.abort.clone(),
            self.base_env(step),
            self.runtime.clone(),
            self.line_sink(step),
        );
        let engine = self.engine.clone();
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            script::run_script(&engine, &ast, &inputs, context)
        })
        .await;
        let (outcome, context) = match joined {
            Ok(done) => done,
            Err(e) => {
                return AttemptResult::failed(format!("the script stopped unexpectedly: {e}"))
            }
        };
        let (status, error) = match outcome {
            ScriptOutcome::Succeeded => (AttemptStatus::Succeeded, None),
            ScriptOutcome::Failed(message) => (AttemptStatus::Failed, Some(message)),
            ScriptOutcome::TimedOut => (
                AttemptStatus::TimedOut,
                Some(format!("timed out after {}", format_duration(step.timeout))),
            ),
            ScriptOutcome::Aborted => (
                AttemptStatus::Aborted,
                Some("stopped at the operator's request".into()),
            ),
            ScriptOutcome::Skipped(reason) => (AttemptStatus::Skipped, Some(reason)),
        };
        let mut log = context.log.join("\n");
        if context.dropped_log_lines > 0 {
            log.push_str(&format!(
                "\n[... {} more lines not kept ...]",
                context.dropped_log_lines
            ));
        }
        let metrics = context
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect();
        AttemptResult {
            status,
            exit_code: None,
            duration: started.elapsed(),
            outputs: context.outputs,
            metrics,
            excerpt: excerpt(&[("", &log)]),
            error,
        }
    }

    // ----- people ------------------------------------------------------------------------

    async fn ask<T: Send + 'static>(
        &self,
        question: impl FnOnce() -> Option<T> + Send + 'static,
    ) -> Option<T> {
        let progress = self.progress.clone();
        let asking = tokio::task::spawn_blocking(move || {
            let mut answer = None;
            let mut question = Some(question);
            progress.suspend(&mut || answer = question.take().and_then(|q| q()));
            answer
        });
        tokio::select! {
            answer = asking => answer.ok().flatten(),
            _ = self.abort.requested() => None,
        }
    }

    fn park(&self, step: &PlannedStep, reason: String, waiting_for: &str) -> Result<StepOutcome> {
        self.record(Event::RunPaused {
            step: step.id.clone(),
            reason: reason.clone(),
            waiting_for: waiting_for.into(),
        })?;
        self.progress.step_parked(
            &step.id,
            &format!("… {:<24} parked     — {reason}", step.id),
        );
        Ok(StepOutcome::Parked)
    }

    /// A test script's `expect:` on a script or command step: journaled; a miss fails the
    /// step (the returned reason).
    fn check_expectation(
        &self,
        step: &PlannedStep,
        result: &AttemptResult,
        events: &mut Vec<Event>,
    ) -> Result<Option<String>> {
        let Some(Expectation::Check(expr)) = &step.expect else {
            return Ok(None);
        };
        let (passed, detail) = if result.status != AttemptStatus::Succeeded {
            (false, Some("the step did not succeed".to_string()))
        } else {
            let outputs = to_rhai_map(result.outputs.clone())?;
            let inputs = self.script_inputs()?;
            match script::eval_condition(
                &self.engine,
                &expr.ast,
                &inputs,
                Some(("outputs", outputs)),
                self.abort.clone(),
            ) {
                Ok(true) => (true, None),
                Ok(false) => (
                    false,
                    Some(format!(
                        "outputs were {}",
                        Value::Object(result.outputs.clone())
                    )),
                ),
                Err(e) => (false, Some(e)),
            }
        };
        events.push(Event::ExpectationChecked {
            step: step.id.clone(),
            passed,
            expected: expr.text.trim().to_string(),
            detail: detail.clone(),
        });
        if let Ok(mut e) = self.expectations.lock() {
            e.push(passed);
        }
        Ok((!passed).then(|| {
            let detail = detail.map(|d| format!(": {d}")).unwrap_or_default();
            format!("expectation `{}` not met{detail}", expr.text.trim())
        }))
    }

    fn record_expectation(
        &self,
        step: &PlannedStep,
        expected: &str,
        passed: bool,
        detail: Option<String>,
    ) -> Result<()> {
        self.record(Event::ExpectationChecked {
            step: step.id.clone(),
            passed,
            expected: expected.to_string(),
            detail,
        })?;
        if let Ok(mut e) = self.expectations.lock() {
            e.push(passed);
        }
        Ok(())
    }

    /// The run as the journal has it now (sign-offs may come from other processes).
    fn current_view(&self) -> Result<RunView> {
        self.record_all(Vec::new())?;
        let journal = self
            .journal
            .lock()
            .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
        RunView::from_events(&journal.run_events(&self.run_id)?)
    }

    /// A gate, or a manual step: decided at the terminal, by sign-offs from another terminal
    /// (polled with `--wait`), or parked.
    async fn await_person(
        &self,
        step: &PlannedStep,
        advances: bool,
        started: Instant,
    ) -> Result<StepOutcome> {
        let person = self.supervision.as_ref().map(|s| s.person.as_str());
        let Some(mut policy) = Policy::for_step(step, person) else {
            return Err(Error::Internal(format!("step {} needs no person", step.id)));
        };
        {
            let view = self.current_view()?;
            let mut journal = self
                .journal
                .lock()
                .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
            policy.resolve_people(&view, &mut Directory::new(&mut journal))?;
            policy.runner_people.push(self.operator.person.clone());
        }
        loop {
            let view = self.current_view()?;
            let Some(step_view) = view.step(&step.id).cloned() else {
                return Err(Error::Internal(format!("step {} has no record", step.id)));
            };
            if step_view.status.is_some() {
                // Decided at the terminal (a skip) since the last look.
                let status = step_view.status.unwrap_or(StepStatus::Skipped);
                self.finished(
                    step,
                    status,
                    Some(started.elapsed()),
                    step_view.reason.as_deref(),
                    advances,
                );
                return Ok(StepOutcome::Done(status));
            }
            let observe = match (&step.expect, policy.manual) {
                (Some(Expectation::Observe(text)), true) => Some(text.clone()),
                _ => None,
            };
            match gate::verdict(&policy, &step_view) {
                Verdict::Approved => {
                    let signers: Vec<&str> = step_view
                        .signoffs
                        .iter()
                        .filter(|s| s.decision == "approved")
                        .map(|s| s.signer.as_str())
                        .collect();
                    let what = if policy.manual {
                        "done, signed by"
                    } else {
                        "approved by"
                    };
                    if let Some(expected) = &observe {
                        self.record_expectation(step, expected, true, None)?;
                    }
                    let reason = format!("{what} {}", signers.join(", "));
                    return self.end(
                        step,
                        StepStatus::Succeeded,
                        0,
                        Some(reason),
                        Some(started.elapsed()),
                        advances,
                    );
                }
                Verdict::Rejected { by, at } => {
                    if let Some(expected) = &observe {
                        self.record_expectation(
                            step,
                            expected,
                            false,
                            Some(format!("{by} observed something else")),
                        )?;
                        let reason = format!("the observed result did not match, reported by {by}");
                        return self.end(
                            step,
                            StepStatus::Failed,
                            0,
                            Some(reason),
                            Some(started.elapsed()),
                            advances,
                        );
                    }
                    let reason = format!("rejected by {by} at {at}");
                    return self.end(
                        step,
                        StepStatus::Rejected,
                        0,
                        Some(reason),
                        Some(started.elapsed()),
                        advances,
                    );
                }
                Verdict::TimedOut { action } => return self.timed_out(step, action, advances),
                Verdict::Pending { .. } => {}
            }
            if gate::is_past_deadline(&policy, &step_view) {
                if self.record_timeout_unless_decided(step, &policy)? {
                    return self.timed_out(step, policy.on_timeout, advances);
                }
                // A sign-off landed just before the deadline: look at it.
                continue;
            }
            if self.abort.is_requested() {
                let reason = "stopped at the operator's request".to_string();
                return self.end(step, StepStatus::Aborted, 0, Some(reason), None, advances);
            }
            let deadline = gate::deadline(&policy, &step_view);
            if self.interactive {
                match self
                    .ask_at_terminal(step, &policy, &view, &step_view, deadline)
                    .await?
                {
                    TerminalAnswer::Again => continue,
                    TerminalAnswer::Defer => {}
                }
            } else if self.wait {
                self.progress.step_line(&step.id, "waiting for a sign-off");
                let pause = match deadline {
                    Some(d) => (d - chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .min(Duration::from_millis(500)),
                    None => Duration::from_millis(500),
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.abort.requested() => {}
                }
                continue;
            }
            let evidence = gate::evidence(&policy, &view);
            let binding = gate::binding(
                &self.run_id,
                &step.id,
                &self.plan.source.content_hash,
                &view.params,
                &evidence,
            );
            let waiting_for = if self.supervision.is_some() {
                "countersign"
            } else if policy.manual {
                "operator"
            } else {
                "signoff"
            };
            let what = if policy.manual { "manual step" } else { "gate" };
            self.park(
                step,
                format!("{what} `{}` waits: {}", step.id, policy.who_may_sign(&view)),
                waiting_for,
            )?;
            self.progress.message(&format!(
                "  sign it from any terminal: opsbook signoff {} --step {} --approve [--comment TEXT] --as NAME\n  binding {binding}",
                self.run_id, step.id
            ));
            return Ok(StepOutcome::Parked);
        }
    }

    /// Journals the gate's timeout, unless a decision was journaled first (by another process,
    /// just before the deadline); says whether it did.
    fn record_timeout_unless_decided(&self, step: &PlannedStep, policy: &Policy) -> Result<bool> {
        let action = if policy.on_timeout == OnTimeout::Abort {
            "abort"
        } else {
            "reject"
        };
        self.record_all(Vec::new())?;
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
        journal.append_checked(&self.run_id, |events| {
            let view = RunView::from_events(events)?;
            let undecided = view
                .step(&step.id)
                .is_some_and(|s| matches!(gate::verdict(policy, s), Verdict::Pending { .. }));
            let event = Event::GateTimedOut {
                step: step.id.clone(),
                action: action.into(),
            };
            Ok(if undecided {
                (vec![event], true)
            } else {
                (vec![], false)
            })
        })
    }

    /// Ends a gate whose timeout is journaled.
    fn timed_out(
        &self,
        step: &PlannedStep,
        action: OnTimeout,
        advances: bool,
    ) -> Result<StepOutcome> {
        let action_name = if action == OnTimeout::Abort {
            "abort"
        } else {
            "reject"
        };
        let status = if action == OnTimeout::Abort {
            StepStatus::Aborted
        } else {
            StepStatus::Rejected
        };
        let reason = format!(
            "timed out waiting for a sign-off ({action_name}); a gate never approves by timing out"
        );
        self.end(step, status, 0, Some(reason), None, advances)
    }

    /// One round at the terminal: the prompt, the evidence and who may sign; then a decision
    /// by the runner, or by another operator who identifies on the spot.
    async fn ask_at_terminal(
        &self,
        step: &PlannedStep,
        policy: &Policy,
        view: &RunView,
        step_view: &StepView,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<TerminalAnswer> {
        let evidence = gate::evidence(policy, view);
        let heading = self.terminal_heading(step, policy, view, step_view, &evidence, deadline);
        let manual = policy.manual;
        let own_name = self.operator.name.clone();
        let trainee_run = self.supervision.is_some();
        // On a training run the supervisor signs; otherwise the runner, unless someone steps up.
        let default_signer = self
            .supervision
            .as_ref()
            .map(|s| s.supervisor.clone())
            .unwrap_or_else(|| own_name.clone());
        let evidence_required = policy.evidence_required;
        let observe = matches!(step.expect, Some(Expectation::Observe(_)));
        let asked = self.ask(move || {
            eprintln!("{heading}");
            let (question, choices): (&str, &[char]) = match (manual, observe) {
                (true, true) => ("   [d]one, as expected / [m]ismatch / [s]kip (with a reason) / [w]ait (park) / [a]bort? ", &['d', 'm', 's', 'w', 'a']),
                (true, false) => ("   [d]one / [s]kip (with a reason) / [w]ait (park) / [a]bort? ", &['d', 's', 'w', 'a']),
                (false, _) => ("   [a]pprove / [r]eject / [d]efer (park)? ", &['a', 'r', 'd']),
            };
            let decision = match (manual, prompt::ask_choice(question, choices)?) {
                (true, 'd') | (false, 'a') => "approved",
                (true, 'm') | (false, 'r') => "rejected",
                (true, 's') => "skipped",
                (true, 'a') => "aborted",
                _ => return Some(None),
            };
            let comment = match decision {
                "skipped" => Some(prompt::ask_required("   reason for skipping: ")?),
                "aborted" => None,
                _ if evidence_required => Some(prompt::ask_required("   evidence (required): ")?),
                _ => prompt::ask_line("   comment (optional): ").filter(|c| !c.is_empty()),
            };
            // A manual step is ticked off by the runner; on a training run the supervisor
            // counter-signs it, as they sign every gate.
            let asks_for_signer = !matches!(decision, "skipped" | "aborted") && (!manual || trainee_run);
            let signer = if asks_for_signer {
                let typed = prompt::ask_line(&format!(
                    "   signing as (Enter for {default_signer}, or another operator's name): "
                ))?;
                if typed.is_empty() { default_signer } else { typed }
            } else {
                own_name.clone()
            };
            let passphrase = if signer == own_name {
                None
            } else {
                Some(rpassword::prompt_password(format!("   passphrase for {signer}: ")).ok()?)
            };
            Some(Some((decision, comment, signer, passphrase)))
        });
        let answer = match deadline {
            Some(d) => {
                let left = (d - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    answer = asked => answer,
                    _ = tokio::time::sleep(left) => return Ok(TerminalAnswer::Again),
                }
            }
            None => asked.await,
        };
        let Some(Some((decision, comment, signer_name, passphrase))) = answer else {
            // Deferred, end of input, or Ctrl-C (the loop then sees the abort).
            return Ok(if self.abort.is_requested() {
                TerminalAnswer::Again
            } else {
                TerminalAnswer::Defer
            });
        };
        if matches!(decision, "skipped" | "aborted") {
            self.record(Event::StepDecided {
                step: step.id.clone(),
                decision: decision.into(),
                by: self.operator.name.clone(),
                comment: comment.clone(),
            })?;
            if decision == "aborted" {
                self.abort.escalate();
            } else {
                let reason = comment.map(|c| format!("skipped by {}: {c}", self.operator.name));
                self.record(Event::StepFinished {
                    step: step.id.clone(),
                    status: StepStatus::Skipped,
                    attempts: 0,
                    reason,
                })?;
            }
            return Ok(TerminalAnswer::Again);
        }
        let trainee_done_before = step_view
            .decisions
            .iter()
            .any(|d| d.decision == "done" && d.by == self.operator.name);
        if manual && trainee_run && decision == "approved" && !trainee_done_before {
            // The trainee's own tick, on record before the supervisor's counter-signature.
            self.record(Event::StepDecided {
                step: step.id.clone(),
                decision: "done".into(),
                by: self.operator.name.clone(),
                comment: comment.clone(),
            })?;
        }
        let signer = match passphrase {
            None => self.operator.clone(),
            Some(pass) => {
                let mut journal = self
                    .journal
                    .lock()
                    .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
                match Directory::new(&mut journal).verify(&signer_name, &pass) {
                    Ok(op) => op,
                    Err(e) => {
                        self.progress.message(&format!("   {e}"));
                        return Ok(TerminalAnswer::Again);
                    }
                }
            }
        };
        let approves = decision == "approved";
        if let Err(reason) = gate::check_signer(
            policy,
            &signer,
            view,
            step_view,
            comment.as_deref(),
            approves,
        ) {
            self.record(Event::SignoffRefused {
                step: step.id.clone(),
                signer: signer.name.clone(),
                reason: reason.clone(),
            })?;
            self.progress.message(&format!("   refused: {reason}"));
            return Ok(TerminalAnswer::Again);
        }
        let binding = gate::binding(
            &self.run_id,
            &step.id,
            &self.plan.source.content_hash,
            &view.params,
            &evidence,
        );
        self.record(signoff_event(
            &step.id, &signer, decision, comment, evidence, binding,
        ))?;
        Ok(TerminalAnswer::Again)
    }

    fn terminal_heading(
        &self,
        step: &PlannedStep,
        policy: &Policy,
        view: &RunView,
        step_view: &StepView,
        evidence: &Map<String, Value>,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> String {
        let prompt_text = self
            .render(&policy.prompt, Quoting::Plain)
            .unwrap_or_else(|_| policy.prompt.clone());
        let what = if policy.manual { "manual step" } else { "gate" };
        let mut heading = format!(
            "\n── {what} {}: {}\n   {}\n",
            step.id,
            step.name,
            prompt_text.replace('\n', "\n   ")
        );
        if let Some(Expectation::Observe(expected)) = &step.expect {
            heading.push_str(&format!("   expected: {expected}\n"));
        }
        for line in gate::describe_evidence(evidence) {
            heading.push_str(&format!("   evidence  {}\n", self.redactor.text(&line)));
        }
        heading.push_str(&format!("   who signs: {}\n", policy.who_may_sign(view)));
        if let Verdict::Pending { approvals, needed } = gate::verdict(policy, step_view) {
            if needed > 1 {
                heading.push_str(&format!("   approvals so far: {approvals} of {needed}\n"));
            }
        }
        if let Some(d) = deadline {
            let then = if policy.on_timeout == OnTimeout::Abort {
                "abort"
            } else {
                "reject"
            };
            heading.push_str(&format!(
                "   times out at {} (then {then})\n",
                d.format("%H:%M:%S UTC")
            ));
        }
        heading
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

fn cut(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[... cut at {max_bytes} bytes ...]", &text[..end])
}

/// The tail of each labelled text: the last lines, at most a few KiB.
fn excerpt(parts: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (label, text) in parts {
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(EXCERPT_LINES)..];
        let mut body = tail.join("\n");
        if body.len() > EXCERPT_BYTES {
            let mut start = body.len() - EXCERPT_BYTES;
            while !body.is_char_boundary(start) {
                start += 1;
            }
            body = format!("…{}", &body[start..]);
        }
        if !out.is_empty() {
            out.push('\n');
        }
        if !label.is_empty() {
            out.push_str(&format!("[{label}]\n"));
        }
        out.push_str(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_the_tail_and_labels_stderr() {
        let many: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let e = excerpt(&[("", &many), ("stderr", "boom\n")]);
        assert!(e.starts_with("line 61\n"));
        assert!(e.ends_with("line 100\n[stderr]\nboom"));
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("ééé", 3), "é\n[... cut at 3 bytes ...]");
    }
}
