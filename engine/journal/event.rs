//! The events a run is made of, as they are journaled. A run's state — its steps, attempts,
//! pauses and outcome — is whatever these events say (see `history`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where in the run a step ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Main,
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptStatus {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    // Ordered from best to worst: a group's outcome is the worst of its members.
    Succeeded,
    Skipped,
    WouldRun,
    Failed,
    Rejected,
    Aborted,
}

impl StepStatus {
    pub fn name(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Skipped => "skipped",
            StepStatus::WouldRun => "would-run",
            StepStatus::Failed => "failed",
            StepStatus::Rejected => "rejected",
            StepStatus::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Running,
    AwaitingSignoff,
    /// Stopped between steps to go on later: its maintenance window had too little time left,
    /// or the daemon driving it was stopping.
    Parked,
    AwaitingAcceptance,
    Succeeded,
    Failed,
    Aborted,
    Rejected,
}

impl RunStatus {
    /// The exit code of a run that ends (or stops) in this status: journaled with the run's
    /// end, and the exit code of the process that drove it.
    pub fn exit_code(self) -> i32 {
        use crate::error::exit;
        match self {
            RunStatus::Succeeded => exit::SUCCESS,
            RunStatus::Failed | RunStatus::Running => exit::STEP_FAILED,
            RunStatus::AwaitingSignoff | RunStatus::AwaitingAcceptance | RunStatus::Parked => {
                exit::AWAITING_SIGNOFF
            }
            RunStatus::Aborted | RunStatus::Rejected => exit::REJECTED_OR_ABORTED,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::AwaitingSignoff => "awaiting-signoff",
            RunStatus::Parked => "parked",
            RunStatus::AwaitingAcceptance => "awaiting-acceptance",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
            RunStatus::Rejected => "rejected",
        }
    }

    /// Stopped to go on later (a sign-off, a window, a restart): not finished.
    pub fn is_paused(self) -> bool {
        matches!(self, RunStatus::AwaitingSignoff | RunStatus::Parked)
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            RunStatus::Running,
            RunStatus::AwaitingSignoff,
            RunStatus::Parked,
            RunStatus::AwaitingAcceptance,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Aborted,
            RunStatus::Rejected,
        ]
        .into_iter()
        .find(|s| s.name() == text)
    }
}

/// The schedule and slot a run was started for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledSlot {
    pub schedule: String,
    /// RFC 3339 UTC.
    pub slot: String,
}

/// The stored words of the decisions and actions that events record: each enum's serde names
/// are exactly the words journals have always held, so the canonical bytes do not change.
macro_rules! stored_words {
    ($($(#[$doc:meta])* $ty:ident { $($variant:ident => $word:literal),+ $(,)? })+) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $ty {
            $(#[serde(rename = $word)] $variant),+
        }

        impl $ty {
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    )+};
}

stored_words! {
    /// A signer's verdict on a gate or manual step.
    SignoffDecision { Approved => "approved", Rejected => "rejected" }
    /// What the person at the terminal did with a manual step (or a trainee's own tick).
    StepDecision { Done => "done", Skipped => "skipped", Aborted => "aborted" }
    /// What to do with a step that was started and never finished.
    InterruptedDecision { Rerun => "rerun", MarkedDone => "marked-done", Abort => "abort" }
    /// What a gate's timeout did (it never approves).
    TimeoutAction { Reject => "reject", Abort => "abort" }
    /// The supervisor's verdict on a whole training run.
    AcceptanceDecision { Accepted => "accepted", Rejected => "rejected" }
    /// A change to the operator directory.
    OperatorAction { Added => "added", Disabled => "disabled", Enabled => "enabled", PassphraseChanged => "passphrase-changed" }
    /// Who a parked run waits for.
    WaitingFor { Signoff => "signoff", Operator => "operator", Countersign => "countersign", Window => "window", Restart => "restart" }

    /// What became of a schedule's slot.
    SlotDecision { Started => "started", SkippedFreeze => "skipped-freeze", SkippedOverlap => "skipped-overlap", Queued => "queued", Missed => "missed", WindowClosed => "window-closed", NotStarted => "not-started" }

    /// Whether a step may start in the time its window has left.
    WindowVerdict { Go => "go", NoGo => "no-go", Cutoff => "cutoff", Overridden => "overridden" }
}

/// What marks the processes of one execution of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProcesses {
    /// The value of `OPSBOOK_STEP_TOKEN` in the environment of each of them.
    pub token: String,
    /// The cgroup that holds them, where the host allowed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

// Events are built one at a time and written at once; the size of the largest variant
// (run_started) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        runbook: String,
        title: String,
        version: u32,
        content_hash: String,
        path: String,
        params: Map<String, Value>,
        operator: String,
        operator_verified: bool,
        host: String,
        dry_run: bool,
        kind: String,
        total_steps: usize,
        pid: u32,
        engine_version: String,
        /// The person behind the operator name (aliases share one).
        #[serde(default)]
        person: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// How the identity was established: passphrase, os-user, or unverified.
        #[serde(default)]
        auth: String,
        /// A supervised training run: the trainee is the operator, signed off by the supervisor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        supervisor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<String>,
        /// From the runbook, so that reports need nothing but the journal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<String>,
        #[serde(default)]
        risk: String,
        /// The runbook's text and every script and module it uses, hashed together: what
        /// resumes and sign-offs are bound to (absent when it uses no script file or module).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bundle_hash: Option<String>,
        /// Each script file and module, relative to the scripts folder, and its SHA-256.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        scripts: BTreeMap<String, String>,
        /// Started by the daemon for this schedule's slot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<ScheduledSlot>,
    },
    StepStarted {
        step: String,
        name: String,
        kind: String,
        phase: Phase,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// What a gate or manual step asks of a person, placeholders filled in: what a
        /// sign-off of it means.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        asks: Option<String>,
        /// How to find every process a script or command step starts, should the engine die
        /// while it runs: resume kills them before the step is run again or marked done.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processes: Option<StepProcesses>,
    },
    AttemptFinished {
        step: String,
        attempt: u32,
        status: AttemptStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        duration_ms: u64,
        outputs: Map<String, Value>,
        metrics: Map<String, Value>,
        excerpt: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    StepFinished {
        step: String,
        status: StepStatus,
        attempts: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    StepSkipped {
        step: String,
        name: String,
        kind: String,
        phase: Phase,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        reason: String,
        /// In a dry run: what the step would have done (the rendered command).
        #[serde(skip_serializing_if = "Option::is_none")]
        would_run: Option<String>,
    },
    /// A manual step or a gate answered on the terminal.
    StepDecided {
        step: String,
        decision: StepDecision,
        by: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    RunPaused {
        step: String,
        reason: String,
        waiting_for: WaitingFor,
    },
    AbortRequested {
        by: String,
    },
    RollbackStarted {
        failed_step: String,
        steps: Vec<String>,
    },
    RunFinished {
        status: RunStatus,
        exit_code: i32,
        summary: String,
    },
    /// A process took over driving a run that had stopped (parked, or interrupted).
    RunResumed {
        by: String,
        pid: u32,
    },
    /// What to do with a step that was started and never finished.
    InterruptedStepDecided {
        step: String,
        decision: InterruptedDecision,
        by: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// A sign-off of a gate (or a counter-signature of a manual step).
    SignoffRecorded {
        step: String,
        signer: String,
        person: String,
        role: String,
        auth: String,
        decision: SignoffDecision,
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// The outputs of the `show` steps the signer was shown.
        evidence: Map<String, Value>,
        /// SHA-256 over run id, step id, runbook content hash, params and evidence.
        binding: String,
    },
    /// A sign-off that the policy refused, kept so that attempts are on record.
    SignoffRefused {
        step: String,
        signer: String,
        reason: String,
    },
    GateTimedOut {
        step: String,
        action: TimeoutAction,
    },
    HandedOver {
        from: String,
        to: String,
        note: String,
        by: String,
    },
    /// The supervisor's verdict on a whole supervised training run.
    AcceptanceDecided {
        decision: AcceptanceDecision,
        by: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// A test script's expectation on a step.
    ExpectationChecked {
        step: String,
        passed: bool,
        expected: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The daemon's decision on one slot of a schedule (log `schedules`): every slot gets one.
    SlotDecided {
        schedule: String,
        /// The instant the slot fell due, RFC 3339 UTC.
        slot: String,
        decision: SlotDecision,
        /// Why, in words: the freeze event, the run still going, the policy applied.
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<String>,
    },
    /// A run started inside a freeze, and who let it (log: the run).
    FreezeBroken {
        calendar: String,
        /// The freeze event broken (its SUMMARY).
        freeze: String,
        reason: String,
        by: String,
        approved_by: String,
    },
    /// Whether a step may start in what is left of the run's maintenance window.
    WindowChecked {
        step: String,
        window: String,
        verdict: WindowVerdict,
        reason: String,
        /// Milliseconds left until the cutoff.
        remaining_ms: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p95_ms: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        samples: Option<usize>,
    },
    /// A notification, written before anything tries to deliver it (log `outbox`).
    NotificationQueued {
        id: String,
        channel: String,
        topic: String,
        payload: serde_json::Value,
    },
    /// A try to deliver a notification that failed; it is tried again later.
    NotificationFailed {
        id: String,
        channel: String,
        attempt: u32,
        error: String,
    },
    NotificationDelivered {
        id: String,
        channel: String,
        attempts: u32,
    },
    /// Operators are journaled too: who added, disabled or changed whom.
    OperatorChanged {
        action: OperatorAction,
        name: String,
        role: String,
        person: String,
        by: String,
        /// SHA-256 of the stored passphrase hash after the change (added, passphrase changed):
        /// the directory's row must carry exactly this credential.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
        /// The OS account mapped to the operator (added).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        os_user: Option<String>,
    },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run_started",
            Event::StepStarted { .. } => "step_started",
            Event::AttemptFinished { .. } => "attempt_finished",
            Event::StepFinished { .. } => "step_finished",
            Event::StepSkipped { .. } => "step_skipped",
            Event::StepDecided { .. } => "step_decided",
            Event::RunPaused { .. } => "run_paused",
            Event::AbortRequested { .. } => "abort_requested",
            Event::RollbackStarted { .. } => "rollback_started",
            Event::RunFinished { .. } => "run_finished",
            Event::RunResumed { .. } => "run_resumed",
            Event::InterruptedStepDecided { .. } => "interrupted_step_decided",
            Event::SignoffRecorded { .. } => "signoff_recorded",
            Event::SignoffRefused { .. } => "signoff_refused",
            Event::GateTimedOut { .. } => "gate_timed_out",
            Event::HandedOver { .. } => "handed_over",
            Event::AcceptanceDecided { .. } => "acceptance_decided",
            Event::ExpectationChecked { .. } => "expectation_checked",
            Event::OperatorChanged { .. } => "operator_changed",
            Event::SlotDecided { .. } => "slot_decided",
            Event::FreezeBroken { .. } => "freeze_broken",
            Event::WindowChecked { .. } => "window_checked",
            Event::NotificationQueued { .. } => "notification_queued",
            Event::NotificationFailed { .. } => "notification_failed",
            Event::NotificationDelivered { .. } => "notification_delivered",
        }
    }

    pub fn step(&self) -> Option<&str> {
        match self {
            Event::StepStarted { step, .. }
            | Event::AttemptFinished { step, .. }
            | Event::StepFinished { step, .. }
            | Event::StepSkipped { step, .. }
            | Event::StepDecided { step, .. }
            | Event::RunPaused { step, .. }
            | Event::InterruptedStepDecided { step, .. }
            | Event::SignoffRecorded { step, .. }
            | Event::SignoffRefused { step, .. }
            | Event::GateTimedOut { step, .. }
            | Event::ExpectationChecked { step, .. }
            | Event::WindowChecked { step, .. } => Some(step),
            _ => None,
        }
    }

    /// The event as JSON with its keys sorted: the bytes that are hashed and stored.
    pub fn canonical_json(&self) -> String {
        // serde_json's Map is ordered by key (no `preserve_order`), so the value is canonical.
        let value = serde_json::to_value(self).expect("events hold only JSON-representable data");
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_round_trips() {
        let e = Event::StepFinished {
            step: "disk".into(),
            status: StepStatus::WouldRun,
            attempts: 0,
            reason: None,
        };
        let json = e.canonical_json();
        assert_eq!(
            json,
            r#"{"attempts":0,"event":"step_finished","status":"would-run","step":"disk"}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kind(), "step_finished");
    }

    #[test]
    fn worst_status_orders_last() {
        assert!(StepStatus::Failed > StepStatus::Succeeded);
        assert!(StepStatus::Aborted > StepStatus::Failed);
    }
}
