//! The Rhai sandbox: the one place that builds the `Engine` (its limits, its module resolver,
//! its host API) and evaluates a step's script under a wall-clock deadline.
//!
//! The engine is built once per run and shared by every step; what a step produces (log
//! lines, outputs, metrics, a skip) is gathered in a per-thread [`ScriptContext`], since each
//! evaluation runs on its own blocking thread.

use std::path::Path;
use std::time::Instant;

use rhai::{Dynamic, Engine, EvalAltResult, Map, Position, Scope, AST};

pub mod api;
pub mod context;
pub mod limits;
pub mod resolver;

pub use context::ScriptContext;
use context::{with_context, CURRENT, STOP_ABORT, STOP_SKIP, STOP_TIMEOUT};
use resolver::ScriptsDirResolver;

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
    api::register(&mut engine);
    engine
}

/// Runs `f` (an evaluation) on a thread of its own with [`limits::EVAL_STACK_BYTES`] of
/// stack: values nested as deep as the size limits allow are built, measured and dropped
/// there without exhausting a runtime thread's stack. Completes when `f` returns.
pub async fn on_eval_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (done, answer) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("opsbook-rhai".into())
        .stack_size(limits::EVAL_STACK_BYTES)
        .spawn(move || {
            let _ = done.send(f());
        })
        .map_err(|e| format!("cannot start a thread for the script: {e}"))?;
    answer
        .await
        .map_err(|_| "the script stopped unexpectedly".to_string())
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

/// Evaluates a `when` or `expect` expression to a boolean, on the current thread. Like
/// [`run_script`] it must run on a blocking thread: `sh()` inside it waits for its command on
/// the context's runtime.
pub fn eval_condition(
    engine: &Engine,
    ast: &AST,
    inputs: &ScriptInputs,
    extra: Option<(&str, Map)>,
    ctx: ScriptContext,
) -> Result<bool, String> {
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
            ScriptOutcome::Aborted => Err("stopped at the operator's request".into()),
            ScriptOutcome::Skipped(reason) => Err(format!(
                "skip() is for steps, not expressions (it said: {reason})"
            )),
            ScriptOutcome::Succeeded => Err("the expression gave no value".into()),
        },
    }
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
