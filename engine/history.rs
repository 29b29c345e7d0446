//! What happened in a run, read back from the journal: runs and steps are folds over the
//! events, never a second source of truth.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::event::{AttemptStatus, Event, Phase, RunStatus, StepStatus};
use crate::journal::{Journal, StoredEvent};

#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    pub runbook: String,
    pub title: String,
    pub version: u32,
    pub content_hash: String,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Pause {
    pub step: String,
    pub reason: String,
    pub waiting_for: String,
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
    pub runbook: String,
    pub version: u32,
    pub status: RunStatus,
    pub operator: String,
    pub host: String,
    pub dry_run: bool,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
}

impl RunView {
    /// Folds a run's events (in order) into its view.
    pub fn from_events(events: &[StoredEvent]) -> Result<Self> {
        let first = events
            .first()
            .ok_or_else(|| Error::Internal("a run with no events".into()))?;
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
            ..
        } = first.event()?
        else {
            return Err(Error::Internal(format!(
                "run {} does not begin with run_started",
                first.run_id
            )));
        };
        let mut view = RunView {
            id: first.run_id.clone(),
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
        match event {
            Event::RunStarted { .. } => {}
            Event::StepStarted {
                step,
                name,
                kind,
                phase,
                group,
            } => {
                self.status = RunStatus::Running;
                self.paused = None;
                self.steps.push(StepView {
                    id: step,
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
                })
            }
            Event::StepSkipped {
                step,
                name,
                kind,
                phase,
                group,
                reason,
                would_run,
            } => self.steps.push(StepView {
                id: step,
                name,
                kind,
                phase,
                group,
                status: Some(if would_run.is_some() {
                    StepStatus::WouldRun
                } else {
                    StepStatus::Skipped
                }),
                reason: Some(reason),
                would_run,
                started_at: at.clone(),
                finished_at: Some(at),
                attempts: Vec::new(),
                decisions: Vec::new(),
            }),
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
                        decision,
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
                self.status = RunStatus::AwaitingSignoff;
                self.paused = Some(Pause {
                    step,
                    reason,
                    waiting_for,
                    at,
                });
            }
            Event::AbortRequested { .. } => self.abort_requested = true,
            Event::RollbackStarted { .. } => self.rolled_back = true,
            Event::RunFinished {
                status,
                exit_code,
                summary,
            } => {
                self.status = status;
                self.exit_code = Some(exit_code);
                self.summary = Some(summary);
                self.finished_at = Some(at);
                self.paused = None;
            }
        }
    }

    /// The outputs of the step's last attempt, as later steps see them in `vars`.
    pub fn outputs_of(&self, step: &str) -> Option<&Map<String, Value>> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.id == step && s.status == Some(StepStatus::Succeeded))
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
        [] => Err(Error::UnknownRun(id.to_string())),
        many => Err(Error::Usage(format!(
            "`{id}` matches {} runs; give more of the run id",
            many.len()
        ))),
    }
}

/// Every run, oldest first, from the run-level events alone.
pub fn list_runs(journal: &Journal) -> Result<Vec<RunSummary>> {
    let mut runs: Vec<RunSummary> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for stored in journal.run_level_events()? {
        match stored.event()? {
            Event::RunStarted {
                runbook,
                version,
                operator,
                host,
                dry_run,
                ..
            } => {
                index.insert(stored.run_id.clone(), runs.len());
                runs.push(RunSummary {
                    id: stored.run_id.clone(),
                    runbook,
                    version,
                    status: RunStatus::Running,
                    operator,
                    host,
                    dry_run,
                    started_at: stored.at.clone(),
                    finished_at: None,
                    exit_code: None,
                });
            }
            Event::RunPaused { .. } => {
                if let Some(&i) = index.get(&stored.run_id) {
                    runs[i].status = RunStatus::AwaitingSignoff;
                }
            }
            Event::RunFinished {
                status, exit_code, ..
            } => {
                if let Some(&i) = index.get(&stored.run_id) {
                    runs[i].status = status;
                    runs[i].exit_code = Some(exit_code);
                    runs[i].finished_at = Some(stored.at.clone());
                }
            }
            _ => {}
        }
    }
    Ok(runs)
}
