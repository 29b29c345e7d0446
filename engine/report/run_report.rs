//! The audit report of one run: the run view from the journal, each step with what is
//! derived from it (its state, duration, exit code), totals for JUnit, and the chain's
//! verdict. Serialized, it is the JSON report.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::journal::event::{Phase, StepStatus};
use crate::journal::view::{RunView, StepState, StepView};
use crate::journal::ChainStatus;
use crate::report::SCHEMA_VERSION;

/// Everything a run report shows, from the journal alone. Serialized as the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub generated_at: String,
    pub run: RunView,
    pub duration_ms: Option<i64>,
    pub counts: Map<String, Value>,
    pub expectations: Expectations,
    pub totals: Totals,
    pub steps: Vec<StepReport>,
    pub chain: ChainStatus,
}

/// Test-report totals (JUnit): every step is a test case.
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

/// One step as reported: its record, and what is derived from it.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    #[serde(flatten)]
    pub step: StepView,
    pub status_name: String,
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub rollback: bool,
    pub interrupted: bool,
    pub seconds: f64,
}

fn millis_between(start: &str, end: Option<&str>) -> Option<i64> {
    let start = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(end?).ok()?;
    Some((end - start).num_milliseconds())
}

impl RunReport {
    pub fn new(mut run: RunView, chain: ChainStatus) -> Self {
        let mut counts = Map::new();
        let mut steps = Vec::new();
        for (i, s) in run.steps.iter().enumerate() {
            let state = run.step_state(i);
            let interrupted = state == StepState::Interrupted;
            let status_name = state.name().to_string();
            if s.kind != "parallel" && !interrupted {
                let n = counts
                    .get(&status_name)
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                counts.insert(status_name.clone(), Value::from(n + 1));
            }
            let duration_ms = millis_between(&s.started_at, s.finished_at.as_deref());
            steps.push(StepReport {
                seconds: duration_ms.unwrap_or(0) as f64 / 1000.0,
                duration_ms,
                exit_code: s.attempts.last().and_then(|a| a.exit_code),
                rollback: s.phase == Phase::Rollback,
                interrupted,
                status_name,
                step: s.clone(),
            });
        }
        let count = |names: &[&str]| {
            steps
                .iter()
                .filter(|s| names.contains(&s.status_name.as_str()))
                .count()
        };
        let duration_ms = millis_between(&run.started_at, run.finished_at.as_deref());
        let totals = Totals {
            tests: steps.len(),
            failures: count(&["failed"]),
            errors: count(&["rejected", "aborted", "interrupted"]),
            skipped: count(&["skipped", "would-run", "waiting", "running"]),
            seconds: duration_ms.unwrap_or(0) as f64 / 1000.0,
        };
        let with_expectation: Vec<bool> = run
            .steps
            .iter()
            .filter_map(|s| s.expectation.as_ref().map(|e| e.passed))
            .collect();
        // The steps appear once, enriched, at the top level of the report.
        run.steps.clear();
        Self {
            schema_version: SCHEMA_VERSION,
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration_ms,
            totals,
            expectations: Expectations {
                passed: with_expectation.iter().filter(|p| **p).count(),
                total: with_expectation.len(),
            },
            counts,
            steps,
            chain,
            run,
        }
    }

    pub fn failed_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.step.status == Some(StepStatus::Failed))
            .count()
    }
}
