//! The sandbox's limits, in one place: rhai's defaults are unlimited, and every one is set
//! here. A step's own wall-clock timeout is enforced from `on_progress` (see `build_engine`).

/// A backstop, far beyond what a step's wall-clock timeout lets a script do.
pub const MAX_OPERATIONS: u64 = 20_000_000_000;
pub const MAX_CALL_LEVELS: usize = 64;
pub const MAX_EXPR_DEPTH: usize = 64;
pub const MAX_FUNCTION_EXPR_DEPTH: usize = 32;
pub const MAX_STRING_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_ARRAY_LEN: usize = 100_000;
pub const MAX_MAP_LEN: usize = 100_000;
/// The stack of the thread a script runs on. Rhai measures and drops nested values
/// recursively; the size limits above bound the nesting, and this bounds the stack it needs.
/// Only the pages a script touches are ever committed.
pub const EVAL_STACK_BYTES: usize = 512 * 1024 * 1024;
/// How deep a step's outputs may nest: they are journaled as JSON and read by later steps.
pub const MAX_OUTPUT_DEPTH: usize = 64;
pub const MAX_MODULES: usize = 32;
pub const MAX_VARIABLES: usize = 1_000;
/// How many log lines one step keeps; later lines are counted, not kept.
pub const MAX_LOG_LINES: usize = 10_000;
/// Deadline for a `when` condition or an `expect` expression.
pub const CONDITION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
