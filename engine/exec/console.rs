//! The person at a console, as the executor sees them: the one boundary through which a run
//! asks someone about a gate, a manual step or an interrupted step. The terminal's console is
//! in `term`; a daemon passes none (the run parks) and tests pass a scripted one.

use crate::exec::resume::InterruptedChoice;

/// What kind of step a person is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttendedKind {
    Gate,
    Manual,
    /// A manual step of a test script: the person reports whether what they saw matched.
    ManualObserved,
}

/// One question about a gate or manual step.
#[derive(Debug, Clone)]
pub struct Attendance {
    /// What the person reads first: the step, its prompt, the evidence, who may sign, and
    /// when it times out (rendered by the executor, secrets masked, control characters
    /// escaped by the console).
    pub heading: String,
    pub kind: AttendedKind,
    pub evidence_required: bool,
    /// A supervised training run: the supervisor counter-signs manual steps as well.
    pub countersigned: bool,
    /// Who signs when the person just presses Enter; None when the runner may not sign
    /// (four eyes) and someone else must give their name.
    pub default_signer: Option<String>,
    /// The comment or evidence given in the last round, if it was refused: offered again.
    pub previous_comment: Option<String>,
    /// The operator driving the run.
    pub runner: String,
}

/// What the person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttendedDecision {
    /// Approve a gate; a manual step is done (as expected).
    Approve,
    /// Reject a gate; a manual step of a test script did not match.
    Reject,
    /// Skip a manual step, with a reason.
    Skip,
    /// Abort the run.
    Abort,
}

/// Who signs an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// The operator driving the run.
    Runner,
    /// Another operator, identified on the spot with their passphrase.
    Other { name: String, passphrase: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendedAnswer {
    pub decision: AttendedDecision,
    pub comment: Option<String>,
    pub signer: Signer,
}

pub trait Console: Send + Sync {
    /// Asks about a gate or manual step; None when the person defers (the run parks) or
    /// there is no more input. It blocks: the executor calls it on a blocking thread.
    fn attend(&self, question: &Attendance) -> Option<AttendedAnswer>;

    /// Withdraws the question being asked (the operator pressed Ctrl-C): `attend` returns
    /// None without taking the next answer typed.
    fn withdraw(&self) {}

    /// Asks what to do with a step that started and never finished; None: abort the run.
    fn interrupted(&self, step: &str, name: &str) -> Option<InterruptedChoice>;
}
