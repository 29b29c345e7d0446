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
    /// Whether this gate means anything only with registered identities: a role above
    /// operator, four eyes, an allow-list or more than one approver. With no operators
    /// registered, the unverified OS user satisfies all of these.
    pub fn needs_identities(&self) -> bool {
        !self.manual
            && (self.role == Role::Supervisor
                || self.four_eyes
                || !self.approvers.is_empty()
                || self.min_approvals > 1)
    }

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
            // Name the part the signer plays: who started it, who holds it, who drives it.
            let part = if signer.person == run.person {
                format!("started this run (as {})", run.operator)
            } else if signer.name == run.owner {
                "holds this run now (it was handed over to them)".to_string()
            } else {
                "drives this run".to_string()
            };
            return Err(format!(
                "four eyes: {} {part}, so someone else must sign",
                signer.person
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

/// The gates of `plan` that cannot be enforced without registered operators.
pub fn gates_needing_identities(plan: &crate::runbook::plan::Plan) -> Vec<String> {
    plan.all_steps()
        .into_iter()
        .filter(|step| Policy::for_step(step, None).is_some_and(|p| p.needs_identities()))
        .map(|step| step.id.clone())
        .collect()
}

/// The warning for a runbook whose gates cannot be enforced: None when there is nothing to
/// warn about.
pub fn unenforceable_warning(
    runbook: &str,
    gates: &[String],
    journal: &std::path::Path,
) -> Option<String> {
    (!gates.is_empty()).then(|| {
        format!(
            "warning: runbook `{runbook}`: no operators are registered in {}, so its gates ({}) cannot be enforced: anyone signs as the unverified OS user; register operators with `opsbook operator add`",
            journal.display(),
            gates.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::event::{Event, Phase};
    use crate::journal::StoredEvent;
    use crate::people::directory::AuthMethod;

    /// A gate anyone of role operator may sign once; each case changes what it tests.
    fn gate() -> Policy {
        Policy {
            prompt: "Backups verified?".into(),
            role: Role::Operator,
            approvers: Vec::new(),
            min_approvals: 1,
            four_eyes: false,
            evidence_required: false,
            show: Vec::new(),
            timeout: None,
            on_timeout: OnTimeout::Reject,
            supervisor_person: None,
            manual: false,
            runner_people: Vec::new(),
            approver_people: Vec::new(),
        }
    }

    fn operator(name: &str, person: &str, role: Option<Role>) -> Operator {
        Operator {
            name: name.into(),
            person: person.into(),
            role,
            auth: if role.is_some() {
                AuthMethod::Passphrase
            } else {
                AuthMethod::Unverified
            },
        }
    }

    /// Who started the run: operator name, person, and the supervisor of a training run.
    type Starter = (&'static str, &'static str, Option<&'static str>);
    const BY_ALICE: Starter = ("alice", "alice", None);
    const BY_ALICE_AS_AL: Starter = ("al", "alice", None);
    const TINA_TRAINING: Starter = ("tina", "tina", Some("sam"));

    /// A sign-off already journaled: signer name, person, decision.
    type Prior = (&'static str, &'static str, SignoffDecision);

    /// Events as the journal stores them, at seq 1, 2, … and `at` 10:00:01, 10:00:02, ….
    fn stored(events: Vec<Event>) -> Vec<StoredEvent> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| StoredEvent {
                seq: i as i64 + 1,
                run_id: "RUN1".into(),
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

    /// A run started by `starter`, at gate `g`, with `more` events after the gate started.
    fn run_at_gate(starter: Starter, more: Vec<Event>) -> RunView {
        let (operator, person, supervisor) = starter;
        let mut events = vec![
            Event::RunStarted {
                runbook: "rb".into(),
                title: "T".into(),
                version: 1,
                content_hash: "c0ffee".into(),
                path: "runbooks/rb.yaml".into(),
                params: Map::new(),
                operator: operator.into(),
                operator_verified: true,
                host: "h".into(),
                dry_run: false,
                kind: "runbook".into(),
                total_steps: 1,
                pid: 1,
                engine_version: "0".into(),
                person: person.into(),
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
            },
            Event::StepStarted {
                step: "g".into(),
                name: "g".into(),
                kind: "gate".into(),
                phase: Phase::Main,
                group: None,
                asks: None,
                processes: None,
            },
        ];
        events.extend(more);
        RunView::from_events(&stored(events)).unwrap()
    }

    fn signoffs(prior: &[Prior]) -> Vec<Event> {
        prior
            .iter()
            .map(|(signer, person, decision)| Event::SignoffRecorded {
                step: "g".into(),
                signer: (*signer).into(),
                person: (*person).into(),
                role: "operator".into(),
                auth: "passphrase".into(),
                decision: *decision,
                comment: None,
                evidence: Map::new(),
                binding: "b1nd".into(),
            })
            .collect()
    }

    const APPROVED: SignoffDecision = SignoffDecision::Approved;
    const REJECTED: SignoffDecision = SignoffDecision::Rejected;

    struct SignerCase {
        what: &'static str,
        policy: fn(&mut Policy),
        run: Starter,
        prior: &'static [Prior],
        /// Name, person, role (None: the unverified OS user).
        signer: (&'static str, &'static str, Option<Role>),
        comment: Option<&'static str>,
        approves: bool,
        expected: Result<(), &'static str>,
    }

    fn check_signers(cases: &[SignerCase]) {
        for case in cases {
            let mut policy = gate();
            (case.policy)(&mut policy);
            let run = run_at_gate(case.run, signoffs(case.prior));
            let step = run.step("g").unwrap();
            let (name, person, role) = case.signer;
            let signer = operator(name, person, role);
            let got = check_signer(&policy, &signer, &run, step, case.comment, case.approves);
            assert_eq!(got, case.expected.map_err(str::to_string), "{}", case.what);
        }
    }

    /// A signer-case with the defaults: Alice's run, nothing signed, approving, no comment.
    const BASE: SignerCase = SignerCase {
        what: "",
        policy: |_| {},
        run: BY_ALICE,
        prior: &[],
        signer: ("bob", "bob", Some(Role::Operator)),
        comment: None,
        approves: true,
        expected: Ok(()),
    };

    #[test]
    fn the_signer_needs_the_gates_role_or_above() {
        check_signers(&[
            SignerCase {
                what: "an operator on a supervisor gate",
                policy: |p| p.role = Role::Supervisor,
                expected: Err("bob has the role operator; this step needs supervisor or above"),
                ..BASE
            },
            SignerCase {
                what: "a supervisor on a supervisor gate",
                policy: |p| p.role = Role::Supervisor,
                signer: ("carol", "carol", Some(Role::Supervisor)),
                ..BASE
            },
            SignerCase {
                what: "a trainee on an operator gate",
                signer: ("tom", "tom", Some(Role::Trainee)),
                expected: Err("tom has the role trainee; this step needs operator or above"),
                ..BASE
            },
            SignerCase {
                what: "the unverified OS user (no operators registered) counts as a supervisor",
                policy: |p| p.role = Role::Supervisor,
                signer: ("root", "root", None),
                ..BASE
            },
        ]);
    }

    #[test]
    fn on_a_training_run_only_the_supervisor_signs_and_never_the_trainee() {
        check_signers(&[
            SignerCase {
                what: "the trainee signing their own step",
                policy: |p| p.supervisor_person = Some("sam".into()),
                run: TINA_TRAINING,
                signer: ("tina", "tina", Some(Role::Supervisor)),
                expected: Err(
                    "tina is the trainee on this run and cannot sign their own steps; the supervisor sam signs",
                ),
                ..BASE
            },
            SignerCase {
                what: "the trainee under another name is the same person",
                policy: |p| p.supervisor_person = Some("sam".into()),
                run: TINA_TRAINING,
                signer: ("tn", "tina", Some(Role::Supervisor)),
                expected: Err(
                    "tn is the trainee on this run and cannot sign their own steps; the supervisor sam signs",
                ),
                ..BASE
            },
            SignerCase {
                what: "another supervisor than the run's",
                policy: |p| p.supervisor_person = Some("sam".into()),
                run: TINA_TRAINING,
                signer: ("carol", "carol", Some(Role::Supervisor)),
                expected: Err(
                    "this is a supervised training run: only the supervisor sam signs, not carol",
                ),
                ..BASE
            },
            SignerCase {
                what: "the run's supervisor",
                policy: |p| p.supervisor_person = Some("sam".into()),
                run: TINA_TRAINING,
                signer: ("sam", "sam", Some(Role::Supervisor)),
                ..BASE
            },
        ]);
    }

    #[test]
    fn four_eyes_refuses_the_runner_by_person() {
        check_signers(&[
            SignerCase {
                what: "the operator who started the run",
                policy: |p| p.four_eyes = true,
                signer: ("alice", "alice", Some(Role::Supervisor)),
                expected: Err(
                    "four eyes: alice started this run (as alice), so someone else must sign",
                ),
                ..BASE
            },
            SignerCase {
                what: "the runner signing under an alias",
                policy: |p| p.four_eyes = true,
                signer: ("al", "alice", Some(Role::Supervisor)),
                expected: Err(
                    "four eyes: alice started this run (as alice), so someone else must sign",
                ),
                ..BASE
            },
            SignerCase {
                what: "the runner who started the run under an alias, signing by name",
                policy: |p| p.four_eyes = true,
                run: BY_ALICE_AS_AL,
                signer: ("alice", "alice", Some(Role::Supervisor)),
                expected: Err(
                    "four eyes: alice started this run (as al), so someone else must sign",
                ),
                ..BASE
            },
            SignerCase {
                what: "another person",
                policy: |p| p.four_eyes = true,
                ..BASE
            },
            SignerCase {
                what: "the runner, without four eyes",
                signer: ("alice", "alice", Some(Role::Operator)),
                ..BASE
            },
        ]);
    }

    /// Whoever holds the run (after a handover, or as the resolved runner people) is a runner
    /// too. Only the refusal is asserted: its text names the run's first operator (`as
    /// alice`), not the holder, which reads as if dave were alice.
    #[test]
    fn four_eyes_refuses_whoever_holds_the_run_now() {
        let mut policy = gate();
        policy.four_eyes = true;
        let dave = operator("dave", "dave", Some(Role::Supervisor));
        let handed = run_at_gate(
            BY_ALICE,
            vec![Event::HandedOver {
                from: "alice".into(),
                to: "dave".into(),
                note: "end of shift".into(),
                by: "alice".into(),
            }],
        );
        let refused = check_signer(
            &policy,
            &dave,
            &handed,
            handed.step("g").unwrap(),
            None,
            true,
        );
        assert_eq!(
            refused,
            Err("four eyes: dave holds this run now (it was handed over to them), so someone else must sign".into()),
            "handed over to dave"
        );

        let plain = run_at_gate(BY_ALICE, Vec::new());
        let step = plain.step("g").unwrap();
        assert_eq!(
            check_signer(&policy, &dave, &plain, step, None, true),
            Ok(())
        );
        policy.runner_people = vec!["dave".into()];
        let refused = check_signer(&policy, &dave, &plain, step, None, true);
        assert_eq!(
            refused,
            Err("four eyes: dave drives this run, so someone else must sign".into()),
            "dave among the runner people"
        );
    }

    #[test]
    fn an_approvers_list_admits_its_names_and_their_people_only() {
        fn approvers(p: &mut Policy) {
            p.approvers = vec!["carol.w".into()];
            p.approver_people = vec!["carol".into()];
        }
        check_signers(&[
            SignerCase {
                what: "someone not on the list",
                policy: approvers,
                expected: Err("bob is not one of the approvers of this gate (carol.w)"),
                ..BASE
            },
            SignerCase {
                what: "an approver by name",
                policy: approvers,
                signer: ("carol.w", "carol", Some(Role::Operator)),
                ..BASE
            },
            SignerCase {
                what: "an approver's alias, by person",
                policy: approvers,
                signer: ("cw", "carol", Some(Role::Operator)),
                ..BASE
            },
        ]);
    }

    #[test]
    fn required_evidence_needs_a_comment_with_text() {
        check_signers(&[
            SignerCase {
                what: "no comment",
                policy: |p| p.evidence_required = true,
                expected: Err("this gate needs evidence: give a comment (--comment TEXT)"),
                ..BASE
            },
            SignerCase {
                what: "a blank comment",
                policy: |p| p.evidence_required = true,
                comment: Some("  \t"),
                expected: Err("this gate needs evidence: give a comment (--comment TEXT)"),
                ..BASE
            },
            SignerCase {
                what: "a comment",
                policy: |p| p.evidence_required = true,
                comment: Some("restore tested on db-2"),
                ..BASE
            },
            SignerCase {
                what: "no comment, evidence optional",
                ..BASE
            },
        ]);
    }

    #[test]
    fn m_of_n_refuses_a_second_approval_by_the_same_person() {
        check_signers(&[
            SignerCase {
                what: "the same name again",
                policy: |p| p.min_approvals = 2,
                prior: &[("bob", "bob", APPROVED)],
                expected: Err(
                    "bob has already approved this step (as bob); another person must give the next approval",
                ),
                ..BASE
            },
            SignerCase {
                what: "the same person under another name",
                policy: |p| p.min_approvals = 2,
                prior: &[("bobby", "bob", APPROVED)],
                expected: Err(
                    "bob has already approved this step (as bobby); another person must give the next approval",
                ),
                ..BASE
            },
            SignerCase {
                what: "another person",
                policy: |p| p.min_approvals = 2,
                prior: &[("bobby", "bob", APPROVED)],
                signer: ("carol", "carol", Some(Role::Operator)),
                ..BASE
            },
            SignerCase {
                what: "the same person rejecting after approving",
                policy: |p| p.min_approvals = 2,
                prior: &[("bob", "bob", APPROVED)],
                approves: false,
                ..BASE
            },
        ]);
    }

    #[test]
    fn the_verdict_counts_people_and_a_rejection_or_timeout_decides() {
        type VerdictCase = (
            &'static str,
            u32,
            &'static [Prior],
            Option<TimeoutAction>,
            Verdict,
        );
        let pending = |approvals, needed| Verdict::Pending { approvals, needed };
        let table: Vec<VerdictCase> = vec![
            ("nothing signed", 1, &[], None, pending(0, 1)),
            (
                "one of one",
                1,
                &[("bob", "bob", APPROVED)],
                None,
                Verdict::Approved,
            ),
            (
                "one of two",
                2,
                &[("bob", "bob", APPROVED)],
                None,
                pending(1, 2),
            ),
            (
                "one person under two names counts once",
                2,
                &[("bob", "bob", APPROVED), ("bobby", "bob", APPROVED)],
                None,
                pending(1, 2),
            ),
            (
                "two people",
                2,
                &[("bob", "bob", APPROVED), ("carol", "carol", APPROVED)],
                None,
                Verdict::Approved,
            ),
            (
                "a rejection after an approval",
                2,
                &[("bob", "bob", APPROVED), ("carol", "carol", REJECTED)],
                None,
                Verdict::Rejected {
                    by: "carol".into(),
                    at: "2026-03-01T10:00:04Z".into(),
                },
            ),
            (
                "a rejection is not outvoted by later approvals",
                2,
                &[
                    ("carol", "carol", REJECTED),
                    ("bob", "bob", APPROVED),
                    ("dave", "dave", APPROVED),
                ],
                None,
                Verdict::Rejected {
                    by: "carol".into(),
                    at: "2026-03-01T10:00:03Z".into(),
                },
            ),
            (
                "a timeout that rejects",
                1,
                &[],
                Some(TimeoutAction::Reject),
                Verdict::TimedOut {
                    action: OnTimeout::Reject,
                },
            ),
            (
                "a timeout that aborts, after one approval of two",
                2,
                &[("bob", "bob", APPROVED)],
                Some(TimeoutAction::Abort),
                Verdict::TimedOut {
                    action: OnTimeout::Abort,
                },
            ),
        ];
        for (what, min_approvals, prior, timed_out, expected) in table {
            let mut policy = gate();
            policy.min_approvals = min_approvals;
            let mut events = signoffs(prior);
            if let Some(action) = timed_out {
                events.push(Event::GateTimedOut {
                    step: "g".into(),
                    action,
                });
            }
            let run = run_at_gate(BY_ALICE, events);
            assert_eq!(verdict(&policy, run.step("g").unwrap()), expected, "{what}");
        }
    }
}
