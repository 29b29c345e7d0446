//! The checked, ready-to-run form of a runbook: every step with its kind resolved, its
//! scripts and conditions compiled, its durations parsed. Built only by the analyzer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

use rhai::AST;

use crate::runbook::{Gate, OnFailure, Runbook, SourceFile};

/// A step with no `timeout` gets this one.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub struct Plan {
    pub source: SourceFile,
    pub runbook: Runbook,
    pub steps: Vec<PlannedStep>,
    pub rollback: Vec<PlannedStep>,
    pub scripts_dir: PathBuf,
    /// Every script file and module the runbook uses, relative to the scripts folder, with
    /// the SHA-256 of its content.
    pub sources: BTreeMap<String, String>,
}

impl Plan {
    /// What a run is bound to: the runbook's text and every script and module it uses. A
    /// runbook without scripts is bound to its text alone (its content hash).
    pub fn bundle_hash(&self) -> String {
        if self.sources.is_empty() {
            return self.source.content_hash.clone();
        }
        let mut hasher = Sha256::new();
        hasher.update(self.source.content_hash.as_bytes());
        for (path, hash) in &self.sources {
            hasher.update(b"\n");
            hasher.update(path.as_bytes());
            hasher.update(b"\0");
            hasher.update(hash.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// Every step, group members included, in document order (rollback last).
    pub fn all_steps(&self) -> Vec<&PlannedStep> {
        fn walk<'a>(steps: &'a [PlannedStep], out: &mut Vec<&'a PlannedStep>) {
            for step in steps {
                out.push(step);
                if let StepKind::Parallel(members) = &step.kind {
                    walk(members, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        walk(&self.rollback, &mut out);
        out
    }
}

pub struct PlannedStep {
    pub id: String,
    /// `name`, or the id when the step has none.
    pub name: String,
    pub description: Option<String>,
    pub kind: StepKind,
    pub when: Option<Expression>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub on_failure: OnFailure,
    pub readonly: bool,
    pub idempotent: bool,
    pub undo: Option<String>,
    pub expect: Option<Expectation>,
}

impl PlannedStep {
    /// Whether the step's texts name the parameter `name` (as `params.NAME`, a placeholder,
    /// or one of `env_names`): a secret is exported only to steps that do. A script file is
    /// taken to use every parameter, since its text is not kept with the plan.
    pub fn uses_param(&self, name: &str, env_names: &[&str]) -> bool {
        let mentions = |text: &str| {
            text.contains(&format!("params.{name}"))
                || text.contains(&format!("params[\"{name}\"]"))
                || env_names.iter().any(|e| text.contains(e))
        };
        let own = match &self.kind {
            StepKind::Rhai {
                source: ScriptSource::File(_),
                ..
            } => true,
            StepKind::Rhai {
                source: ScriptSource::Inline(text),
                ..
            } => mentions(text),
            StepKind::Shell { command } => mentions(command),
            StepKind::Manual { .. } | StepKind::Gate(_) | StepKind::Parallel(_) => false,
        };
        own || self.when.as_ref().is_some_and(|w| mentions(&w.text))
            || matches!(&self.expect, Some(Expectation::Check(e)) if mentions(&e.text))
    }
}

pub enum StepKind {
    Rhai { source: ScriptSource, ast: Arc<AST> },
    Shell { command: String },
    Manual { instructions: String },
    Gate(Gate),
    Parallel(Vec<PlannedStep>),
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Rhai {
                source: ScriptSource::Inline(_),
                ..
            } => "rhai",
            StepKind::Rhai {
                source: ScriptSource::File(_),
                ..
            } => "script",
            StepKind::Shell { .. } => "shell",
            StepKind::Manual { .. } => "manual",
            StepKind::Gate(_) => "gate",
            StepKind::Parallel(_) => "parallel",
        }
    }

    /// Steps that need a person: they cannot run unattended or inside a parallel group.
    pub fn is_interactive(&self) -> bool {
        matches!(self, StepKind::Manual { .. } | StepKind::Gate(_))
    }
}

pub enum ScriptSource {
    Inline(String),
    /// A file under scripts/, as named in the runbook.
    File(String),
}

pub struct Expression {
    pub text: String,
    pub ast: Arc<AST>,
}

pub enum Expectation {
    /// A Rhai expression over the step's outputs (`outputs.x == 3`).
    Check(Expression),
    /// The text an operator compares with what they see, for a manual step.
    Observe(String),
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub delay: Duration,
    pub backoff: f64,
}

impl RetryPolicy {
    pub const ONCE: RetryPolicy = RetryPolicy {
        attempts: 1,
        delay: Duration::ZERO,
        backoff: 1.0,
    };

    /// The pause before attempt `next` (2, 3, ...).
    pub fn delay_before(&self, next: u32) -> Duration {
        let factor = self.backoff.powi(next.saturating_sub(2) as i32);
        self.delay.mul_f64(factor.min(1e6))
    }
}
