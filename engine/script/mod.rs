//! The Rhai sandbox: the one place that builds the `Engine` (its limits, its module resolver,
//! its host API) and evaluates a step's script under a wall-clock deadline.
//!
//! The engine is built once per run and shared by every step; what a step produces (log
//! lines, outputs, metrics, a skip) is gathered in a per-thread [`ScriptContext`], since each
//! evaluation runs on its own blocking thread.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::module_resolvers::FileModuleResolver;
use rhai::{Dynamic, Engine, EvalAltResult, Map, Position, Scope, AST};

use crate::runbook::MAX_FILE_BYTES;
use crate::sys::abort::AbortSignal;
use crate::sys::shell::{self, CommandSpec};

/// The sandbox limits, in one place.
pub mod api;

pub mod limits {
    /// A backstop, far beyond what a step's wall-clock timeout lets a script do.
    pub const MAX_OPERATIONS: u64 = 20_000_000_000;
    pub const MAX_CALL_LEVELS: usize = 64;
    pub const MAX_EXPR_DEPTH: usize = 64;
    pub const MAX_FUNCTION_EXPR_DEPTH: usize = 32;
    pub const MAX_STRING_BYTES: usize = 4 * 1024 * 1024;
    pub const MAX_ARRAY_LEN: usize = 100_000;
    pub const MAX_MAP_LEN: usize = 100_000;
    pub const MAX_MODULES: usize = 32;
    pub const MAX_VARIABLES: usize = 1_000;
    /// How many log lines one step keeps; later lines are counted, not kept.
    pub const MAX_LOG_LINES: usize = 10_000;
    /// Deadline for a `when` condition or an `expect` expression.
    pub const CONDITION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
}

/// Why a script was stopped from outside (the token of `ErrorTerminated`).
const STOP_TIMEOUT: &str = "opsbook:timeout";
const STOP_ABORT: &str = "opsbook:abort";
const STOP_SKIP: &str = "opsbook:skip";

/// What one evaluation gathers, besides its result.
pub struct ScriptContext {
    pub deadline: Instant,
    pub abort: AbortSignal,
    pub env: Vec<(String, String)>,
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
        env: Vec<(String, String)>,
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

    fn push_log(&mut self, line: &str) {
        (self.on_line)(line);
        if self.log.len() < limits::MAX_LOG_LINES {
            self.log.push(line.to_string());
        } else {
            self.dropped_log_lines += 1;
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<ScriptContext>> = const { RefCell::new(None) };
}

fn with_context<R>(f: impl FnOnce(&mut ScriptContext) -> R) -> Option<R> {
    CURRENT.with(|cell| cell.borrow_mut().as_mut().map(f))
}

/// How an evaluation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptOutcome {
    Succeeded,
    Failed(String),
    TimedOut,
    Aborted,
    Skipped(String),
}

/// The values a script sees: `params`, `vars` and `dry_run`.
#[derive(Clone)]
pub struct ScriptInputs {
    pub params: Map,
    /// A shared map (see `Dynamic::into_shared`): handing it to each step costs one reference,
    /// however many steps have set outputs.
    pub vars: Dynamic,
    pub dry_run: bool,
}

impl ScriptInputs {
    fn scope(&self) -> Scope<'static> {
        let mut scope = Scope::new();
        scope.push_constant("params", self.params.clone());
        scope.push_constant("vars", self.vars.clone());
        scope.push_constant("dry_run", self.dry_run);
        scope
    }
}

/// Builds the sandboxed engine: every limit set, imports only from `scripts_dir`, no `eval`,
/// `print`/`debug` into the step's log, the host API registered, and the deadline enforced.
pub fn build_engine(scripts_dir: &Path) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits::MAX_OPERATIONS)
        .set_max_call_levels(limits::MAX_CALL_LEVELS)
        .set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_FUNCTION_EXPR_DEPTH)
        .set_max_string_size(limits::MAX_STRING_BYTES)
        .set_max_array_size(limits::MAX_ARRAY_LEN)
        .set_max_map_size(limits::MAX_MAP_LEN)
        .set_max_modules(limits::MAX_MODULES)
        .set_max_variables(limits::MAX_VARIABLES)
        .set_module_resolver(ScriptsDirResolver::new(scripts_dir));
    engine.disable_symbol("eval");
    engine.on_print(|text| {
        with_context(|ctx| text.lines().for_each(|l| ctx.push_log(l)));
    });
    engine.on_debug(|text, _source, _pos| {
        with_context(|ctx| text.lines().for_each(|l| ctx.push_log(l)));
    });
    engine.on_progress(|operations| {
        // Reading the clock on every operation would cost more than the operation.
        if operations % 1024 != 0 {
            return None;
        }
        with_context(|ctx| {
            if ctx.abort.is_hard() {
                Some(Dynamic::from(STOP_ABORT))
            } else if Instant::now() >= ctx.deadline {
                Some(Dynamic::from(STOP_TIMEOUT))
            } else {
                None
            }
        })
        .flatten()
    });
    crate::script::api::register(&mut engine);
    engine
}

/// Compiles a step's script, resolving its imports now so a missing module is found by `check`.
pub fn compile_script(engine: &Engine, text: &str) -> Result<AST, (String, Position)> {
    engine
        .compile_into_self_contained(&Scope::new(), text)
        .map_err(|e| (message_of(&e), e.position()))
}

/// An error's message without rhai's own position (the caller places it in the file).
fn message_of(error: &EvalAltResult) -> String {
    let mut text = match error {
        EvalAltResult::ErrorModuleNotFound(path, _) => format!("module not found: {path}"),
        EvalAltResult::ErrorInModule(path, inner, _) => {
            format!("in module `{path}`: {}", describe_error(inner))
        }
        other => other.to_string(),
    };
    if let Some(i) = text.rfind(" (line ") {
        text.truncate(i);
    }
    text
}

/// Compiles a `when` or `expect` expression.
pub fn compile_expression(engine: &Engine, text: &str) -> Result<AST, (String, Position)> {
    engine
        .compile_expression(text)
        .map_err(|e| (e.0.to_string(), e.1))
}

/// Runs a step's script on the current thread (a blocking thread) and returns how it ended
/// together with what it gathered.
pub fn run_script(
    engine: &Engine,
    ast: &AST,
    inputs: &ScriptInputs,
    ctx: ScriptContext,
) -> (ScriptOutcome, ScriptContext) {
    CURRENT.with(|cell| *cell.borrow_mut() = Some(ctx));
    let mut scope = inputs.scope();
    let result = engine.run_ast_with_scope(&mut scope, ast);
    let ctx = CURRENT
        .with(|cell| cell.borrow_mut().take())
        .expect("the context was set above on this thread");
    let outcome = match result {
        Ok(()) => match &ctx.skipped {
            Some(reason) => ScriptOutcome::Skipped(reason.clone()),
            None => ScriptOutcome::Succeeded,
        },
        Err(e) => outcome_of_error(&e, &ctx),
    };
    (outcome, ctx)
}

/// Evaluates a `when` or `expect` expression to a boolean.
pub fn eval_condition(
    engine: &Engine,
    ast: &AST,
    inputs: &ScriptInputs,
    extra: Option<(&str, Map)>,
    abort: AbortSignal,
) -> Result<bool, String> {
    let ctx = ScriptContext::new(
        limits::CONDITION_TIMEOUT,
        abort,
        Vec::new(),
        tokio::runtime::Handle::try_current()
            .unwrap_or_else(|_| shared_fallback_runtime().handle().clone()),
        Arc::new(|_| {}),
    );
    CURRENT.with(|cell| *cell.borrow_mut() = Some(ctx));
    let mut scope = inputs.scope();
    if let Some((name, value)) = extra {
        scope.push_constant(name, value);
    }
    let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast);
    let ctx = CURRENT
        .with(|cell| cell.borrow_mut().take())
        .expect("the context was set above on this thread");
    match result {
        Ok(value) => value
            .as_bool()
            .map_err(|t| format!("the expression gave a {t}, not true or false")),
        Err(e) => match outcome_of_error(&e, &ctx) {
            ScriptOutcome::Failed(message) => Err(message),
            ScriptOutcome::TimedOut => Err(format!(
                "the expression ran longer than {}s",
                limits::CONDITION_TIMEOUT.as_secs()
            )),
            other => Err(format!("{other:?}")),
        },
    }
}

fn shared_fallback_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds without resources")
    })
}

fn outcome_of_error(error: &EvalAltResult, ctx: &ScriptContext) -> ScriptOutcome {
    if let EvalAltResult::ErrorTerminated(token, _) = error {
        match token.clone().into_string().as_deref() {
            Ok(STOP_TIMEOUT) => return ScriptOutcome::TimedOut,
            Ok(STOP_ABORT) => return ScriptOutcome::Aborted,
            Ok(STOP_SKIP) => {
                return ScriptOutcome::Skipped(ctx.skipped.clone().unwrap_or_default())
            }
            _ => {}
        }
    }
    ScriptOutcome::Failed(describe_error(error))
}

/// A script error as a person reads it: the message, then where in the script.
pub fn describe_error(error: &EvalAltResult) -> String {
    let (message, position) = match error {
        EvalAltResult::ErrorRuntime(value, pos) => (value.to_string(), *pos),
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) if !name.starts_with("anon$") => {
            return format!("in function `{name}`: {}", describe_error(inner))
        }
        EvalAltResult::ErrorInModule(path, inner, _) => {
            return format!("in module `{path}`: {}", describe_error(inner))
        }
        other => {
            let mut text = other.to_string();
            // rhai appends its own position; it is added back below in our form.
            if let Some(i) = text.rfind(" (line ") {
                text.truncate(i);
            }
            (text, other.position())
        }
    };
    match (position.line(), position.position()) {
        (Some(line), Some(col)) => format!("{message} (script line {line}, column {col})"),
        (Some(line), None) => format!("{message} (script line {line})"),
        _ => message,
    }
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

fn stop(token: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(Dynamic::from(token.to_string()), Position::NONE).into()
}

pub(crate) fn log_line(text: &str) {
    with_context(|ctx| text.lines().for_each(|l| ctx.push_log(l)));
}

pub(crate) fn set_output(name: &str, value: Dynamic) -> Result<(), Box<EvalAltResult>> {
    let json: serde_json::Value = rhai::serde::from_dynamic(&value)
        .map_err(|e| runtime_error(format!("set(\"{name}\", ..): cannot store this value: {e}")))?;
    with_context(|ctx| ctx.outputs.insert(name.to_string(), json));
    Ok(())
}

pub(crate) fn record_metric(name: &str, value: f64) {
    with_context(|ctx| ctx.metrics.push((name.to_string(), value)));
}

pub(crate) fn skip_step(reason: &str) -> Box<EvalAltResult> {
    with_context(|ctx| ctx.skipped = Some(reason.to_string()));
    stop(STOP_SKIP)
}

/// A module resolver that loads `import "x"` from `scripts/x.rhai` and nothing else: no
/// absolute paths, no `..`, no file over the size cap.
struct ScriptsDirResolver {
    dir: PathBuf,
    inner: FileModuleResolver,
}

impl ScriptsDirResolver {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            inner: FileModuleResolver::new_with_path(dir),
        }
    }

    fn refuse(&self, path: &str, why: &str, pos: Position) -> Box<EvalAltResult> {
        EvalAltResult::ErrorModuleNotFound(format!("{path} ({why})"), pos).into()
    }
}

impl rhai::ModuleResolver for ScriptsDirResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<EvalAltResult>> {
        let relative = Path::new(path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(self.refuse(
                path,
                "modules are imported by a name under scripts/, without `..` or a leading `/`",
                pos,
            ));
        }
        let file = self.dir.join(relative).with_extension("rhai");
        match std::fs::metadata(&file) {
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(self.refuse(path, "the file is over 1 MiB", pos))
            }
            Ok(_) => {}
            Err(_) => {
                return Err(self.refuse(
                    path,
                    &format!("no file {} in the scripts folder", file.display()),
                    pos,
                ))
            }
        }
        // Resolve without a source so that a module's own imports are also taken from the
        // scripts folder, never relative to somewhere else.
        self.inner.resolve(engine, None, path, pos)
    }
}
