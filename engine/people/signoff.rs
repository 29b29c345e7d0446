//! The sign-off transaction: one person's verdict on a gate or manual step, decided inside one
//! immediate journal transaction so that two people signing at once cannot both count, and
//! refused attempts are on record. The terminal (through the executor) and `opsbook signoff`
//! both sign here; so does the supervisor's acceptance of a whole training run.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::journal::event::{AcceptanceDecision, Event, SignoffDecision};
use crate::journal::view::{self, RunView, StepView};
use crate::journal::Journal;
use crate::people::directory::{Directory, Operator};
use crate::people::policy::{self, Policy, Verdict};
use crate::runbook::plan::Plan;

/// The journal event of one sign-off.
pub fn signoff_event(
    step: &str,
    signer: &Operator,
    decision: SignoffDecision,
    comment: Option<String>,
    evidence: Map<String, Value>,
    binding: String,
) -> Event {
    Event::SignoffRecorded {
        step: step.to_string(),
        signer: signer.name.clone(),
        person: signer.person.clone(),
        role: signer.role.map(|r| r.name()).unwrap_or("unverified").into(),
        auth: signer.auth.name().into(),
        decision,
        comment,
        evidence,
        binding,
    }
}

/// A sign-off asked for: who, what, and (optionally) the binding the signer was shown.
pub struct SignoffRequest<'a> {
    pub step: &'a str,
    pub signer: &'a Operator,
    pub decision: SignoffDecision,
    pub comment: Option<String>,
    /// A prefix of the binding hash the signer checked; refused when it does not match.
    pub binding: Option<&'a str>,
}

/// What a recorded sign-off leaves the step at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub verdict: Verdict,
}

/// Whether `plan` is what run `view` started with: the same runbook text and, for runs bound
/// to their scripts, the same scripts and modules.
pub fn plan_matches_run(plan: &Plan, view: &RunView) -> bool {
    plan.source.content_hash == view.content_hash
        && view
            .bundle_hash
            .as_ref()
            .is_none_or(|b| *b == plan.bundle_hash())
}

/// Journals a sign-off attempt that was refused before it reached the policy (the signer
/// could not be identified), so that every attempt is on record.
pub fn record_refusal(
    journal: &mut Journal,
    run_id: &str,
    step: &str,
    signer: &str,
    reason: &str,
) -> Result<()> {
    journal.append(
        run_id,
        &Event::SignoffRefused {
            step: step.to_string(),
            signer: signer.to_string(),
            reason: reason.to_string(),
        },
    )?;
    Ok(())
}

/// The step a run waits at: parked there, or held at it by a process that polls (`--wait`).
pub fn waiting_step(view: &RunView) -> Option<&StepView> {
    view.waiting_step().or_else(|| {
        view.steps
            .iter()
            .rev()
            .find(|s| s.status.is_none() && matches!(s.kind.as_str(), "gate" | "manual"))
    })
}

/// The policy of `step` of a run, with its people resolved (supervisor, approvers).
pub fn policy_for(
    journal: &mut Journal,
    plan: &Plan,
    view: &RunView,
    step_id: &str,
) -> Result<Policy> {
    if !plan_matches_run(plan, view) {
        return Err(Error::ChangedSinceSignable {
            path: view.path.clone(),
            run: view.id.clone(),
        });
    }
    let Some(step) = plan.all_steps().into_iter().find(|s| s.id == step_id) else {
        return Err(Error::UnknownStep {
            runbook: plan.runbook.runbook.clone(),
            step: step_id.to_string(),
        });
    };
    let supervisor_person = match &view.supervisor {
        Some(name) => Some(Directory::new(journal).person_of(name)?),
        None => None,
    };
    let Some(mut policy) = Policy::for_step(step, supervisor_person.as_deref()) else {
        return Err(Error::NotSignable {
            step: step_id.to_string(),
            kind: step.kind.name().to_string(),
        });
    };
    policy.resolve_people(view, &mut Directory::new(journal))?;
    Ok(policy)
}

/// Records one sign-off of a step of run `run_id` under `policy`, or says why not. The check
/// and the write are one transaction; a refusal is journaled before it is returned.
pub fn sign(
    journal: &mut Journal,
    run_id: &str,
    policy: &Policy,
    request: SignoffRequest,
) -> Result<Signed> {
    enum Answer {
        Recorded(Verdict),
        Refused(String),
        AlreadyDecided(String),
        TimedOut,
    }
    let step_id = request.step;
    let signer = request.signer;
    let answer = journal.append_checked(run_id, |events| {
        let view = RunView::from_events(events)?;
        let Some(sv) = view.step(step_id) else {
            return Err(Error::StepNotReached {
                run: view.id.clone(),
                step: step_id.to_string(),
            });
        };
        if sv.status.is_some() {
            let by = sv
                .signoffs
                .last()
                .map(|s| format!(" by {} at {}", s.signer, s.at))
                .unwrap_or_default();
            let status = sv.status.map(|s| s.name()).unwrap_or_default();
            let text = format!("already decided{by}: {status}");
            return Ok((vec![], Answer::AlreadyDecided(text)));
        }
        match policy::verdict(policy, sv) {
            Verdict::Rejected { by, at } => {
                let text = format!("already decided by {by} at {at}: rejected");
                return Ok((vec![], Answer::AlreadyDecided(text)));
            }
            Verdict::Approved => {
                let s = sv
                    .signoffs
                    .iter()
                    .rfind(|s| s.decision == SignoffDecision::Approved);
                let (by, at) = s
                    .map(|s| (s.signer.as_str(), s.at.as_str()))
                    .unwrap_or(("?", "?"));
                let text = format!("already decided by {by} at {at}: approved");
                return Ok((vec![], Answer::AlreadyDecided(text)));
            }
            Verdict::TimedOut { .. } => return Ok((vec![], Answer::TimedOut)),
            Verdict::Pending { .. } => {}
        }
        if policy::is_past_deadline(policy, sv) {
            let event = Event::GateTimedOut {
                step: step_id.to_string(),
                action: policy::timeout_action(policy.on_timeout),
            };
            return Ok((vec![event], Answer::TimedOut));
        }
        let evidence = policy::evidence(policy, &view);
        let binding = policy::binding(
            &view.id,
            step_id,
            view.bound_hash(),
            &view.params,
            &evidence,
        );
        let refusal = |reason: String| {
            let event = Event::SignoffRefused {
                step: step_id.to_string(),
                signer: signer.name.clone(),
                reason: reason.clone(),
            };
            Ok((vec![event], Answer::Refused(reason)))
        };
        if let Some(given) = request.binding {
            if !binding.starts_with(given) || given.len() < 16 {
                return refusal(format!(
                    "the binding {given} does not belong to step `{step_id}` of run {} with this runbook text and evidence",
                    view.id
                ));
            }
        }
        let approves = request.decision == SignoffDecision::Approved;
        if let Err(reason) = policy::check_signer(
            policy,
            signer,
            &view,
            sv,
            request.comment.as_deref(),
            approves,
        ) {
            return refusal(reason);
        }
        let event = signoff_event(
            step_id,
            signer,
            request.decision,
            request.comment.clone(),
            evidence,
            binding,
        );
        let mut after = sv.clone();
        after.signoffs.push(view::Signoff {
            signer: signer.name.clone(),
            person: signer.person.clone(),
            role: String::new(),
            auth: String::new(),
            decision: request.decision,
            comment: None,
            evidence: Default::default(),
            binding: String::new(),
            at: String::new(),
        });
        Ok((
            vec![event],
            Answer::Recorded(policy::verdict(policy, &after)),
        ))
    })?;
    match answer {
        Answer::Recorded(verdict) => Ok(Signed { verdict }),
        Answer::Refused(reason) => Err(Error::SignoffRefused { reason }),
        Answer::AlreadyDecided(decided) => Err(Error::AlreadyDecided {
            subject: format!("step `{step_id}` of run {run_id}"),
            decided,
        }),
        Answer::TimedOut => Err(Error::SignoffTimedOut {
            run: run_id.to_string(),
            step: step_id.to_string(),
        }),
    }
}

/// The supervisor's acceptance (or rejection) of a finished training run.
pub fn accept(
    journal: &mut Journal,
    run: &RunView,
    signer: &Operator,
    decision: AcceptanceDecision,
    comment: Option<String>,
) -> Result<()> {
    let Some(supervisor) = run.supervisor.clone() else {
        return Err(Error::NotTraining {
            run: run.id.clone(),
        });
    };
    let supervisor_person = Directory::new(journal).person_of(&supervisor)?;
    let answer = journal.append_checked(&run.id, |events| {
        let view = RunView::from_events(events)?;
        if view.outcome.is_none() {
            return Err(Error::NotFinished {
                run: view.id.clone(),
            });
        }
        if let Some(a) = &view.acceptance {
            let refused = Error::AlreadyDecided {
                subject: format!("training run {}", view.id),
                decided: format!("already decided by {} at {}: {}", a.by, a.at, a.decision),
            };
            return Ok((vec![], Err(refused)));
        }
        if signer.person != supervisor_person {
            let reason = format!(
                "only the supervisor {supervisor} accepts or rejects this training run, not {}",
                signer.name
            );
            let event = Event::SignoffRefused {
                step: "(run)".into(),
                signer: signer.name.clone(),
                reason: reason.clone(),
            };
            return Ok((vec![event], Err(Error::NotAllowed { rule: reason })));
        }
        let event = Event::AcceptanceDecided {
            decision,
            by: signer.name.clone(),
            comment: comment.clone(),
        };
        Ok((vec![event], Ok(())))
    })?;
    answer
}
