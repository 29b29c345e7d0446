//! opsbook: a runbook and checklist execution engine for infrastructure operations.
//! `engine/README.md` maps the folders and which may use which.
//!
//! Every subsystem is crate-private, so the compiler finds dead code; the binary calls
//! [`cli::main`], and [`embed`] is the small surface the benchmarks drive in-process.

pub(crate) mod calendar;
pub mod cli;
pub(crate) mod config;
pub(crate) mod diagnostic;
pub(crate) mod error;
pub(crate) mod exec;
pub(crate) mod journal;
pub(crate) mod notify;
pub(crate) mod people;
pub(crate) mod printable;
pub(crate) mod report;
pub(crate) mod runbook;
pub(crate) mod schedule;
pub(crate) mod script;
pub(crate) mod sys;
pub(crate) mod term;

/// Running a plan in-process and reading its journal, without a command line: what
/// `tests/bench` measures.
pub mod embed {
    pub use crate::error::{Error, Result};
    pub use crate::exec::progress::{Progress, SilentProgress};
    pub use crate::exec::{run, RunRequest, RunResult};
    pub use crate::journal::event::{AttemptStatus, Event, Phase, RunStatus, StepStatus};
    pub use crate::journal::view::RunView;
    pub use crate::journal::Journal;
    pub use crate::people::directory::Operator;
    pub use crate::report::{Format, Renderer, RunReport};
    pub use crate::runbook::analyze::analyze_file;
    pub use crate::runbook::params::Params;
    pub use crate::script::build_engine;
    pub use crate::sys::abort::AbortSignal;
    /// Commands run under keepers forked by a process started from the `opsbook` binary
    /// (`/proc/self/exe` by default): a program that embeds the engine names that binary
    /// before its first run.
    pub use crate::sys::keepers::use_program as use_keeper_binary;
}
