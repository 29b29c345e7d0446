//! What a run shows as it goes, as the executor sees it: a boundary trait. The terminal's bars
//! and plain lines are in `term`; a daemon or a benchmark passes its own.

use std::time::Duration;

use crate::journal::event::StepStatus;

pub trait Progress: Send + Sync {
    /// The run begins: `header` is the first line printed (it carries the run id).
    fn run_started(&self, header: &str, total_steps: usize);
    fn step_started(&self, id: &str, name: &str);
    /// The latest line of a running step's output (already redacted).
    fn step_line(&self, id: &str, line: &str);
    fn step_finished(&self, finished: &FinishedStep);
    /// The step waits for a person; its spinner goes, and `line` says why.
    fn step_parked(&self, id: &str, line: &str);
    /// A line of its own (rollback started, run paused, ...).
    fn message(&self, text: &str);
    /// Runs `f` (a prompt) with the bars out of the way.
    fn suspend(&self, f: &mut dyn FnMut());
    fn finish(&self);
}

pub struct FinishedStep<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub status: StepStatus,
    pub duration: Option<Duration>,
    pub detail: Option<&'a str>,
    /// Top-level steps advance the overall bar; group members and rollback steps do not.
    pub advances: bool,
}

/// Shows nothing: for embedding and benchmarks.
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn run_started(&self, _: &str, _: usize) {}
    fn step_started(&self, _: &str, _: &str) {}
    fn step_line(&self, _: &str, _: &str) {}
    fn step_finished(&self, _: &FinishedStep) {}
    fn step_parked(&self, _: &str, _: &str) {}
    fn message(&self, _: &str) {}
    fn suspend(&self, f: &mut dyn FnMut()) {
        f()
    }
    fn finish(&self) {}
}
