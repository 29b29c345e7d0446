//! The executor: drives a [`Plan`] step by step — conditions, dry runs, retries with backoff,
//! timeouts, parallel groups, manual steps and gates, failure policies and rollback — and
//! journals every state change before it moves on.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::Engine;
use serde_json::{Map, Value};

use crate::abort::AbortSignal;
use crate::duration::format_duration;
use crate::error::{exit, Error, Result};
use crate::event::{AttemptStatus, Event, Phase, RunStatus, StepStatus};
use crate::hostinfo;
use crate::identity::Operator;
use crate::journal::Journal;
use crate::params::{value_text, Params};
use crate::plan::{Plan, PlannedStep, ScriptSource, StepKind};
use crate::progress::{FinishedStep, Progress};
use crate::prompt;
use crate::redact::Redactor;
use crate::runbook::{Evidence, OnFailure};
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
    vars: Mutex<Map<String, Value>>,
    started: Mutex<HashSet<String>>,
    tally: Mutex<Vec<StepStatus>>,
    runtime: tokio::runtime::Handle,
}

/// Starts a new run of `request` and drives it until it finishes or parks.
pub async fn run(
    request: RunRequest,
    journal: Journal,
    progress: Arc<dyn Progress>,
    abort: AbortSignal,
) -> Result<RunResult> {
    let run_id = ulid::Ulid::new().to_string();
    let redactor = Arc::new(Redactor::new(request.params.secret_values()));
    let params_rhai = to_rhai_map(
        request
            .params
            .values()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    )?;
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
        vars: Mutex::new(Map::new()),
        started: Mutex::new(HashSet::new()),
        tally: Mutex::new(Vec::new()),
        runtime: tokio::runtime::Handle::current(),
    };
    executor.start().await
}

impl Executor {
    async fn start(&self) -> Result<RunResult> {
        let rb = &self.plan.runbook;
        self.record(Event::RunStarted {
            runbook: rb.runbook.clone(),
            title: rb.title.clone(),
            version: rb.version,
            content_hash: self.plan.source.content_hash.clone(),
            path: self.plan.source.path.display().to_string(),
            params: self.params.redacted(),
            operator: self.operator.name.clone(),
            operator_verified: self.operator.verified,
            host: hostinfo::hostname(),
            dry_run: self.dry_run,
            kind: format!("{:?}", rb.kind).to_lowercase(),
            total_steps: self.plan.steps.len(),
            pid: std::process::id(),
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
        })?;
        let dry = if self.dry_run { " (dry run)" } else { "" };
        // The run id is the first line: scripts and people read it from there.
        println!("run {} {} v{}{dry}", self.run_id, rb.runbook, rb.version);
        self.progress.message(&format!(
            "{} — {} step(s), operator {}{}",
            rb.title,
            self.plan.steps.len(),
            self.operator.name,
            if self.operator.verified {
                ""
            } else {
                " (unverified)"
            }
        ));
        self.progress.run_started(self.plan.steps.len());
        let started = Instant::now();
        let status = self.drive().await;
        self.progress.finish();
        let status = status?;
        self.conclude(status, started.elapsed())
    }

    async fn drive(&self) -> Result<RunStatus> {
        let mut failed = false;
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
                StepOutcome::Done(StepStatus::Failed) => match step.on_failure {
                    OnFailure::Continue => failed = true,
                    OnFailure::Abort => return Ok(RunStatus::Failed),
                    OnFailure::Rollback => {
                        self.rollback(step).await?;
                        return Ok(RunStatus::Failed);
                    }
                },
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
        };
        let summary = self.summary();
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
        let count = |s: StepStatus| tally.iter().filter(|t| **t == s).count();
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
        parts.join(", ")
    }

    /// Journals an event, secrets masked, in its own durable transaction.
    fn record(&self, event: Event) -> Result<()> {
        let event = if self.redactor.is_empty() {
            event
        } else {
            let mut value = serde_json::to_value(&event)
                .map_err(|e| Error::Internal(format!("event to JSON: {e}")))?;
            self.redactor.value(&mut value);
            serde_json::from_value(value)
                .map_err(|e| Error::Internal(format!("event from JSON: {e}")))?
        };
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
        journal.append(&self.run_id, &event)?;
        Ok(())
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
                        return self.end(step, StepStatus::Failed, 0, Some(reason), None, advances);
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
            self.begin(step, phase, group)?;
            let started = Instant::now();
            match &step.kind {
                StepKind::Rhai { .. } | StepKind::Shell { .. } => {
                    self.run_attempts(step, advances, started).await
                }
                StepKind::Manual { instructions } => {
                    self.manual(step, instructions, advances, started).await
                }
                StepKind::Gate(gate) => self.gate(step, gate, advances, started).await,
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
        let reason = reason.map(|r| self.redactor.text(&r));
        self.record(Event::StepFinished {
            step: step.id.clone(),
            status,
            attempts,
            reason: reason.clone(),
        })?;
        self.finished(step, status, duration, reason.as_deref(), advances);
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
        self.record(Event::StepSkipped {
            step: step.id.clone(),
            name: step.name.clone(),
            kind: step.kind.name().into(),
            phase,
            group: group.map(str::to_string),
            reason: reason.clone(),
            would_run: would_run.clone(),
        })?;
        let detail = would_run
            .map(|w| format!("would run: {w}"))
            .unwrap_or(reason);
        self.finished(step, status, None, Some(&detail), advances);
        Ok(StepOutcome::Done(status))
    }

    fn finished(
        &self,
        step: &PlannedStep,
        status: StepStatus,
        duration: Option<Duration>,
        detail: Option<&str>,
        advances: bool,
    ) {
        if !matches!(step.kind, StepKind::Parallel(_)) {
            if let Ok(mut tally) = self.tally.lock() {
                tally.push(status);
            }
        }
        self.progress.step_finished(&FinishedStep {
            id: &step.id,
            name: &step.name,
            status,
            duration,
            detail,
            advances,
        });
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
        let result = loop {
            attempt += 1;
            let result = match &step.kind {
                StepKind::Shell { command } => self.attempt_shell(step, command).await,
                StepKind::Rhai { ast, .. } => self.attempt_rhai(step, ast.clone()).await,
                _ => unreachable!("run_attempts is only called for rhai and shell steps"),
            };
            self.record(Event::AttemptFinished {
                step: step.id.clone(),
                attempt,
                status: result.status,
                exit_code: result.exit_code,
                duration_ms: result.duration.as_millis() as u64,
                outputs: result.outputs.clone(),
                metrics: result.metrics.clone(),
                excerpt: result.excerpt.clone(),
                error: result.error.clone(),
            })?;
            let retryable = matches!(
                result.status,
                AttemptStatus::Failed | AttemptStatus::TimedOut
            );
            if !retryable || attempt >= step.retry.attempts || self.abort.is_requested() {
                break result;
            }
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
                _ = self.abort.requested() => break result,
            }
        };
        // Outputs are visible to later steps whatever the outcome: a summary step must be able
        // to tell a failed check from a skipped one.
        if let Ok(mut vars) = self.vars.lock() {
            vars.insert(step.id.clone(), Value::Object(result.outputs.clone()));
        }
        let (status, reason) = match result.status {
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
        self.end(
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
        let vars = self.vars.lock().map(|v| v.clone()).unwrap_or_default();
        template::render(text, quoting, |placeholder| match placeholder {
            Placeholder::Param(name) => self.params.text(name),
            Placeholder::Var { step, output } => {
                vars.get(step).and_then(|o| o.get(output)).map(value_text)
            }
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
        let vars = self.vars.lock().map(|v| v.clone()).unwrap_or_default();
        Ok(ScriptInputs {
            params: self.params_rhai.clone(),
            vars: to_rhai_map(vars)?,
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

    async fn manual(
        &self,
        step: &PlannedStep,
        instructions: &str,
        advances: bool,
        started: Instant,
    ) -> Result<StepOutcome> {
        let text = self
            .render(instructions, Quoting::Plain)
            .unwrap_or_else(|_| instructions.to_string());
        if !self.interactive {
            return self.park(
                step,
                format!(
                    "manual step `{}` needs an operator to do it and tick it off",
                    step.id
                ),
                "operator",
            );
        }
        let heading = format!(
            "\n── manual step {}: {}\n   {}\n",
            step.id,
            step.name,
            text.replace('\n', "\n   ")
        );
        let answer = self
            .ask(move || {
                eprintln!("{heading}");
                match prompt::ask_choice(
                    "   [d]one, [s]kip (with a reason), [a]bort the run? ",
                    &['d', 's', 'a'],
                )? {
                    'd' => Some(("done", None)),
                    's' => prompt::ask_required("   reason for skipping: ")
                        .map(|r| ("skipped", Some(r))),
                    _ => Some(("aborted", None)),
                }
            })
            .await;
        let Some((decision, comment)) = answer else {
            if self.abort.is_requested() {
                return self.end(
                    step,
                    StepStatus::Aborted,
                    0,
                    Some("stopped at the operator's request".into()),
                    None,
                    advances,
                );
            }
            return self.park(step, "no answer at the terminal".into(), "operator");
        };
        self.record(Event::StepDecided {
            step: step.id.clone(),
            decision: decision.into(),
            by: self.operator.name.clone(),
            comment: comment.clone(),
        })?;
        let (status, reason) = match decision {
            "done" => (
                StepStatus::Succeeded,
                Some(format!("done by {}", self.operator.name)),
            ),
            "skipped" => (
                StepStatus::Skipped,
                comment.map(|c| format!("skipped by {}: {c}", self.operator.name)),
            ),
            _ => (
                StepStatus::Aborted,
                Some(format!("run aborted by {}", self.operator.name)),
            ),
        };
        self.end(step, status, 0, reason, Some(started.elapsed()), advances)
    }

    async fn gate(
        &self,
        step: &PlannedStep,
        gate: &crate::runbook::Gate,
        advances: bool,
        started: Instant,
    ) -> Result<StepOutcome> {
        if !self.interactive {
            return self.park(
                step,
                format!("gate `{}` needs a sign-off: {}", step.id, gate.prompt),
                "signoff",
            );
        }
        let prompt_text = self
            .render(&gate.prompt, Quoting::Plain)
            .unwrap_or_else(|_| gate.prompt.clone());
        let heading = format!(
            "\n── gate {}: {}\n   {prompt_text}\n   (role {} or above)\n",
            step.id,
            step.name,
            gate.role.name()
        );
        let evidence_required = gate.evidence == Evidence::Required;
        let answer = self
            .ask(move || {
                eprintln!("{heading}");
                let choice =
                    prompt::ask_choice("   [a]pprove, [r]eject, [d]efer? ", &['a', 'r', 'd'])?;
                let comment = match (choice, evidence_required) {
                    ('d', _) => None,
                    (_, true) => Some(prompt::ask_required("   evidence (required): ")?),
                    (_, false) => {
                        prompt::ask_line("   comment (optional): ").filter(|c| !c.is_empty())
                    }
                };
                Some((choice, comment))
            })
            .await;
        match answer {
            None | Some(('d', _)) => {
                if self.abort.is_requested() {
                    return self.end(
                        step,
                        StepStatus::Aborted,
                        0,
                        Some("stopped at the operator's request".into()),
                        None,
                        advances,
                    );
                }
                self.park(step, format!("gate `{}` deferred", step.id), "signoff")
            }
            Some((choice, comment)) => {
                let approved = choice == 'a';
                self.record(Event::StepDecided {
                    step: step.id.clone(),
                    decision: if approved { "approved" } else { "rejected" }.into(),
                    by: self.operator.name.clone(),
                    comment,
                })?;
                let status = if approved {
                    StepStatus::Succeeded
                } else {
                    StepStatus::Rejected
                };
                let reason = format!(
                    "{} by {}",
                    if approved { "approved" } else { "rejected" },
                    self.operator.name
                );
                self.end(
                    step,
                    status,
                    0,
                    Some(reason),
                    Some(started.elapsed()),
                    advances,
                )
            }
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
