//! Running one attempt of a script or command step: retries, the shell and Rhai attempts,
//! test-script expectations, and the excerpt of output that is journaled.

use super::*;

/// Lines and bytes of output kept in a step's journaled excerpt.
const EXCERPT_LINES: usize = 40;
const EXCERPT_BYTES: usize = 4096;
/// A shell step's stdout as an output (`vars.<step>.stdout`) is cut at this size.
const STDOUT_OUTPUT_BYTES: usize = 64 * 1024;

pub(super) struct AttemptResult {
    pub(super) status: AttemptStatus,
    pub(super) exit_code: Option<i32>,
    pub(super) duration: Duration,
    pub(super) outputs: Map<String, Value>,
    pub(super) metrics: Map<String, Value>,
    pub(super) excerpt: String,
    pub(super) error: Option<String>,
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

impl Executor {
    /// A test script's `expect:` on a script or command step: journaled; a miss fails the
    /// step (the returned reason).
    async fn check_expectation(
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
            match self
                .evaluate(step, expr.ast.clone(), Some(("outputs", outputs)))
                .await
            {
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

    // ----- scripts and commands --------------------------------------------------------

    pub(super) async fn run_attempts(
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
        let expectation_missed = self.check_expectation(step, &result, &mut before).await?;
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

    /// The environment of a step's commands: every parameter but the secrets as
    /// `OPSBOOK_PARAM_<NAME>`, the run's identity, and a secret only for a step that uses it
    /// (its source variable is removed for every other step).
    pub(super) fn base_env(&self, step: &PlannedStep) -> Environment {
        let mut env = Environment::default();
        for (name, value) in self.params.environment() {
            env.set.push((name, value));
        }
        for secret in self.params.secrets() {
            let names: Vec<&str> = [Some(secret.env_name.as_str()), secret.source.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            if step.uses_param(&secret.name, &names) {
                env.set
                    .push((secret.env_name.clone(), secret.value.clone()));
            } else if let Some(source) = &secret.source {
                env.remove.push(source.clone());
            }
        }
        env.set.push(("OPSBOOK_RUN_ID".into(), self.run_id.clone()));
        env.set.push(("OPSBOOK_STEP_ID".into(), step.id.clone()));
        env.set
            .push(("OPSBOOK_DRY_RUN".into(), self.dry_run.to_string()));
        env.set
            .push(("OPSBOOK_RUNBOOK".into(), self.plan.runbook.runbook.clone()));
        env
    }

    /// The value a placeholder stands for now.
    fn value_of(&self, placeholder: &Placeholder, vars: &Vars) -> Option<String> {
        match placeholder {
            Placeholder::Param(name) => self.params.text(name),
            Placeholder::Var { step, output } => vars
                .json
                .get(step)
                .and_then(|o| o.get(output))
                .map(value_text),
            Placeholder::RunId => Some(self.run_id.clone()),
            Placeholder::DryRun => Some(self.dry_run.to_string()),
        }
    }

    /// A text shown to people (a manual step, a gate prompt) with its placeholders filled in.
    pub(super) fn render_text(&self, text: &str) -> Result<String, String> {
        let vars = self
            .vars
            .lock()
            .map_err(|_| "the outputs lock was poisoned".to_string())?;
        template::render_text(text, |p| self.value_of(p, &vars))
    }

    /// A shell step's command with each placeholder a reference to an environment variable,
    /// and those variables with their values: no value is ever read as shell code.
    pub(super) fn bind_command(
        &self,
        command: &str,
    ) -> Result<(String, Vec<(String, String)>), String> {
        let shell = template::shell_command(command).map_err(|(_, e)| e)?;
        let vars = self
            .vars
            .lock()
            .map_err(|_| "the outputs lock was poisoned".to_string())?;
        let mut env = Vec::with_capacity(shell.bindings.len());
        for (name, placeholder) in &shell.bindings {
            let value = self
                .value_of(placeholder, &vars)
                .ok_or_else(|| format!("`${{{name}}}` has no value yet"))?;
            env.push((name.clone(), value));
        }
        Ok((shell.command, env))
    }

    fn line_sink(&self, step: &PlannedStep) -> Arc<dyn Fn(&str) + Send + Sync> {
        let progress = self.progress.clone();
        let redactor = self.redactor.clone();
        let id = step.id.clone();
        Arc::new(move |line: &str| progress.step_line(&id, &redactor.text(line)))
    }

    async fn attempt_shell(&self, step: &PlannedStep, command: &str) -> AttemptResult {
        let (bound, values) = match self.bind_command(command) {
            Ok(bound) => bound,
            Err(e) => return AttemptResult::failed(format!("cannot render the command: {e}")),
        };
        let mut env = self.base_env(step);
        env.set.extend(values);
        let spec = CommandSpec {
            command: bound,
            env,
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

    pub(super) fn script_inputs(&self) -> Result<ScriptInputs> {
        let vars = self.vars.lock().map_err(|_| Error::Poisoned {
            what: "step outputs",
        })?;
        Ok(ScriptInputs {
            params: self.params_rhai.clone(),
            vars: vars.rhai.clone(),
            dry_run: self.dry_run,
        })
    }

    /// Evaluates a `when` or `expect` expression on a blocking thread, as scripts run, so
    /// that `sh()` inside it works (and is bounded by the condition timeout).
    pub(super) async fn evaluate(
        &self,
        step: &PlannedStep,
        ast: Arc<rhai::AST>,
        extra: Option<(&'static str, rhai::Map)>,
    ) -> std::result::Result<bool, String> {
        let inputs = self.script_inputs().map_err(|e| e.to_string())?;
        let context = ScriptContext::new(
            script::limits::CONDITION_TIMEOUT,
            self.abort.clone(),
            self.base_env(step),
            self.runtime.clone(),
            Arc::new(|_| {}),
        );
        let engine = self.engine.clone();
        script::on_eval_thread(move || {
            script::eval_condition(&engine, &ast, &inputs, extra, context)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the expression stopped: {e}")))
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
        let joined =
            script::on_eval_thread(move || script::run_script(&engine, &ast, &inputs, context))
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
