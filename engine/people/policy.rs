//! Sign-off policy: who may sign a gate (role, allow-list, four-eyes by person, trainee
//! supervision), how many distinct people must approve, what evidence they are shown, the
//! binding hash that ties a sign-off to exactly one run, step, runbook text and evidence, and
//! the verdict so far. A gate never approves by timing out.

use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::journal::event::{SignoffDecision, TimeoutAction};
use crate::journal::view::{RunView, StepView};
use crate::people::directory::Operator;
use crate::runbook::duration::parse_duration;
use crate::runbook::plan::{PlannedStep, StepKind};
use crate::runbook::{Evidence, OnTimeout, Role};

/// What signing one step takes.
#[derive(Debug, Clone)]
pub struct Policy {
    pub prompt: String,
    pub role: Role,
    pub approvers: Vec<String>,
    pub min_approvals: u32,
    pub four_eyes: bool,
    pub evidence_required: bool,
    pub show: Vec<String>,
    pub timeout: Option<Duration>,
    pub on_timeout: OnTimeout,
    /// On a supervised training run: only this person signs.
    pub supervisor_person: Option<String>,
    /// A manual step (signing it means "done"), not a gate.
    pub manual: bool,
    /// Besides the person who started the run: whoever holds it now (after a handover) and
    /// whoever drives it; four-eyes keeps them all from signing. Set by the caller.
    pub runner_people: Vec<String>,
    /// The people behind `approvers` (an approver's alias may sign). Set by the caller.
    pub approver_people: Vec<String>,
}

impl Policy {
    /// The policy of a gate or manual step; None for other kinds.
    pub fn for_step(step: &PlannedStep, supervisor_person: Option<&str>) -> Option<Self> {
        let supervisor_person = supervisor_person.map(str::to_string);
        match &step.kind {
            StepKind::Gate(g) => Some(Self {
                prompt: g.prompt.clone(),
                role: g.role,
                approvers: g.approvers.clone(),
                min_approvals: g.min_approvals.max(1),
                four_eyes: g.four_eyes,
                evidence_required: g.evidence == Evidence::Required,
                show: g.show.clone(),
                timeout: g.timeout.as_deref().and_then(|t| parse_duration(t).ok()),
                on_timeout: g.on_timeout,
                supervisor_person,
                manual: false,
                runner_people: Vec::new(),
                approver_people: Vec::new(),
            }),
            StepKind::Manual { instructions } => Some(Self {
                prompt: instructions.clone(),
                role: Role::Trainee,
                approvers: Vec::new(),
                min_approvals: 1,
                four_eyes: false,
                evidence_required: false,
                show: Vec::new(),
                timeout: None,
                on_timeout: OnTimeout::Reject,
                supervisor_person,
                manual: true,
                runner_people: Vec::new(),
                approver_people: Vec::new(),
            }),
            _ => None,
        }
    }

    /// Who may sign, in words, for prompts and parked-run messages.
    pub fn who_may_sign(&self, run: &RunView) -> String {
        let mut parts = Vec::new();
        if self.manual && run.supervisor.is_none() {
            return "the operator running it ticks it off (or anyone, with `opsbook signoff`)"
                .into();
        }
        if let Some(supervisor) = &run.supervisor {
            parts.push(format!("the supervisor {supervisor} (a training run)"));
        } else {
            parts.push(format!("role {} or above", self.role.name()));
        }
        if !self.approvers.is_empty() {
            parts.push(format!("one of {}", self.approvers.join(", ")));
        }
        if self.four_eyes {
            parts.push(format!("not {} (four eyes)", run.operator));
        }
        if self.min_approvals > 1 {
            parts.push(format!("{} different people", self.min_approvals));
        }
        if self.evidence_required {
            parts.push("with a comment as evidence".into());
        }
        parts.join(", ")
    }
}

impl Policy {
    /// Fills in what needs the operator directory: the owner's person and the approvers' people.
    pub fn resolve_people(
        &mut self,
        run: &RunView,
        directory: &mut crate::people::directory::Directory,
    ) -> crate::error::Result<()> {
        self.runner_people.push(directory.person_of(&run.owner)?);
        self.approver_people = self
            .approvers
            .iter()
            .map(|a| directory.person_of(a))
            .collect::<crate::error::Result<_>>()?;
        Ok(())
    }
}

/// Where a gate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pending { approvals: usize, needed: u32 },
    Approved,
    Rejected { by: String, at: String },
    TimedOut { action: OnTimeout },
}

/// The verdict from the sign-offs journaled on `step` so far.
pub fn verdict(policy: &Policy, step: &StepView) -> Verdict {
    if let Some(action) = step.timed_out {
        let action = match action {
            TimeoutAction::Abort => OnTimeout::Abort,
            TimeoutAction::Reject => OnTimeout::Reject,
        };
        return Verdict::TimedOut { action };
    }
    if let Some(rejection) = step
        .signoffs
        .iter()
        .find(|s| s.decision == SignoffDecision::Rejected)
    {
        return Verdict::Rejected {
            by: rejection.signer.clone(),
            at: rejection.at.clone(),
        };
    }
    let mut people: Vec<&str> = step
        .signoffs
        .iter()
        .filter(|s| s.decision == SignoffDecision::Approved)
        .map(|s| s.person.as_str())
        .collect();
    people.sort();
    people.dedup();
    if people.len() as u32 >= policy.min_approvals {
        Verdict::Approved
    } else {
        Verdict::Pending {
            approvals: people.len(),
            needed: policy.min_approvals,
        }
    }
}

/// When the gate stops waiting: the step's start plus its timeout.
pub fn deadline(policy: &Policy, step: &StepView) -> Option<chrono::DateTime<chrono::Utc>> {
    let timeout = policy.timeout?;
    let started = chrono::DateTime::parse_from_rfc3339(&step.started_at).ok()?;
    Some(started.with_timezone(&chrono::Utc) + chrono::Duration::from_std(timeout).ok()?)
}

pub fn is_past_deadline(policy: &Policy, step: &StepView) -> bool {
    deadline(policy, step).is_some_and(|d| chrono::Utc::now() >= d)
}

/// Why `signer` may not sign `step` of `run`, or Ok.
pub fn check_signer(
    policy: &Policy,
    signer: &Operator,
    run: &RunView,
    step: &StepView,
    comment: Option<&str>,
    decision_approves: bool,
) -> Result<(), String> {
    let is_training = run.supervisor.is_some();
    if is_training && signer.person == run.person {
        return Err(format!(
            "{} is the trainee on this run and cannot sign their own steps; the supervisor {} signs",
            signer.name,
            run.supervisor.as_deref().unwrap_or("?")
        ));
    }
    if let Some(person) = &policy.supervisor_person {
        if &signer.person != person {
            return Err(format!(
                "this is a supervised training run: only the supervisor {} signs, not {}",
                run.supervisor.as_deref().unwrap_or(person),
                signer.name
            ));
        }
    }
    if signer.effective_role() < policy.role {
        return Err(format!(
            "{} has the role {}; this step needs {} or above",
            signer.name,
            signer.role.map(|r| r.name()).unwrap_or("?"),
            policy.role.name()
        ));
    }
    if !policy.approvers.is_empty()
        && !policy
            .approvers
            .iter()
            .chain(&policy.approver_people)
            .any(|a| a == &signer.name || a == &signer.person)
    {
        return Err(format!(
            "{} is not one of the approvers of this gate ({})",
            signer.name,
            policy.approvers.join(", ")
        ));
    }
    if policy.four_eyes {
        let is_runner = signer.person == run.person
            || signer.name == run.owner
            || policy.runner_people.contains(&signer.person);
        if is_runner {
            return Err(format!(
                "four eyes: {} runs this run (as {}), so someone else must sign",
                signer.person, run.operator
            ));
        }
    }
    if decision_approves
        && step
            .signoffs
            .iter()
            .any(|s| s.decision == SignoffDecision::Approved && s.person == signer.person)
    {
        return Err(format!(
            "{} has already approved this step (as {}); another person must give the next approval",
            signer.person,
            step.signoffs
                .iter()
                .find(|s| s.person == signer.person)
                .map(|s| s.signer.as_str())
                .unwrap_or("?")
        ));
    }
    if policy.evidence_required && comment.is_none_or(|c| c.trim().is_empty()) {
        return Err("this gate needs evidence: give a comment (--comment TEXT)".into());
    }
    Ok(())
}

/// The outputs of the steps a gate shows, as the signer sees them.
pub fn evidence(policy: &Policy, run: &RunView) -> Map<String, Value> {
    policy
        .show
        .iter()
        .map(|id| {
            let outputs = run.outputs_of(id).cloned().unwrap_or_default();
            (id.clone(), Value::Object(outputs))
        })
        .collect()
}

/// SHA-256 over what a sign-off applies to: run, step, runbook text, params, evidence shown.
pub fn binding(
    run_id: &str,
    step: &str,
    content_hash: &str,
    params: &Map<String, Value>,
    evidence: &Map<String, Value>,
) -> String {
    let mut hasher = Sha256::new();
    for part in [
        run_id,
        step,
        content_hash,
        &Value::Object(params.clone()).to_string(),
        &Value::Object(evidence.clone()).to_string(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The evidence as lines for a person.
pub fn describe_evidence(evidence: &Map<String, Value>) -> Vec<String> {
    evidence
        .iter()
        .map(|(step, outputs)| {
            let shown = outputs
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}={}", crate::runbook::params::value_text(v)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            format!(
                "{step}: {}",
                if shown.is_empty() {
                    "(no outputs)".into()
                } else {
                    shown
                }
            )
        })
        .collect()
}

/// The journaled word for what a gate's timeout does.
pub fn timeout_action(on_timeout: OnTimeout) -> TimeoutAction {
    match on_timeout {
        OnTimeout::Abort => TimeoutAction::Abort,
        OnTimeout::Reject => TimeoutAction::Reject,
    }
}
