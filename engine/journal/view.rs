//! What happened in a run, read back from the journal: runs and steps are folds over the
//! events, never a second source of truth.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::journal::event::{
    AcceptanceDecision, AttemptStatus, Event, Phase, RunStatus, ScheduledSlot, SignoffDecision,
    StepProcesses, StepStatus, TimeoutAction, WaitingFor, WindowVerdict,
};
use crate::journal::{Journal, StoredEvent};

#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    pub runbook: String,
    pub title: String,
    pub version: u32,
    pub content_hash: String,
    /// The runbook's text and its scripts and modules hashed together (runs started before
    /// scripts were bound have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_hash: Option<String>,
    /// The script files and modules the run used, with their SHA-256.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scripts: BTreeMap<String, String>,
    pub path: String,
    pub params: Map<String, Value>,
    pub operator: String,
    pub operator_verified: bool,
    pub host: String,
    pub dry_run: bool,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub summary: Option<String>,
    pub paused: Option<Pause>,
    pub abort_requested: bool,
    pub rolled_back: bool,
    pub total_steps: usize,
    pub steps: Vec<StepView>,
    pub events: usize,
    /// The person behind the operator (aliases share one).
    pub person: String,
    pub role: Option<String>,
    pub auth: String,
    /// Set on a supervised training run: the operator is the trainee.
    pub supervisor: Option<String>,
    pub change: Option<String>,
    /// The runbook's owner, maintenance window, risk and kind (runbook or test), as run.
    pub runbook_owner: Option<String>,
    pub window: Option<String>,
    pub risk: String,
    pub kind: String,
    /// Who holds the run now: the operator, then whoever it was handed over to.
    pub owner: String,
    pub custody: Vec<Handover>,
    pub resumes: Vec<Resume>,
    /// The step whose failure started the rollback.
    pub rollback_for: Option<String>,
    /// The outcome before acceptance, for a training run.
    pub outcome: Option<RunStatus>,
    pub acceptance: Option<Decision>,
    /// Started by the daemon for a schedule's slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<ScheduledSlot>,
    /// Each check of a step against the time left in the run's maintenance window.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub window_checks: Vec<WindowCheck>,
    /// Started inside a freeze, with whose approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze_broken: Option<FreezeBreak>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowCheck {
    pub step: String,
    pub window: String,
    pub verdict: WindowVerdict,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FreezeBreak {
    pub calendar: String,
    pub freeze: String,
    pub reason: String,
    pub by: String,
    pub approved_by: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Handover {
    pub from: String,
    pub to: String,
    pub note: String,
    pub by: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resume {
    pub by: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Signoff {
    pub signer: String,
    pub person: String,
    pub role: String,
    pub auth: String,
    pub decision: SignoffDecision,
    pub comment: Option<String>,
    pub evidence: Map<String, Value>,
    pub binding: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Expectation {
    pub passed: bool,
    pub expected: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pause {
    pub step: String,
    pub reason: String,
    pub waiting_for: WaitingFor,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub phase: Phase,
    pub group: Option<String>,
    /// None while the step is running (started, not finished).
    pub status: Option<StepStatus>,
    pub reason: Option<String>,
    pub would_run: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub attempts: Vec<AttemptView>,
    pub decisions: Vec<Decision>,
    pub signoffs: Vec<Signoff>,
    /// Sign-offs the policy refused: who tried, and why not.
    pub refusals: Vec<Decision>,
    pub expectation: Option<Expectation>,
    pub timed_out: Option<TimeoutAction>,
    /// What a gate or manual step asked of a person (journaled since this was recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asks: Option<String>,
    /// What marks the processes of a script or command step (journaled since this was
    /// recorded), for killing the leftovers of an interrupted one. Not shown: it is the
    /// engine's business.
    #[serde(skip)]
    pub processes: Option<StepProcesses>,
}

impl StepView {
    fn new(
        id: String,
        name: String,
        kind: String,
        phase: Phase,
        group: Option<String>,
        at: String,
    ) -> Self {
        Self {
            id,
            name,
            kind,
            phase,
            group,
            status: None,
            reason: None,
            would_run: None,
            started_at: at,
            finished_at: None,
            attempts: Vec::new(),
            decisions: Vec::new(),
            signoffs: Vec::new(),
            refusals: Vec::new(),
            expectation: None,
            timed_out: None,
            asks: None,
            processes: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub status: AttemptStatus,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub outputs: Map<String, Value>,
    pub metrics: Map<String, Value>,
    pub excerpt: String,
    pub error: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub decision: String,
    pub by: String,
    pub comment: Option<String>,
    pub at: String,
}

/// A line of `opsbook runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub person: String,
    pub supervisor: Option<String>,
    pub acceptance: Option<AcceptanceDecision>,
    pub runbook: String,
    pub version: u32,
    pub status: RunStatus,
    pub operator: String,
    pub host: String,
    pub dry_run: bool,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    /// The outcome before acceptance, for a training run.
    pub outcome: Option<RunStatus>,
    /// Running, but no process drives it any more (filled in by the caller, who can check).
    pub interrupted: bool,
}

/// Where a step stands in a run: its journaled status, or — while it has none — whether it
/// was interrupted (a later attempt of it exists), waits for a person, or is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Finished(StepStatus),
    Interrupted,
    Waiting,
    Running,
}

impl StepState {
    pub fn name(self) -> &'static str {
        match self {
            StepState::Finished(status) => status.name(),
            StepState::Interrupted => "interrupted",
            StepState::Waiting => "waiting",
            StepState::Running => "running",
        }
    }
}

impl RunView {
    /// Folds a run's events (in order) into its view.
    pub fn from_events(events: &[StoredEvent]) -> Result<Self> {
        let Some(first) = events.first() else {
            return Err(Error::RunWithoutStart { run: String::new() });
        };
        let Event::RunStarted {
            runbook,
            title,
            version,
            content_hash,
            path,
            params,
            operator,
            operator_verified,
            host,
            dry_run,
            total_steps,
            person,
            role,
            auth,
            supervisor,
            change,
            owner,
            window,
            risk,
            kind,
            bundle_hash,
            scripts,
            slot,
            ..
        } = first.event()?
        else {
            return Err(Error::RunWithoutStart {
                run: first.run_id.clone(),
            });
        };
        let mut view = RunView {
            id: first.run_id.clone(),
            runbook,
            title,
            version,
            content_hash,
            bundle_hash,
            scripts,
            path,
            params,
            operator_verified,
            host,
            dry_run,
            status: RunStatus::Running,
            started_at: first.at.clone(),
            finished_at: None,
            exit_code: None,
            summary: None,
            paused: None,
            abort_requested: false,
            rolled_back: false,
            total_steps,
            steps: Vec::new(),
            events: events.len(),
            person: if person.is_empty() {
                operator.clone()
            } else {
                person
            },
            owner: operator.clone(),
            operator,
            role,
            auth,
            supervisor,
            change,
            runbook_owner: owner,
            window,
            risk,
            kind,
            custody: Vec::new(),
            resumes: Vec::new(),
            rollback_for: None,
            slot,
            window_checks: Vec::new(),
            freeze_broken: None,
            outcome: None,
            acceptance: None,
        };
        for stored in &events[1..] {
            view.apply(stored, stored.event()?);
        }
        Ok(view)
    }

    fn step_mut(&mut self, id: &str) -> Option<&mut StepView> {
        self.steps.iter_mut().rev().find(|s| s.id == id)
    }

    fn apply(&mut self, stored: &StoredEvent, event: Event) {
        let at = stored.at.clone();
        self.status = status_after(&event, self.status, self.outcome, self.supervisor.is_some());
        match event {
            Event::RunStarted { .. } => {}
            Event::StepStarted {
                step,
                name,
                kind,
                phase,
                group,
                asks,
                processes,
            } => {
                self.status = RunStatus::Running;
                self.paused = None;
                let mut view = StepView::new(step, name, kind, phase, group, at);
                view.asks = asks;
                view.processes = processes;
                self.steps.push(view);
            }
            Event::StepSkipped {
                step,
                name,
                kind,
                phase,
                group,
                reason,
                would_run,
            } => {
                let mut view = StepView::new(step, name, kind, phase, group, at.clone());
                view.status = Some(if would_run.is_some() {
                    StepStatus::WouldRun
                } else {
                    StepStatus::Skipped
                });
                view.reason = Some(reason);
                view.would_run = would_run;
                view.finished_at = Some(at);
                self.steps.push(view);
            }
            Event::AttemptFinished {
                step,
                attempt,
                status,
                exit_code,
                duration_ms,
                outputs,
                metrics,
                excerpt,
                error,
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.attempts.push(AttemptView {
                        attempt,
                        status,
                        exit_code,
                        duration_ms,
                        outputs,
                        metrics,
                        excerpt,
                        error,
                        at,
                    });
                }
            }
            Event::StepFinished {
                step,
                status,
                reason,
                ..
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.status = Some(status);
                    s.reason = reason;
                    s.finished_at = Some(at);
                }
            }
            Event::StepDecided {
                step,
                decision,
                by,
                comment,
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.decisions.push(Decision {
                        decision: decision.name().to_string(),
                        by,
                        comment,
                        at,
                    });
                }
            }
            Event::RunPaused {
                step,
                reason,
                waiting_for,
            } => {
                self.paused = Some(Pause {
                    step,
                    reason,
                    waiting_for,
                    at,
                });
            }
            Event::AbortRequested { .. } => self.abort_requested = true,
            Event::WindowChecked {
                step,
                window,
                verdict,
                reason,
                ..
            } => self.window_checks.push(WindowCheck {
                step,
                window,
                verdict,
                reason,
                at,
            }),
            Event::FreezeBroken {
                calendar,
                freeze,
                reason,
                by,
                approved_by,
            } => {
                self.freeze_broken = Some(FreezeBreak {
                    calendar,
                    freeze,
                    reason,
                    by,
                    approved_by,
                    at,
                })
            }
            // Events of other logs than a run's.
            Event::OperatorChanged { .. }
            | Event::SlotDecided { .. }
            | Event::NotificationQueued { .. }
            | Event::NotificationFailed { .. }
            | Event::NotificationDelivered { .. } => {}
            Event::RollbackStarted { failed_step, .. } => {
                self.rolled_back = true;
                self.rollback_for = Some(failed_step);
            }
            Event::RunFinished {
                status,
                exit_code,
                summary,
            } => {
                self.outcome = Some(status);
                self.exit_code = Some(exit_code);
                self.summary = Some(summary);
                self.finished_at = Some(at);
                self.paused = None;
            }
            Event::RunResumed { by, .. } => {
                self.paused = None;
                self.resumes.push(Resume { by, at });
            }
            Event::InterruptedStepDecided {
                step,
                decision,
                by,
                comment,
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.decisions.push(Decision {
                        decision: format!("interrupted: {decision}"),
                        by,
                        comment,
                        at,
                    });
                }
            }
            Event::SignoffRecorded {
                step,
                signer,
                person,
                role,
                auth,
                decision,
                comment,
                evidence,
                binding,
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.signoffs.push(Signoff {
                        signer,
                        person,
                        role,
                        auth,
                        decision,
                        comment,
                        evidence,
                        binding,
                        at,
                    });
                }
            }
            Event::SignoffRefused {
                step,
                signer,
                reason,
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.refusals.push(Decision {
                        decision: "refused".into(),
                        by: signer,
                        comment: Some(reason),
                        at,
                    });
                }
            }
            Event::GateTimedOut { step, action } => {
                if let Some(s) = self.step_mut(&step) {
                    s.timed_out = Some(action);
                }
            }
            Event::HandedOver { from, to, note, by } => {
                self.owner = to.clone();
                self.custody.push(Handover {
                    from,
                    to,
                    note,
                    by,
                    at,
                });
            }
            Event::AcceptanceDecided {
                decision,
                by,
                comment,
            } => {
                self.acceptance = Some(Decision {
                    decision: decision.name().to_string(),
                    by,
                    comment,
                    at,
                });
            }
            Event::ExpectationChecked {
                step,
                passed,
                expected,
                detail,
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.expectation = Some(Expectation {
                        passed,
                        expected,
                        detail,
                    });
                }
            }
        }
    }

    /// The step this run is parked at, if it is waiting for a person.
    /// What a sign-off or a resume of this run is bound to: the bundle of runbook text and
    /// scripts, or the runbook's text alone for runs that used none (or started before scripts
    /// were bound).
    pub fn bound_hash(&self) -> &str {
        self.bundle_hash.as_deref().unwrap_or(&self.content_hash)
    }

    /// The state of the step at `index` of `steps`, derived once for `show` and the reports.
    pub fn step_state(&self, index: usize) -> StepState {
        let step = &self.steps[index];
        match step.status {
            Some(status) => StepState::Finished(status),
            None if self.steps[index + 1..]
                .iter()
                .any(|later| later.id == step.id && later.phase == step.phase) =>
            {
                StepState::Interrupted
            }
            None if self.paused.as_ref().is_some_and(|p| p.step == step.id) => StepState::Waiting,
            None => StepState::Running,
        }
    }

    pub fn waiting_step(&self) -> Option<&StepView> {
        let paused = self.paused.as_ref()?;
        self.steps.iter().rev().find(|s| s.id == paused.step)
    }

    /// The latest record of a step.
    pub fn step(&self, id: &str) -> Option<&StepView> {
        self.steps.iter().rev().find(|s| s.id == id)
    }

    /// The outputs of the step's last attempt, as later steps see them in `vars`.
    pub fn outputs_of(&self, step: &str) -> Option<&Map<String, Value>> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.id == step && !s.attempts.is_empty())
            .and_then(|s| s.attempts.last())
            .map(|a| &a.outputs)
    }
}

/// Loads one run by id, or by a unique prefix of its id.
pub fn load_run(journal: &Journal, id: &str) -> Result<RunView> {
    let full_id = resolve_run_id(journal, id)?;
    RunView::from_events(&journal.run_events(&full_id)?)
}

pub fn resolve_run_id(journal: &Journal, id: &str) -> Result<String> {
    let matches = journal.find_runs(id)?;
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::UnknownRun { id: id.to_string() }),
        many => Err(Error::AmbiguousRun {
            prefix: id.to_string(),
            matches: many.len(),
        }),
    }
}

/// Every run, oldest first, from the run-level events alone.
pub fn list_runs(journal: &Journal) -> Result<Vec<RunSummary>> {
    let mut runs: Vec<RunSummary> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for stored in journal.run_level_events()? {
        let event = stored.event()?;
        if let Some(&i) = index.get(&stored.run_id) {
            let r: &mut RunSummary = &mut runs[i];
            r.status = status_after(&event, r.status, r.outcome, r.supervisor.is_some());
        }
        match event {
            Event::RunStarted {
                runbook,
                version,
                operator,
                host,
                dry_run,
                supervisor,
                person,
                ..
            } => {
                index.insert(stored.run_id.clone(), runs.len());
                runs.push(RunSummary {
                    id: stored.run_id.clone(),
                    person: if person.is_empty() {
                        operator.clone()
                    } else {
                        person
                    },
                    supervisor,
                    acceptance: None,
                    runbook,
                    version,
                    status: RunStatus::Running,
                    operator,
                    host,
                    dry_run,
                    started_at: stored.at.clone(),
                    finished_at: None,
                    exit_code: None,
                    outcome: None,
                    interrupted: false,
                });
            }
            Event::RunFinished {
                status, exit_code, ..
            } => {
                if let Some(&i) = index.get(&stored.run_id) {
                    let r = &mut runs[i];
                    r.outcome = Some(status);
                    r.exit_code = Some(exit_code);
                    r.finished_at = Some(stored.at.clone());
                }
            }
            Event::AcceptanceDecided { decision, .. } => {
                if let Some(&i) = index.get(&stored.run_id) {
                    runs[i].acceptance = Some(decision);
                }
            }
            _ => {}
        }
    }
    Ok(runs)
}

/// The run-level state transitions, folded in one place for the full view and the listing:
/// a pause waits for a person, a resume runs again, a training run's end awaits acceptance,
/// and the supervisor's verdict settles it.
fn status_after(
    event: &Event,
    current: RunStatus,
    outcome: Option<RunStatus>,
    supervised: bool,
) -> RunStatus {
    match event {
        Event::RunPaused {
            waiting_for: WaitingFor::Window | WaitingFor::Restart,
            ..
        } => RunStatus::Parked,
        Event::RunPaused { .. } => RunStatus::AwaitingSignoff,
        Event::RunResumed { .. } => RunStatus::Running,
        Event::RunFinished { .. } if supervised => RunStatus::AwaitingAcceptance,
        Event::RunFinished { status, .. } => *status,
        Event::AcceptanceDecided { decision, .. } => match (decision, outcome) {
            (AcceptanceDecision::Accepted, Some(outcome)) => outcome,
            _ => RunStatus::Rejected,
        },
        _ => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::event::StepStatus;

    /// Events as the journal stores them: seq and run_seq from 1, `at` one second apart.
    fn stored(run_id: &str, events: &[Event]) -> Vec<StoredEvent> {
        events
            .iter()
            .enumerate()
            .map(|(i, event)| StoredEvent {
                seq: i as i64 + 1,
                run_id: run_id.into(),
                run_seq: i as i64 + 1,
                at: format!("2026-03-01T10:00:{:02}Z", i + 1),
                kind: event.kind().into(),
                step: event.step().map(str::to_string),
                body: event.canonical_json(),
                prev_hash: String::new(),
                hash: String::new(),
            })
            .collect()
    }

    /// A run's start; `supervisor` makes it a supervised training run.
    fn started(supervisor: Option<&str>) -> Event {
        Event::RunStarted {
            runbook: "rb".into(),
            title: "T".into(),
            version: 1,
            content_hash: "c0ffee".into(),
            path: "runbooks/rb.yaml".into(),
            params: Map::new(),
            operator: "tina".into(),
            operator_verified: true,
            host: "h".into(),
            dry_run: false,
            kind: "runbook".into(),
            total_steps: 2,
            pid: 1,
            engine_version: "0".into(),
            person: "tina".into(),
            role: Some("operator".into()),
            auth: "passphrase".into(),
            supervisor: supervisor.map(str::to_string),
            change: None,
            owner: None,
            window: None,
            risk: "low".into(),
            bundle_hash: None,
            scripts: Default::default(),
            slot: None,
        }
    }

    fn step_started(step: &str) -> Event {
        Event::StepStarted {
            step: step.into(),
            name: step.into(),
            kind: "shell".into(),
            phase: Phase::Main,
            group: None,
            asks: None,
            processes: None,
        }
    }

    fn step_finished(step: &str, status: StepStatus) -> Event {
        Event::StepFinished {
            step: step.into(),
            status,
            attempts: 1,
            reason: None,
        }
    }

    fn paused(step: &str) -> Event {
        Event::RunPaused {
            step: step.into(),
            reason: "waiting for a sign-off".into(),
            waiting_for: WaitingFor::Signoff,
        }
    }

    fn resumed() -> Event {
        Event::RunResumed {
            by: "tina".into(),
            pid: 2,
        }
    }

    fn finished(status: RunStatus) -> Event {
        Event::RunFinished {
            status,
            exit_code: status.exit_code(),
            summary: String::new(),
        }
    }

    fn acceptance(decision: AcceptanceDecision) -> Event {
        Event::AcceptanceDecided {
            decision,
            by: "sam".into(),
            comment: None,
        }
    }

    /// Run-level histories and the status each must leave the run in.
    fn status_cases() -> Vec<(&'static str, Vec<Event>, RunStatus)> {
        use RunStatus::*;
        let ran = |supervisor, outcome| {
            vec![
                started(supervisor),
                step_started("a"),
                step_finished("a", StepStatus::Succeeded),
                finished(outcome),
            ]
        };
        let with = |mut events: Vec<Event>, more: Event| {
            events.push(more);
            events
        };
        let at_gate = vec![started(None), step_started("g"), paused("g")];
        vec![
            ("started", vec![started(None)], Running),
            (
                "a step running",
                vec![started(None), step_started("a")],
                Running,
            ),
            ("paused at a gate", at_gate.clone(), AwaitingSignoff),
            (
                "paused, then resumed",
                with(at_gate.clone(), resumed()),
                Running,
            ),
            (
                "paused, resumed, and paused again",
                with(with(at_gate.clone(), resumed()), paused("g")),
                AwaitingSignoff,
            ),
            ("finished succeeded", ran(None, Succeeded), Succeeded),
            ("finished failed", ran(None, Failed), Failed),
            (
                "a paused run resumed and finished",
                with(with(at_gate, resumed()), finished(Rejected)),
                Rejected,
            ),
            (
                "a supervised run paused",
                vec![started(Some("sam")), step_started("g"), paused("g")],
                AwaitingSignoff,
            ),
            (
                "a supervised run finished",
                ran(Some("sam"), Succeeded),
                AwaitingAcceptance,
            ),
            (
                "a supervised run accepted takes its outcome",
                with(
                    ran(Some("sam"), Succeeded),
                    acceptance(AcceptanceDecision::Accepted),
                ),
                Succeeded,
            ),
            (
                "a failed supervised run accepted stays failed",
                with(
                    ran(Some("sam"), Failed),
                    acceptance(AcceptanceDecision::Accepted),
                ),
                Failed,
            ),
            (
                "a supervised run rejected",
                with(
                    ran(Some("sam"), Succeeded),
                    acceptance(AcceptanceDecision::Rejected),
                ),
                Rejected,
            ),
        ]
    }

    #[test]
    fn the_run_status_follows_pauses_resumes_ends_and_acceptance() {
        for (what, events, expected) in status_cases() {
            let view = RunView::from_events(&stored("R", &events)).unwrap();
            assert_eq!(view.status, expected, "{what}");
        }
    }

    #[test]
    fn list_runs_agrees_with_the_run_view_on_every_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(&dir.path().join("journal.db")).unwrap();
        let cases = status_cases();
        // Interleaved, as concurrent runs are journaled: run i's events at rounds 0, 1, ….
        let longest = cases.iter().map(|(_, e, _)| e.len()).max().unwrap();
        for round in 0..longest {
            for (i, (_, events, _)) in cases.iter().enumerate() {
                if let Some(event) = events.get(round) {
                    journal.append(&format!("R{i:02}"), event).unwrap();
                }
            }
        }
        let listed = list_runs(&journal).unwrap();
        let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
        let expected_ids: Vec<String> = (0..cases.len()).map(|i| format!("R{i:02}")).collect();
        assert_eq!(ids, expected_ids, "every run, oldest first");
        for ((what, _, expected), summary) in cases.iter().zip(&listed) {
            let view = load_run(&journal, &summary.id).unwrap();
            assert_eq!(
                (summary.status, view.status),
                (*expected, *expected),
                "{what}: (list_runs, RunView)"
            );
            assert_eq!(summary.outcome, view.outcome, "{what}: outcome");
        }
    }

    #[test]
    fn a_step_without_an_end_is_interrupted_waiting_or_running() {
        let sequences: Vec<(&str, Vec<Event>, Vec<StepState>)> = vec![
            (
                "started, never finished, and started again: the first is interrupted",
                vec![started(None), step_started("a"), step_started("a")],
                vec![StepState::Interrupted, StepState::Running],
            ),
            (
                "a rerun that finishes ends the latest record, not the interrupted one",
                vec![
                    started(None),
                    step_started("a"),
                    step_started("a"),
                    step_finished("a", StepStatus::Succeeded),
                ],
                vec![
                    StepState::Interrupted,
                    StepState::Finished(StepStatus::Succeeded),
                ],
            ),
            (
                "the step the run is paused at waits",
                vec![started(None), step_started("g"), paused("g")],
                vec![StepState::Waiting],
            ),
            (
                "once resumed, a waiting step is running again",
                vec![started(None), step_started("g"), paused("g"), resumed()],
                vec![StepState::Running],
            ),
            (
                "a step started with no end and no pause is running",
                vec![
                    started(None),
                    step_started("a"),
                    step_finished("a", StepStatus::Failed),
                    step_started("b"),
                ],
                vec![StepState::Finished(StepStatus::Failed), StepState::Running],
            ),
        ];
        for (what, events, expected) in sequences {
            let view = RunView::from_events(&stored("R", &events)).unwrap();
            let states: Vec<StepState> =
                (0..view.steps.len()).map(|i| view.step_state(i)).collect();
            assert_eq!(states, expected, "{what}");
        }
    }
}
