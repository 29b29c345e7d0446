//! Journaling a run as it goes: every state change an event, secrets masked, appended before
//! the engine moves on. A step's end waits for the next commit (the next step's start, a
//! pause, the run's end) so that each step costs one durable commit, not two; its line is
//! shown once it is on disk.

use super::*;

/// Events that wait for the next commit, and the lines to show once they are durable.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) events: Vec<Event>,
    pub(super) lines: Vec<FinishedLine>,
}

/// A finished step's line, shown once its end is durable.
pub(super) struct FinishedLine {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) status: StepStatus,
    pub(super) duration: Option<Duration>,
    pub(super) detail: Option<String>,
    pub(super) advances: bool,
}

impl Executor {
    /// The journal, for a read or a transaction of its own.
    pub(super) fn journal(&self) -> Result<std::sync::MutexGuard<'_, Journal>> {
        self.journal
            .lock()
            .map_err(|_| Error::Poisoned { what: "journal" })
    }

    /// Journals an event, secrets masked, in its own durable transaction.
    pub(super) fn record(&self, event: Event) -> Result<()> {
        self.record_all(vec![event])
    }

    /// Journals events, secrets masked, in one durable transaction — preceded by any step's
    /// end that was waiting for it — and then shows the lines of the ends it made durable.
    pub(super) fn record_all(&self, events: Vec<Event>) -> Result<()> {
        let (events, lines) = {
            let mut pending = self.pending.lock().map_err(|_| Error::Poisoned {
                what: "pending events",
            })?;
            let mut all = std::mem::take(&mut pending.events);
            all.extend(events);
            (all, std::mem::take(&mut pending.lines))
        };
        if events.is_empty() {
            return Ok(());
        }
        self.commit(events)?;
        for line in lines {
            self.progress.step_finished(&FinishedStep {
                id: &line.id,
                name: &line.name,
                status: line.status,
                duration: line.duration,
                detail: line.detail.as_deref(),
                advances: line.advances,
            });
        }
        Ok(())
    }

    pub(super) fn commit(&self, events: Vec<Event>) -> Result<()> {
        let events = if self.redactor.is_empty() {
            events
        } else {
            events
                .into_iter()
                .map(|event| {
                    let mut value = serde_json::to_value(&event).map_err(|e| Error::Encode {
                        what: "an event",
                        problem: e.to_string(),
                    })?;
                    self.redactor.value(&mut value);
                    serde_json::from_value(value).map_err(|e| Error::Encode {
                        what: "an event",
                        problem: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        let mut journal = self.journal()?;
        journal.append_all(&self.run_id, &events)
    }

    pub(super) fn begin(
        &self,
        step: &PlannedStep,
        phase: Phase,
        group: Option<&str>,
    ) -> Result<()> {
        let asks = match &step.kind {
            StepKind::Manual { instructions } => Some(instructions.as_str()),
            StepKind::Gate(gate) => Some(gate.prompt.as_str()),
            _ => None,
        }
        .map(|text| {
            self.render_text(text)
                .unwrap_or_else(|_| text.to_string())
                .trim()
                .to_string()
        });
        // Journaled before anything runs: if the engine dies during the step, resume finds
        // what is left of it by these.
        let processes =
            matches!(step.kind, StepKind::Rhai { .. } | StepKind::Shell { .. }).then(|| {
                let marks = self.containment(step);
                StepProcesses {
                    token: marks.token,
                    cgroup: marks.cgroup.map(|p| p.display().to_string()),
                }
            });
        self.record(Event::StepStarted {
            step: step.id.clone(),
            name: step.name.clone(),
            kind: step.kind.name().into(),
            phase,
            group: group.map(str::to_string),
            asks,
            processes,
        })?;
        if let Ok(mut started) = self.started.lock() {
            started.insert(step.id.clone());
        }
        self.progress.step_started(&step.id, &step.name);
        Ok(())
    }

    pub(super) fn end(
        &self,
        step: &PlannedStep,
        status: StepStatus,
        attempts: u32,
        reason: Option<String>,
        duration: Option<Duration>,
        advances: bool,
    ) -> Result<StepOutcome> {
        self.end_after(
            Vec::new(),
            step,
            status,
            attempts,
            reason,
            duration,
            advances,
        )
    }

    /// Ends a step, journaling `before` (its last attempt, its expectation) in the same
    /// transaction as the step's end.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn end_after(
        &self,
        mut before: Vec<Event>,
        step: &PlannedStep,
        status: StepStatus,
        attempts: u32,
        reason: Option<String>,
        duration: Option<Duration>,
        advances: bool,
    ) -> Result<StepOutcome> {
        let reason = reason.map(|r| self.redactor.text(&r));
        before.push(Event::StepFinished {
            step: step.id.clone(),
            status,
            attempts,
            reason: reason.clone(),
        });
        self.defer(before, step, status, duration, reason, advances)
    }

    /// A step's end is journaled in the same transaction as what the run does next (the next
    /// step's start, a pause, the run's end), and always before that next thing happens: one
    /// durable commit per step instead of two. Its line is shown once it is durable.
    pub(super) fn defer(
        &self,
        events: Vec<Event>,
        step: &PlannedStep,
        status: StepStatus,
        duration: Option<Duration>,
        detail: Option<String>,
        advances: bool,
    ) -> Result<StepOutcome> {
        self.count(step, status);
        let mut pending = self.pending.lock().map_err(|_| Error::Poisoned {
            what: "pending events",
        })?;
        pending.events.extend(events);
        pending.lines.push(FinishedLine {
            id: step.id.clone(),
            name: step.name.clone(),
            status,
            duration,
            detail,
            advances,
        });
        Ok(StepOutcome::Done(status))
    }

    pub(super) fn skip(
        &self,
        step: &PlannedStep,
        phase: Phase,
        group: Option<&str>,
        reason: String,
        would_run: Option<String>,
        advances: bool,
    ) -> Result<StepOutcome> {
        let status = if would_run.is_some() {
            StepStatus::WouldRun
        } else {
            StepStatus::Skipped
        };
        let would_run = would_run.map(|w| self.redactor.text(&w));
        let skipped = Event::StepSkipped {
            step: step.id.clone(),
            name: step.name.clone(),
            kind: step.kind.name().into(),
            phase,
            group: group.map(str::to_string),
            reason: reason.clone(),
            would_run: would_run.clone(),
        };
        let detail = would_run
            .map(|w| format!("would run: {w}"))
            .unwrap_or(reason);
        self.defer(vec![skipped], step, status, None, Some(detail), advances)
    }

    pub(super) fn finished(
        &self,
        step: &PlannedStep,
        status: StepStatus,
        duration: Option<Duration>,
        detail: Option<&str>,
        advances: bool,
    ) {
        self.count(step, status);
        self.progress.step_finished(&FinishedStep {
            id: &step.id,
            name: &step.name,
            status,
            duration,
            detail,
            advances,
        });
    }

    /// Counts a finished step for the summary (group entries are not steps of their own).
    pub(super) fn count(&self, step: &PlannedStep, status: StepStatus) {
        if matches!(step.kind, StepKind::Parallel(_)) {
            return;
        }
        let phase = if self.plan.rollback.iter().any(|r| r.id == step.id) {
            Phase::Rollback
        } else {
            Phase::Main
        };
        if let Ok(mut tally) = self.tally.lock() {
            tally.push((phase, status));
        }
    }
}
