//! The executor: drives a [`Plan`] step by step — conditions, dry runs, retries with backoff,
//! timeouts, parallel groups, manual steps and gates, failure policies and rollback — and
//! journals every state change before it moves on. Running scripts and commands is in
//! `attempts.rs`; gates, manual steps and the terminal are in `people.rs`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::Engine;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::exec::console::Console;
use crate::exec::progress::{FinishedStep, Progress};
use crate::exec::redact::Redactor;
use crate::exec::request::FreezeBreakApproval;
use crate::exec::window::WindowLimit;
use crate::journal::event::{
    AttemptStatus, Event, InterruptedDecision, Phase, RunStatus, ScheduledSlot, StepProcesses,
    StepStatus, WaitingFor, WindowVerdict,
};
use crate::journal::lease::Lease;
use crate::journal::view::{RunView, StepView};
use crate::journal::Journal;
use crate::people::directory::{Directory, Operator};
use crate::people::policy::{self, Policy, Verdict};
use crate::runbook::duration::format_duration;
use crate::runbook::params::{value_text, Params};
use crate::runbook::plan::{Expectation, Plan, PlannedStep, ScriptSource, StepKind};
use crate::runbook::template::{self, Placeholder};
use crate::runbook::{OnFailure, OnTimeout};
use crate::script::{self, ScriptContext, ScriptInputs, ScriptOutcome};
use crate::sys::abort::AbortSignal;
use crate::sys::containment::Containment;
use crate::sys::hostinfo;
use crate::sys::shell::Environment;
use crate::sys::shell::{self, CommandSpec};

mod attempts;
mod attended;
pub mod console;
pub mod progress;
mod record;
pub mod redact;
pub mod request;
pub mod resume;
mod rollback;
pub mod window;

pub use request::{ParkedStep, RunRequest, RunResult, Supervision};
pub use resume::InterruptedChoice;

use record::Pending;

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
    console: Option<Arc<dyn Console>>,
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
    /// second start (gates, manual steps, groups) or decided by `choices` (scripts, commands),
    /// with what marked their processes (whatever of them is left is killed first).
    reentered: HashMap<(Phase, String), Option<StepProcesses>>,
    choices: HashMap<String, InterruptedChoice>,
    rollback_for: Option<String>,
    /// A step's end, journaled together with whatever comes next (see `defer`).
    pending: Mutex<Pending>,
    /// Steps this drive parked at.
    parked: Mutex<Vec<ParkedStep>>,
    /// What marks each step's processes, by step id (see `containment`).
    containments: Mutex<HashMap<String, Containment>>,
    /// A refused answer's comment or evidence, by step, offered again in the next round.
    last_comments: Mutex<HashMap<String, String>>,
    /// The window occurrence the steps must start in.
    window: Option<WindowLimit>,
    slot: Option<ScheduledSlot>,
    /// A stop request parks the run between steps instead of aborting it.
    park_on_stop: bool,
    freeze_break: Option<FreezeBreakApproval>,
    /// Why the drive parked between steps.
    pause_reason: Mutex<Option<String>>,
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
        console: request.console,
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
        parked: Mutex::new(Vec::new()),
        containments: Mutex::new(HashMap::new()),
        last_comments: Mutex::new(HashMap::new()),
        window: request.window,
        slot: request.slot,
        park_on_stop: request.park_on_stop,
        freeze_break: request.freeze_break,
        pause_reason: Mutex::new(None),
    };
    // Say what a Ctrl-C or SIGTERM does, when it comes.
    let notice = {
        let abort = executor.abort.clone();
        let progress = executor.progress.clone();
        tokio::spawn(async move {
            abort.requested().await;
            if abort.by_signal() && !abort.is_hard() {
                progress.message("stopping after this step (Ctrl-C again to stop it now)");
            }
            abort.hard_requested().await;
            if abort.by_signal() {
                progress.message("stopping the running step now");
            }
        })
    };
    let result = if resumed {
        executor.resume().await
    } else {
        executor.start().await
    };
    notice.abort();
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
            // The map is created as a map in `from_json` and only ever written as one.
            None => {
                return Err(Error::Poisoned {
                    what: "step outputs",
                })
            }
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
    reentered: HashMap<(Phase, String), Option<StepProcesses>>,
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
                    state.reentered.insert(key, step.processes.clone());
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

impl Executor {
    async fn start(&self) -> Result<RunResult> {
        let rb = &self.plan.runbook;
        self.record(Event::RunStarted {
            runbook: rb.runbook.clone(),
            title: rb.title.clone(),
            version: rb.version,
            content_hash: self.plan.source.content_hash.clone(),
            bundle_hash: (!self.plan.sources.is_empty()).then(|| self.plan.bundle_hash()),
            scripts: self.plan.sources.clone(),
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
            slot: self.slot.clone(),
        })?;
        if let Some(approval) = &self.freeze_break {
            self.record(Event::FreezeBroken {
                calendar: approval.calendar.clone(),
                freeze: approval.freeze.clone(),
                reason: approval.reason.clone(),
                by: self.operator.name.clone(),
                approved_by: approval.approved_by.clone(),
            })?;
        }
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
            let already_done = self.prior.contains_key(&(Phase::Main, step.id.clone()));
            if self.abort.is_requested() {
                if self.park_on_stop && !self.abort.is_hard() && !already_done {
                    return self.park_between_steps(
                        &step.id,
                        "the daemon driving it stopped before this step; it goes on when the daemon starts again".into(),
                        WaitingFor::Restart,
                    );
                }
                return self.aborted_between_steps();
            }
            if !already_done && !self.dry_run {
                if let Some(reason) = self.window_says_wait(&step.id)? {
                    return self.park_between_steps(&step.id, reason, WaitingFor::Window);
                }
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
        if self.abort.is_requested() {
            // The request came while the last step ran: it is on the record, and there was
            // nothing left to stop.
            self.record(Event::AbortRequested {
                by: self.operator.name.clone(),
            })?;
            self.progress
                .message("a stop was requested during the last step: every step had run, nothing was left to stop");
        }
        Ok(if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        })
    }

    /// Checks `step` against the time left in the run's window and journals the verdict;
    /// Some(reason) when it must not start.
    fn window_says_wait(&self, step: &str) -> Result<Option<String>> {
        let Some(limit) = &self.window else {
            return Ok(None);
        };
        let history = {
            let journal = self.journal.lock().map_err(|_| Error::Poisoned {
                what: "the journal",
            })?;
            window::step_history(&journal, &self.plan.source.content_hash, step, &self.run_id)?
        };
        let verdict = window::decide(limit, step, chrono::Utc::now(), &history);
        self.record(Event::WindowChecked {
            step: step.to_string(),
            window: limit.window.name.clone(),
            verdict: verdict.verdict,
            reason: verdict.reason.clone(),
            remaining_ms: verdict.remaining_ms,
            p95_ms: verdict.p95_ms,
            samples: verdict.samples,
        })?;
        if verdict.verdict == WindowVerdict::Overridden {
            self.progress.message(&verdict.reason);
        }
        Ok(verdict.parks().then_some(verdict.reason))
    }

    /// Stops before `step` to go on later: journaled as a pause the run resumes from.
    fn park_between_steps(
        &self,
        step: &str,
        reason: String,
        waiting_for: WaitingFor,
    ) -> Result<RunStatus> {
        self.record(Event::RunPaused {
            step: step.to_string(),
            reason: reason.clone(),
            waiting_for,
        })?;
        self.progress
            .message(&format!("parked before `{step}`: {reason}"));
        if let Ok(mut slot) = self.pause_reason.lock() {
            *slot = Some(reason);
        }
        Ok(RunStatus::Parked)
    }

    fn aborted_between_steps(&self) -> Result<RunStatus> {
        self.record(Event::AbortRequested {
            by: self.operator.name.clone(),
        })?;
        self.progress
            .message("stopped at the operator's request before the next step");
        Ok(RunStatus::Aborted)
    }

    /// Journals the run's end (unless it parked) and says how the drive ended; what to do
    /// next is the caller's to say.
    fn conclude(&self, status: RunStatus, elapsed: Duration) -> Result<RunResult> {
        let summary = self.summary();
        if !status.is_paused() {
            self.record(Event::RunFinished {
                status,
                exit_code: status.exit_code(),
                summary: summary.clone(),
            })?;
        }
        let parked = self
            .parked
            .lock()
            .map(|p| p.clone())
            .map_err(|_| Error::Poisoned {
                what: "parked steps",
            })?;
        let supervisor = self
            .supervision
            .as_ref()
            .filter(|_| !status.is_paused())
            .map(|s| s.supervisor.clone());
        Ok(RunResult {
            run_id: self.run_id.clone(),
            // A finished training run awaits the supervisor's acceptance.
            status: if supervisor.is_some() {
                RunStatus::AwaitingAcceptance
            } else {
                status
            },
            outcome: status,
            summary,
            elapsed,
            awaiting_acceptance_by: supervisor,
            parked,
            pause_reason: self.pause_reason.lock().ok().and_then(|r| r.clone()),
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
            let interrupted = self.reentered.get(&key);
            let reentered = interrupted.is_some();
            let leaf = matches!(step.kind, StepKind::Rhai { .. } | StepKind::Shell { .. });
            if let (Some(processes), true) = (interrupted, leaf) {
                // Nothing the interrupted execution started may race its re-run, or still be
                // at work once it is marked done.
                self.kill_leftovers(step, processes.as_ref()).await;
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

    /// Kills whatever the interrupted execution of `step` left running (its keeper was killed
    /// too, so nothing else stopped it), found by the token and cgroup its start journaled.
    async fn kill_leftovers(&self, step: &PlannedStep, processes: Option<&StepProcesses>) {
        let Some(processes) = processes else {
            // Journaled before steps' processes were marked: nothing to look for.
            return;
        };
        let containment =
            Containment::recorded(processes.token.clone(), processes.cgroup.as_deref());
        let killed = tokio::task::spawn_blocking(move || containment.kill_leftovers())
            .await
            .unwrap_or(0);
        if killed > 0 {
            self.progress.message(&format!(
                "killed {killed} process(es) that the interrupted step `{}` left running",
                step.id
            ));
        }
    }

    /// What marks the processes `step` starts in this drive: one token (and cgroup) for all of
    /// them — its `when`, its attempts, a script's `sh()` calls — made when first asked for.
    fn containment(&self, step: &PlannedStep) -> Containment {
        let mut marks = match self.containments.lock() {
            Ok(marks) => marks,
            Err(poisoned) => poisoned.into_inner(),
        };
        marks
            .entry(step.id.clone())
            .or_insert_with(|| Containment::new(&self.run_id, &step.id))
            .clone()
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
            InterruptedChoice::Rerun { why } => (InterruptedDecision::Rerun, Some(why.clone())),
            InterruptedChoice::MarkDone { comment } => {
                (InterruptedDecision::MarkedDone, Some(comment.clone()))
            }
            InterruptedChoice::Abort => (InterruptedDecision::Abort, None),
        };
        self.record(Event::InterruptedStepDecided {
            step: step.id.clone(),
            decision,
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

    /// What a step would do, for dry runs: the rendered command, or the first script line.
    fn describe(&self, step: &PlannedStep) -> String {
        match &step.kind {
            StepKind::Shell { command } => match self.bind_command(command) {
                // The command as it would run, then the values its variables would hold
                // (secrets masked when the event is journaled).
                Ok((bound, values)) if values.is_empty() => bound,
                Ok((bound, values)) => {
                    let secret: Vec<String> = self
                        .params
                        .secrets()
                        .into_iter()
                        .map(|s| s.env_name)
                        .collect();
                    let shown: Vec<String> = values
                        .iter()
                        .map(|(name, value)| match secret.contains(name) {
                            true => format!("{name}={}", crate::exec::redact::MASK),
                            false => format!("{name}={}", template::shell_quote(value)),
                        })
                        .collect();
                    format!("{bound}  # {}", shown.join(" "))
                }
                Err(e) => format!("{command} ({e})"),
            },
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
                self.render_text(instructions)
                    .unwrap_or_else(|_| instructions.clone())
            ),
            StepKind::Gate(gate) => format!("gate: {}", gate.prompt),
            StepKind::Parallel(members) => format!("parallel group of {}", members.len()),
        }
    }
}

fn to_rhai_map(values: impl IntoIterator<Item = (String, Value)>) -> Result<rhai::Map> {
    values
        .into_iter()
        .map(|(k, v)| match rhai::serde::to_dynamic(&v) {
            Ok(d) => Ok((k.into(), d)),
            Err(e) => Err(Error::Encode {
                what: "a value for a script",
                problem: format!("`{k}`: {e}"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests;
