//! The audit report of one run: the run view from the journal, each step with what is
//! derived from it (its state, duration, exit code), the steps the run never reached (from
//! the runbook file, when it still has the run's content), counts and totals over the same
//! steps, and the chain's verdict. Serialized, it is the JSON report.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::journal::event::{Phase, RunStatus, StepStatus, TimeoutAction};
use crate::journal::view::{
    AttemptView, Decision, Expectation, RunView, Signoff, StepState, StepView,
};
use crate::journal::ChainStatus;
use crate::report::SCHEMA_VERSION;
use crate::runbook::plan::{Plan, PlannedStep, StepKind};

/// Everything a run report shows. Serialized as the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub generated_at: String,
    /// The run as the journal has it, without its steps (they are `steps`, enriched), with
    /// `status` as shown (`interrupted` for a running run no process drives) and
    /// `interrupted`.
    pub run: Map<String, Value>,
    pub duration_ms: Option<i64>,
    /// Per status name, how many of the counted steps (see `StepReport::counted`) ended so.
    pub counts: Map<String, Value>,
    pub expectations: Expectations,
    /// The same steps as `counts`, as test cases (JUnit).
    pub totals: Totals,
    pub steps: Vec<StepReport>,
    /// Whether the steps not reached could be listed.
    pub plan: PlanNote,
    pub chain: ChainStatus,
}

/// Test-report totals (JUnit): every counted step is a test case.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Expectations {
    pub passed: usize,
    pub total: usize,
}

/// Whether the report lists the steps the run did not reach, and why not when it cannot.
#[derive(Debug, Clone, Serialize)]
pub struct PlanNote {
    /// The runbook file still has the run's content: every step it plans is accounted for.
    pub known: bool,
    pub note: Option<String>,
}

/// One step as reported: its record from the journal (or, for a step the run never reached,
/// its place in the runbook), and what is derived from it.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub phase: Phase,
    pub group: Option<String>,
    pub status: Option<StepStatus>,
    pub reason: Option<String>,
    pub would_run: Option<String>,
    /// None for a step not reached.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub attempts: Vec<AttemptView>,
    pub decisions: Vec<Decision>,
    pub signoffs: Vec<Signoff>,
    pub refusals: Vec<Decision>,
    pub expectation: Option<Expectation>,
    pub timed_out: Option<TimeoutAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asks: Option<String>,
    /// `succeeded`, `failed`, `skipped`, `would-run`, `rejected`, `aborted`, `interrupted`,
    /// `waiting`, `running` or `not-reached`.
    pub status_name: String,
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub rollback: bool,
    pub interrupted: bool,
    pub seconds: f64,
    /// Whether the run got to this step at all.
    pub reached: bool,
    /// Counted in `counts` and `totals`, and a JUnit test case: every step once, by its last
    /// record (a record interrupted and run again by a resume is shown, not counted), except
    /// a parallel group, whose members are counted instead.
    pub counted: bool,
}

impl StepReport {
    fn recorded(s: &StepView, state: StepState, run_interrupted: bool) -> Self {
        // A step still running in a run no process drives was interrupted too.
        let state = match state {
            StepState::Running if run_interrupted => StepState::Interrupted,
            other => other,
        };
        let duration_ms = millis_between(&s.started_at, s.finished_at.as_deref());
        Self {
            id: s.id.clone(),
            name: s.name.clone(),
            kind: s.kind.clone(),
            phase: s.phase,
            group: s.group.clone(),
            status: s.status,
            reason: s.reason.clone(),
            would_run: s.would_run.clone(),
            started_at: Some(s.started_at.clone()),
            finished_at: s.finished_at.clone(),
            attempts: s.attempts.clone(),
            decisions: s.decisions.clone(),
            signoffs: s.signoffs.clone(),
            refusals: s.refusals.clone(),
            expectation: s.expectation.clone(),
            timed_out: s.timed_out,
            asks: s.asks.clone(),
            status_name: state.name().to_string(),
            seconds: duration_ms.unwrap_or(0) as f64 / 1000.0,
            duration_ms,
            exit_code: s.attempts.last().and_then(|a| a.exit_code),
            rollback: s.phase == Phase::Rollback,
            interrupted: state == StepState::Interrupted,
            reached: true,
            counted: false,
        }
    }

    fn not_reached(step: &PlannedRow, reason: String) -> Self {
        Self {
            id: step.id.clone(),
            name: step.name.clone(),
            kind: step.kind.to_string(),
            phase: step.phase,
            group: step.group.clone(),
            status: None,
            reason: Some(reason),
            would_run: None,
            started_at: None,
            finished_at: None,
            attempts: Vec::new(),
            decisions: Vec::new(),
            signoffs: Vec::new(),
            refusals: Vec::new(),
            expectation: None,
            timed_out: None,
            asks: None,
            status_name: "not-reached".into(),
            duration_ms: None,
            exit_code: None,
            rollback: step.phase == Phase::Rollback,
            interrupted: false,
            seconds: 0.0,
            reached: false,
            counted: false,
        }
    }
}

/// A step of the runbook, in the order a run takes it: main steps in document order (a
/// group, then its members), then the rollback steps in reverse (the order they run in).
#[derive(Debug, Clone)]
pub struct PlannedRow {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub phase: Phase,
    pub group: Option<String>,
}

/// What the journal alone cannot say about a run.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The runbook's steps, from its file when it still has the run's content hash; else why
    /// they cannot be listed.
    pub plan: std::result::Result<Vec<PlannedRow>, String>,
    /// The run is marked running but no live process holds its lease.
    pub interrupted: bool,
}

impl RunContext {
    /// The steps of `plan`, in the order a run takes them.
    pub fn planned_steps(plan: &Plan) -> Vec<PlannedRow> {
        fn walk(steps: &[&PlannedStep], phase: Phase, out: &mut Vec<PlannedRow>) {
            for step in steps {
                out.push(row(step, phase, None));
                if let StepKind::Parallel(members) = &step.kind {
                    for m in members {
                        out.push(row(m, phase, Some(&step.id)));
                    }
                }
            }
        }
        fn row(step: &PlannedStep, phase: Phase, group: Option<&str>) -> PlannedRow {
            PlannedRow {
                id: step.id.clone(),
                name: step.name.clone(),
                kind: step.kind.name(),
                phase,
                group: group.map(str::to_string),
            }
        }
        let mut out = Vec::new();
        walk(
            &plan.steps.iter().collect::<Vec<_>>(),
            Phase::Main,
            &mut out,
        );
        walk(
            &plan.rollback.iter().rev().collect::<Vec<_>>(),
            Phase::Rollback,
            &mut out,
        );
        out
    }
}

fn millis_between(start: &str, end: Option<&str>) -> Option<i64> {
    let start = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(end?).ok()?;
    Some((end - start).num_milliseconds())
}

fn phase_rank(phase: Phase) -> u8 {
    match phase {
        Phase::Main => 0,
        Phase::Rollback => 1,
    }
}

impl RunReport {
    /// The report of a run from the journal alone: the steps it did not reach are not listed.
    pub fn new(run: RunView, chain: ChainStatus) -> Self {
        Self::with_context(
            run,
            chain,
            RunContext {
                plan: Err(
                    "The runbook was not consulted: steps the run did not reach are not listed."
                        .into(),
                ),
                interrupted: false,
            },
        )
    }

    pub fn with_context(mut run: RunView, chain: ChainStatus, context: RunContext) -> Self {
        let interrupted = context.interrupted && run.status == RunStatus::Running;
        let recorded: Vec<StepReport> = (0..run.steps.len())
            .map(|i| StepReport::recorded(&run.steps[i], run.step_state(i), interrupted))
            .collect();
        let steps_taken = std::mem::take(&mut run.steps);
        let (mut steps, plan) = match &context.plan {
            Ok(planned) => {
                let why = NotReached::new(&run, &steps_taken, interrupted);
                (
                    merge(recorded, planned, &run, &why),
                    PlanNote {
                        known: true,
                        note: None,
                    },
                )
            }
            Err(note) => (
                recorded,
                PlanNote {
                    known: false,
                    note: Some(note.clone()),
                },
            ),
        };
        mark_counted(&mut steps);

        let mut counts = Map::new();
        for s in steps.iter().filter(|s| s.counted) {
            let n = counts
                .get(&s.status_name)
                .and_then(Value::as_u64)
                .unwrap_or(0);
            counts.insert(s.status_name.clone(), Value::from(n + 1));
        }
        let count = |names: &[&str]| {
            steps
                .iter()
                .filter(|s| s.counted && names.contains(&s.status_name.as_str()))
                .count()
        };
        let duration_ms = millis_between(&run.started_at, run.finished_at.as_deref());
        let totals = Totals {
            tests: steps.iter().filter(|s| s.counted).count(),
            failures: count(&["failed"]),
            errors: count(&["rejected", "aborted", "interrupted"]),
            skipped: count(&["skipped", "would-run", "waiting", "running", "not-reached"]),
            seconds: duration_ms.unwrap_or(0) as f64 / 1000.0,
        };
        let with_expectation: Vec<bool> = steps_taken
            .iter()
            .filter_map(|s| s.expectation.as_ref().map(|e| e.passed))
            .collect();
        let mut run_map = match serde_json::to_value(&run) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        run_map.remove("steps");
        if interrupted {
            run_map.insert("status".into(), Value::from("interrupted"));
        }
        run_map.insert("interrupted".into(), Value::from(interrupted));
        Self {
            schema_version: SCHEMA_VERSION,
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            run: run_map,
            duration_ms,
            counts,
            expectations: Expectations {
                passed: with_expectation.iter().filter(|p| **p).count(),
                total: with_expectation.len(),
            },
            totals,
            steps,
            plan,
            chain,
        }
    }
}

/// Marks the steps that are counted: the last record of each step, groups left out.
fn mark_counted(steps: &mut [StepReport]) {
    let mut seen = HashSet::new();
    for s in steps.iter_mut().rev() {
        let last = seen.insert((s.phase, s.id.clone()));
        s.counted = last && s.kind != "parallel";
    }
}

/// Why the run did not reach a step, said once per run and phase.
struct NotReached {
    main: String,
    rollback: String,
    /// Groups that were skipped: their members never start.
    skipped_groups: HashSet<String>,
}

impl NotReached {
    fn new(run: &RunView, steps: &[StepView], interrupted: bool) -> Self {
        let last_with = |status: StepStatus| {
            steps
                .iter()
                .rev()
                .find(|s| s.phase == Phase::Main && s.status == Some(status))
                .map(|s| s.id.clone())
        };
        let step_named =
            |id: Option<String>| id.map(|id| format!(" at `{id}`")).unwrap_or_default();
        // A training run's own ending, before the supervisor's verdict.
        let ending = run.outcome.unwrap_or(run.status);
        let main = if interrupted {
            "the run was interrupted before it got here".to_string()
        } else {
            match ending {
                RunStatus::Running => "the run has not got here yet".to_string(),
                RunStatus::AwaitingSignoff => format!(
                    "the run is waiting for a person{} and has not got here yet",
                    step_named(run.paused.as_ref().map(|p| p.step.clone()))
                ),
                RunStatus::Parked => format!(
                    "the run is parked{}{} and has not got here yet",
                    step_named(run.paused.as_ref().map(|p| p.step.clone())),
                    run.paused
                        .as_ref()
                        .map(|p| format!(" ({})", p.reason))
                        .unwrap_or_default()
                ),
                RunStatus::Failed => {
                    match &run.rollback_for {
                        Some(failed) => {
                            format!("the run failed at `{failed}` and was rolled back before it got here")
                        }
                        None => format!(
                            "the run stopped when{} failed before it got here",
                            last_with(StepStatus::Failed)
                                .map(|id| format!(" `{id}`"))
                                .unwrap_or_else(|| " a step".into())
                        ),
                    }
                }
                RunStatus::Aborted => format!(
                    "the run was aborted{} before it got here",
                    step_named(last_with(StepStatus::Aborted))
                ),
                RunStatus::Rejected => format!(
                    "the run was rejected{} before it got here",
                    step_named(last_with(StepStatus::Rejected))
                ),
                RunStatus::Succeeded | RunStatus::AwaitingAcceptance => {
                    "the run ended before it got here".to_string()
                }
            }
        };
        let rollback = if interrupted || matches!(ending, RunStatus::Running) {
            main.replace("the run", "the rollback")
        } else {
            match steps
                .iter()
                .rev()
                .find(|s| s.phase == Phase::Rollback && s.status == Some(StepStatus::Failed))
            {
                Some(s) => format!("the rollback stopped when `{}` failed", s.id),
                None => "the rollback stopped before it got here".to_string(),
            }
        };
        let skipped_groups = steps
            .iter()
            .filter(|s| {
                s.kind == "parallel"
                    && matches!(s.status, Some(StepStatus::Skipped | StepStatus::WouldRun))
            })
            .map(|s| s.id.clone())
            .collect();
        Self {
            main,
            rollback,
            skipped_groups,
        }
    }

    fn reason(&self, step: &PlannedRow) -> String {
        match (&step.group, step.phase) {
            (Some(g), _) if self.skipped_groups.contains(g) => {
                format!("its group `{g}` was skipped")
            }
            (_, Phase::Main) => self.main.clone(),
            (_, Phase::Rollback) => self.rollback.clone(),
        }
    }
}

/// The recorded steps in the order they ran, with every planned step they do not account
/// for placed where the run would have taken it. Rollback steps not reached are listed only
/// when the run rolled back.
fn merge(
    recorded: Vec<StepReport>,
    planned: &[PlannedRow],
    run: &RunView,
    why: &NotReached,
) -> Vec<StepReport> {
    let order: HashMap<(Phase, &str), usize> = planned
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.phase, p.id.as_str()), i))
        .collect();
    let reached: HashSet<(Phase, &str)> =
        recorded.iter().map(|s| (s.phase, s.id.as_str())).collect();
    let mut pending: Vec<(usize, &PlannedRow)> = planned
        .iter()
        .enumerate()
        .filter(|(_, p)| !reached.contains(&(p.phase, p.id.as_str())))
        .filter(|(_, p)| p.phase == Phase::Main || run.rolled_back)
        .collect();
    pending.reverse(); // popped from the end, in plan order
    let mut out = Vec::with_capacity(recorded.len() + pending.len());
    let flush = |out: &mut Vec<StepReport>,
                 pending: &mut Vec<(usize, &PlannedRow)>,
                 before: Option<(Phase, usize)>| {
        while let Some(&(i, p)) = pending.last() {
            let due = match before {
                None => true,
                Some((phase, at)) => {
                    phase_rank(p.phase) < phase_rank(phase) || (p.phase == phase && i < at)
                }
            };
            if !due {
                break;
            }
            out.push(StepReport::not_reached(p, why.reason(p)));
            pending.pop();
        }
    };
    for step in recorded {
        let at = order
            .get(&(step.phase, step.id.as_str()))
            .copied()
            .unwrap_or(0);
        flush(&mut out, &mut pending, Some((step.phase, at)));
        out.push(step);
    }
    flush(&mut out, &mut pending, None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step view as the journal folds it, with every field given a value.
    fn full_step_view() -> StepView {
        StepView {
            id: "a".into(),
            name: "A".into(),
            kind: "shell".into(),
            phase: Phase::Main,
            group: Some("g".into()),
            status: Some(StepStatus::Succeeded),
            reason: Some("r".into()),
            would_run: Some("w".into()),
            started_at: "2026-03-01T10:00:00Z".into(),
            finished_at: Some("2026-03-01T10:00:01Z".into()),
            attempts: Vec::new(),
            decisions: Vec::new(),
            signoffs: Vec::new(),
            refusals: Vec::new(),
            expectation: None,
            timed_out: None,
            asks: Some("q".into()),
            processes: Some(crate::journal::event::StepProcesses {
                token: "R/a/X".into(),
                cgroup: None,
            }),
        }
    }

    #[test]
    fn a_reported_step_carries_every_field_of_the_step_record() {
        let view = full_step_view();
        let record = serde_json::to_value(&view).unwrap();
        let report =
            serde_json::to_value(StepReport::recorded(&view, StepState::Running, false)).unwrap();
        for (key, value) in record.as_object().unwrap() {
            let reported = &report[key];
            assert_eq!(
                reported, value,
                "`{key}` in the journal's view and in the report"
            );
        }
    }
}
