//! The per-evaluation context and the host primitives built on it. Each evaluation runs on its
//! own blocking thread, so what a script produces (log lines, outputs, metrics, a skip) is
//! gathered in a thread-local [`ScriptContext`] that the host functions of `api/` write to.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult, Map, Position};

use crate::script::limits;
use crate::sys::abort::AbortSignal;
use crate::sys::shell::{self, CommandSpec, Environment};

/// Why a script was stopped from outside (the token of `ErrorTerminated`).
pub(crate) const STOP_TIMEOUT: &str = "opsbook:timeout";
pub(crate) const STOP_ABORT: &str = "opsbook:abort";
pub(crate) const STOP_SKIP: &str = "opsbook:skip";

/// What one evaluation gathers, besides its result.
pub struct ScriptContext {
    pub deadline: Instant,
    pub abort: AbortSignal,
    pub env: Environment,
    pub runtime: tokio::runtime::Handle,
    pub on_line: Arc<dyn Fn(&str) + Send + Sync>,
    pub log: Vec<String>,
    pub dropped_log_lines: usize,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    pub metrics: Vec<(String, f64)>,
    pub skipped: Option<String>,
}

impl ScriptContext {
    pub fn new(
        timeout: Duration,
        abort: AbortSignal,
        env: Environment,
        runtime: tokio::runtime::Handle,
        on_line: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            abort,
            env,
            runtime,
            on_line,
            log: Vec::new(),
            dropped_log_lines: 0,
            outputs: serde_json::Map::new(),
            metrics: Vec::new(),
            skipped: None,
        }
    }

    pub(crate) fn push_log(&mut self, line: &str) {
        (self.on_line)(line);
        if self.log.len() < limits::MAX_LOG_LINES {
            self.log.push(line.to_string());
        } else {
            self.dropped_log_lines += 1;
        }
    }
}

thread_local! {
    pub(crate) static CURRENT: RefCell<Option<ScriptContext>> = const { RefCell::new(None) };
}

pub(crate) fn with_context<R>(f: impl FnOnce(&mut ScriptContext) -> R) -> Option<R> {
    CURRENT.with(|cell| cell.borrow_mut().as_mut().map(f))
}

/// The error a host function raises to fail the step with `message`.
pub(crate) fn runtime_error(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(message.into()), Position::NONE).into()
}

/// Runs `sh -c command` for the script's `sh()` under what is left of the step's deadline.
pub(crate) fn run_shell_from_script(command: &str) -> Result<Map, Box<EvalAltResult>> {
    let (spec, runtime, abort, on_line) = with_context(|ctx| {
        let remaining = ctx.deadline.saturating_duration_since(Instant::now());
        (
            CommandSpec {
                command: command.to_string(),
                env: ctx.env.clone(),
                timeout: remaining,
            },
            ctx.runtime.clone(),
            ctx.abort.clone(),
            ctx.on_line.clone(),
        )
    })
    .ok_or_else(|| runtime_error("sh() is only available while a step runs"))?;
    if spec.timeout.is_zero() {
        return Err(stop(STOP_TIMEOUT));
    }
    let result = runtime.block_on(shell::run_command(&spec, &abort, |line| on_line(line)));
    let output = result.map_err(|e| runtime_error(format!("sh(): {e}")))?;
    if output.timed_out {
        return Err(stop(STOP_TIMEOUT));
    }
    if output.aborted {
        return Err(stop(STOP_ABORT));
    }
    let mut map = Map::new();
    map.insert(
        "code".into(),
        Dynamic::from(output.exit_code.unwrap_or(-1) as i64),
    );
    map.insert("stdout".into(), Dynamic::from(output.stdout.text()));
    map.insert("stderr".into(), Dynamic::from(output.stderr.text()));
    Ok(map)
}

pub(crate) fn stop(token: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(Dynamic::from(token.to_string()), Position::NONE).into()
}

pub(crate) fn log_line(text: &str) {
    with_context(|ctx| text.lines().for_each(|l| ctx.push_log(l)));
}

pub(crate) fn set_output(name: &str, value: Dynamic) -> Result<(), Box<EvalAltResult>> {
    let json: serde_json::Value = rhai::serde::from_dynamic(&value)
        .map_err(|e| runtime_error(format!("set(\"{name}\", ..): cannot store this value: {e}")))?;
    if nesting_depth(&json) > limits::MAX_OUTPUT_DEPTH {
        return Err(runtime_error(format!(
            "set(\"{name}\", ..): the value nests deeper than {} levels; outputs are journaled and read by later steps: flatten it",
            limits::MAX_OUTPUT_DEPTH
        )));
    }
    with_context(|ctx| ctx.outputs.insert(name.to_string(), json));
    Ok(())
}

/// How deep arrays and maps nest in `value`, measured without recursion.
fn nesting_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

pub(crate) fn record_metric(name: &str, value: f64) {
    with_context(|ctx| ctx.metrics.push((name.to_string(), value)));
}

pub(crate) fn skip_step(reason: &str) -> Box<EvalAltResult> {
    with_context(|ctx| ctx.skipped = Some(reason.to_string()));
    stop(STOP_SKIP)
}
