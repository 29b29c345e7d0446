//! A runbook as a printable checklist: its parameters, steps, gates and review schedule, for
//! `opsbook docs`.

use serde::Serialize;

use crate::runbook::plan::{Expectation, Plan, PlannedStep, ScriptSource, StepKind};
use crate::runbook::review::{self, ReviewStatus};

/// A runbook as a printable checklist.
#[derive(Debug, Clone, Serialize)]
pub struct RunbookDoc {
    pub id: String,
    pub title: String,
    pub version: u32,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub risk: String,
    pub kind: String,
    pub change: String,
    pub window: Option<String>,
    pub review_every: Option<String>,
    pub last_reviewed: Option<String>,
    pub review_due: Option<String>,
    pub review_overdue: bool,
    pub qualification: Option<u32>,
    pub content_hash: String,
    pub params: Vec<ParamDoc>,
    pub steps: Vec<StepDoc>,
    pub rollback: Vec<StepDoc>,
    pub file: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamDoc {
    pub name: String,
    pub kind: String,
    pub required: bool,
    pub default: Option<String>,
    pub allowed: Option<String>,
    pub pattern: Option<String>,
    pub secret: bool,
    pub env: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepDoc {
    pub number: String,
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub kind: String,
    /// The command, script or instructions, as a person reads them.
    pub body: String,
    pub notes: Vec<String>,
    pub gate_role: Option<String>,
    pub signatures: u32,
    pub members: Vec<StepDoc>,
}

impl RunbookDoc {
    pub fn new(plan: &Plan) -> Self {
        let rb = &plan.runbook;
        let review = ReviewStatus::of(rb, review::today());
        let params = rb
            .params
            .iter()
            .map(|(name, spec)| ParamDoc {
                name: name.clone(),
                kind: spec.kind.name().into(),
                required: spec.required,
                default: spec.default.as_ref().map(yaml_text),
                allowed: spec
                    .choices
                    .as_ref()
                    .map(|c| c.iter().map(yaml_text).collect::<Vec<_>>().join(", ")),
                pattern: spec.pattern.clone(),
                secret: spec.secret,
                env: spec.env.clone(),
                description: spec.description.clone(),
            })
            .collect();
        Self {
            id: rb.runbook.clone(),
            title: rb.title.clone(),
            version: rb.version,
            owner: rb.owner.clone(),
            description: rb.description.clone(),
            tags: rb.tags.clone(),
            risk: rb.risk.name().to_string(),
            kind: rb.kind.name().to_string(),
            change: rb.change.name().to_string(),
            window: rb.window.clone(),
            review_every: rb.review_every.clone(),
            last_reviewed: rb.last_reviewed.clone(),
            review_due: review.due.map(|d| d.to_string()),
            review_overdue: review.overdue,
            qualification: rb.qualification.as_ref().map(|q| q.supervised_runs),
            content_hash: plan.source.content_hash.clone(),
            params,
            steps: plan
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| step_doc(s, (i + 1).to_string()))
                .collect(),
            rollback: plan
                .rollback
                .iter()
                .rev()
                .enumerate()
                .map(|(i, s)| step_doc(s, format!("R{}", i + 1)))
                .collect(),
            file: plan
                .source
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

fn yaml_text(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn step_doc(step: &PlannedStep, number: String) -> StepDoc {
    let mut notes = Vec::new();
    if let Some(when) = &step.when {
        notes.push(format!("only when `{}`", when.text.trim()));
    }
    if step.readonly {
        notes.push("read-only (runs in a dry run)".into());
    }
    if step.idempotent {
        notes.push("idempotent (safe to run again)".into());
    }
    if step.retry.attempts > 1 {
        notes.push(format!(
            "up to {} attempts, {} apart{}",
            step.retry.attempts,
            crate::runbook::duration::format_duration(step.retry.delay),
            if step.retry.backoff > 1.0 {
                format!(", backoff ×{}", step.retry.backoff)
            } else {
                String::new()
            }
        ));
    }
    if matches!(step.kind, StepKind::Rhai { .. } | StepKind::Shell { .. }) {
        notes.push(format!(
            "timeout {}",
            crate::runbook::duration::format_duration(step.timeout)
        ));
    }
    match step.on_failure {
        crate::runbook::OnFailure::Continue => notes.push("on failure: continue".into()),
        crate::runbook::OnFailure::Rollback => notes.push("on failure: roll back".into()),
        crate::runbook::OnFailure::Abort => {}
    }
    if let Some(undo) = &step.undo {
        notes.push(format!("undoes step `{undo}`"));
    }
    match &step.expect {
        Some(Expectation::Check(e)) => notes.push(format!("expect `{}`", e.text.trim())),
        Some(Expectation::Observe(text)) => notes.push(format!("expected result: {text}")),
        None => {}
    }
    let (body, gate_role, signatures, members) = match &step.kind {
        StepKind::Shell { command } => (command.trim().to_string(), None, 0, Vec::new()),
        StepKind::Rhai {
            source: ScriptSource::Inline(text),
            ..
        } => (text.trim().to_string(), None, 0, Vec::new()),
        StepKind::Rhai {
            source: ScriptSource::File(file),
            ..
        } => (format!("scripts/{file}"), None, 0, Vec::new()),
        StepKind::Manual { instructions } => (instructions.trim().to_string(), None, 0, Vec::new()),
        StepKind::Gate(g) => {
            let mut policy = Vec::new();
            if g.four_eyes {
                policy.push("four eyes: not the person running it".to_string());
            }
            if !g.approvers.is_empty() {
                policy.push(format!("approvers: {}", g.approvers.join(", ")));
            }
            if g.evidence == crate::runbook::Evidence::Required {
                policy.push("evidence required".into());
            }
            if let Some(t) = &g.timeout {
                policy.push(format!("times out after {t} ({})", g.on_timeout.name()));
            }
            notes.extend(policy);
            (
                g.prompt.trim().to_string(),
                Some(g.role.name().to_string()),
                g.min_approvals.max(1),
                Vec::new(),
            )
        }
        StepKind::Parallel(members) => (
            format!("{} steps at the same time", members.len()),
            None,
            0,
            members
                .iter()
                .enumerate()
                .map(|(i, m)| step_doc(m, format!("{number}.{}", i + 1)))
                .collect(),
        ),
    };
    StepDoc {
        id: step.id.clone(),
        name: step.name.clone(),
        description: step.description.clone(),
        kind: step.kind.name().into(),
        body,
        notes,
        gate_role,
        signatures,
        members,
        number,
    }
}
