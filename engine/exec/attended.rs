//! Steps that need a person: gates and manual steps, decided by the person at the console,
//! by sign-offs from other processes, or parked; and the timeout that never approves. The
//! person is reached only through the [`Console`] trait.

use super::*;
use crate::exec::console::{Attendance, AttendedAnswer, AttendedDecision, AttendedKind, Signer};
use crate::journal::event::{SignoffDecision, StepDecision, WaitingFor};
use crate::people::signoff::signoff_event;

enum ConsoleAnswer {
    /// Something was recorded (or nothing usable was said): look at the verdict again.
    Again,
    /// Nobody decides now: park.
    Defer,
}

impl Executor {
    // ----- people ------------------------------------------------------------------------

    /// Asks the console on a blocking thread, with the progress display out of the way; an
    /// abort request ends the wait.
    async fn ask(&self, console: Arc<dyn Console>, question: Attendance) -> Option<AttendedAnswer> {
        let progress = self.progress.clone();
        let asking = tokio::task::spawn_blocking(move || {
            let mut answer = None;
            progress.suspend(&mut || answer = console.attend(&question));
            answer
        });
        tokio::select! {
            answer = asking => answer.ok().flatten(),
            _ = self.abort.requested() => {
                // Ctrl-C at the prompt: the question is withdrawn, and the next line typed
                // is not taken as its answer.
                if let Some(console) = &self.console {
                    console.withdraw();
                }
                None
            }
        }
    }

    fn park(
        &self,
        step: &PlannedStep,
        reason: String,
        waiting_for: WaitingFor,
        binding: String,
        evidence_required: bool,
    ) -> Result<StepOutcome> {
        let step_asks = self
            .current_view()?
            .step(&step.id)
            .and_then(|s| s.asks.clone())
            .unwrap_or_default();
        self.record(Event::RunPaused {
            step: step.id.clone(),
            reason: reason.clone(),
            waiting_for,
        })?;
        self.parked
            .lock()
            .map_err(|_| Error::Poisoned {
                what: "parked steps",
            })?
            .push(ParkedStep {
                step: step.id.clone(),
                asks: step_asks,
                evidence_required,
                binding,
            });
        self.progress.step_parked(
            &step.id,
            &format!("… {:<24} parked     — {reason}", step.id),
        );
        Ok(StepOutcome::Parked)
    }

    fn record_expectation(
        &self,
        step: &PlannedStep,
        expected: &str,
        passed: bool,
        detail: Option<String>,
    ) -> Result<()> {
        self.record(Event::ExpectationChecked {
            step: step.id.clone(),
            passed,
            expected: expected.to_string(),
            detail,
        })?;
        if let Ok(mut e) = self.expectations.lock() {
            e.push(passed);
        }
        Ok(())
    }

    /// The run as the journal has it now (sign-offs may come from other processes).
    fn current_view(&self) -> Result<RunView> {
        self.record_all(Vec::new())?;
        let journal = self.journal()?;
        RunView::from_events(&journal.run_events(&self.run_id)?)
    }

    /// A gate, or a manual step: decided at the terminal, by sign-offs from another terminal
    /// (polled with `--wait`), or parked.
    pub(super) async fn await_person(
        &self,
        step: &PlannedStep,
        advances: bool,
        started: Instant,
    ) -> Result<StepOutcome> {
        let person = self.supervision.as_ref().map(|s| s.person.as_str());
        // The run loop sends only gates and manual steps here, and both have a policy.
        let mut policy = Policy::for_step(step, person)
            .expect("gates and manual steps always have a sign-off policy");
        {
            let view = self.current_view()?;
            let mut journal = self.journal()?;
            policy.resolve_people(&view, &mut Directory::new(&mut journal))?;
            policy.runner_people.push(self.operator.person.clone());
        }
        loop {
            let view = self.current_view()?;
            let Some(step_view) = view.step(&step.id).cloned() else {
                return Err(Error::StepNotInJournal {
                    run: self.run_id.clone(),
                    step: step.id.clone(),
                });
            };
            if let Some(status) = step_view.status {
                // Decided at the terminal (a skip) since the last look.
                self.finished(
                    step,
                    status,
                    Some(started.elapsed()),
                    step_view.reason.as_deref(),
                    advances,
                );
                return Ok(StepOutcome::Done(status));
            }
            let observe = match (&step.expect, policy.manual) {
                (Some(Expectation::Observe(text)), true) => Some(text.clone()),
                _ => None,
            };
            match policy::verdict(&policy, &step_view) {
                Verdict::Approved => {
                    let signers: Vec<&str> = step_view
                        .signoffs
                        .iter()
                        .filter(|s| s.decision == SignoffDecision::Approved)
                        .map(|s| s.signer.as_str())
                        .collect();
                    let what = if policy.manual {
                        "done, signed by"
                    } else {
                        "approved by"
                    };
                    if let Some(expected) = &observe {
                        self.record_expectation(step, expected, true, None)?;
                    }
                    let reason = format!("{what} {}", signers.join(", "));
                    return self.end(
                        step,
                        StepStatus::Succeeded,
                        0,
                        Some(reason),
                        Some(started.elapsed()),
                        advances,
                    );
                }
                Verdict::Rejected { by, at } => {
                    // A manual step in a test script that is "rejected" was observed to differ:
                    // the step failed, the run goes on by its policy.
                    let (status, reason) = match &observe {
                        Some(expected) => {
                            let detail = format!("{by} observed something else");
                            self.record_expectation(step, expected, false, Some(detail))?;
                            let reason =
                                format!("the observed result did not match, reported by {by}");
                            (StepStatus::Failed, reason)
                        }
                        None => (StepStatus::Rejected, format!("rejected by {by} at {at}")),
                    };
                    return self.end(
                        step,
                        status,
                        0,
                        Some(reason),
                        Some(started.elapsed()),
                        advances,
                    );
                }
                Verdict::TimedOut { action } => return self.timed_out(step, action, advances),
                Verdict::Pending { .. } => {}
            }
            if policy::is_past_deadline(&policy, &step_view) {
                if self.record_timeout_unless_decided(step, &policy)? {
                    return self.timed_out(step, policy.on_timeout, advances);
                }
                // A sign-off landed just before the deadline: look at it.
                continue;
            }
            if self.abort.is_requested() {
                let reason = "stopped at the operator's request".to_string();
                return self.end(step, StepStatus::Aborted, 0, Some(reason), None, advances);
            }
            let deadline = policy::deadline(&policy, &step_view);
            if let Some(console) = self.console.clone() {
                match self
                    .ask_at_console(console, step, &policy, &view, &step_view, deadline)
                    .await?
                {
                    ConsoleAnswer::Again => continue,
                    ConsoleAnswer::Defer => {}
                }
            } else if self.wait {
                self.progress.step_line(&step.id, "waiting for a sign-off");
                let pause = match deadline {
                    Some(d) => (d - chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .min(Duration::from_millis(500)),
                    None => Duration::from_millis(500),
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.abort.requested() => {}
                }
                continue;
            }
            let binding = self.binding(step, &view, &policy::evidence(&policy, &view));
            let waiting_for = if self.supervision.is_some() {
                WaitingFor::Countersign
            } else if policy.manual {
                WaitingFor::Operator
            } else {
                WaitingFor::Signoff
            };
            let what = if policy.manual { "manual step" } else { "gate" };
            return self.park(
                step,
                format!("{what} `{}` waits: {}", step.id, policy.who_may_sign(&view)),
                waiting_for,
                binding,
                policy.evidence_required,
            );
        }
    }

    /// Journals the gate's timeout, unless a decision was journaled first (by another process,
    /// just before the deadline); says whether it did.
    fn record_timeout_unless_decided(&self, step: &PlannedStep, policy: &Policy) -> Result<bool> {
        let action = policy::timeout_action(policy.on_timeout);
        self.record_all(Vec::new())?;
        let mut journal = self.journal()?;
        journal.append_checked(&self.run_id, |events| {
            let view = RunView::from_events(events)?;
            let undecided = view
                .step(&step.id)
                .is_some_and(|s| matches!(policy::verdict(policy, s), Verdict::Pending { .. }));
            let event = Event::GateTimedOut {
                step: step.id.clone(),
                action,
            };
            Ok(if undecided {
                (vec![event], true)
            } else {
                (vec![], false)
            })
        })
    }

    /// Ends a gate whose timeout is journaled.
    fn timed_out(
        &self,
        step: &PlannedStep,
        action: OnTimeout,
        advances: bool,
    ) -> Result<StepOutcome> {
        let action_name = if action == OnTimeout::Abort {
            "abort"
        } else {
            "reject"
        };
        let status = if action == OnTimeout::Abort {
            StepStatus::Aborted
        } else {
            StepStatus::Rejected
        };
        let reason = format!(
            "timed out waiting for a sign-off ({action_name}); a gate never approves by timing out"
        );
        self.end(step, status, 0, Some(reason), None, advances)
    }

    /// One round at the console: the prompt, the evidence and who may sign; then a decision
    /// by the runner, or by another operator who identifies on the spot.
    async fn ask_at_console(
        &self,
        console: Arc<dyn Console>,
        step: &PlannedStep,
        policy: &Policy,
        view: &RunView,
        step_view: &StepView,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<ConsoleAnswer> {
        let evidence = policy::evidence(policy, view);
        let countersigned = self.supervision.is_some();
        let question = Attendance {
            heading: self.heading(step, policy, view, step_view, &evidence, deadline),
            kind: match (policy.manual, &step.expect) {
                (false, _) => AttendedKind::Gate,
                (true, Some(Expectation::Observe(_))) => AttendedKind::ManualObserved,
                (true, _) => AttendedKind::Manual,
            },
            evidence_required: policy.evidence_required,
            countersigned,
            // On a training run the supervisor signs; otherwise the runner, unless someone
            // steps up.
            default_signer: match &self.supervision {
                Some(s) => Some(s.supervisor.clone()),
                // Four eyes: the runner is the one person who may not sign.
                None if policy.four_eyes && !policy.manual => None,
                None => Some(self.operator.name.clone()),
            },
            previous_comment: self
                .last_comments
                .lock()
                .ok()
                .and_then(|c| c.get(&step.id).cloned()),
            runner: self.operator.name.clone(),
        };
        let asked = self.ask(console.clone(), question);
        let answer = match deadline {
            Some(d) => {
                let left = (d - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    answer = asked => answer,
                    _ = tokio::time::sleep(left) => return Ok(ConsoleAnswer::Again),
                }
            }
            None => asked.await,
        };
        let Some(answer) = answer else {
            // Deferred, end of input, or Ctrl-C (the loop then sees the abort).
            return Ok(if self.abort.is_requested() {
                ConsoleAnswer::Again
            } else {
                ConsoleAnswer::Defer
            });
        };
        let decided_by_runner =
            |decision: StepDecision, comment: Option<String>| Event::StepDecided {
                step: step.id.clone(),
                decision,
                by: self.operator.name.clone(),
                comment,
            };
        let decision = match answer.decision {
            AttendedDecision::Abort => {
                self.record(decided_by_runner(StepDecision::Aborted, None))?;
                self.abort.escalate();
                return Ok(ConsoleAnswer::Again);
            }
            AttendedDecision::Skip => {
                let reason = answer
                    .comment
                    .as_ref()
                    .map(|c| format!("skipped by {}: {c}", self.operator.name));
                self.record_all(vec![
                    decided_by_runner(StepDecision::Skipped, answer.comment.clone()),
                    Event::StepFinished {
                        step: step.id.clone(),
                        status: StepStatus::Skipped,
                        attempts: 0,
                        reason,
                    },
                ])?;
                return Ok(ConsoleAnswer::Again);
            }
            AttendedDecision::Approve => SignoffDecision::Approved,
            AttendedDecision::Reject => SignoffDecision::Rejected,
        };
        let trainee_done_before = step_view
            .decisions
            .iter()
            .any(|d| d.decision == StepDecision::Done.name() && d.by == self.operator.name);
        if policy.manual
            && countersigned
            && decision == SignoffDecision::Approved
            && !trainee_done_before
        {
            // The trainee's own tick, on record before the supervisor's counter-signature.
            self.record(decided_by_runner(
                StepDecision::Done,
                answer.comment.clone(),
            ))?;
        }
        let signer = match answer.signer {
            Signer::Runner => self.operator.clone(),
            Signer::Other { name, passphrase } => {
                let verified = {
                    let mut journal = self.journal()?;
                    Directory::new(&mut journal).verify(&name, &passphrase)
                };
                match verified {
                    Ok(op) => op,
                    Err(e) => {
                        if e.is_identity_refusal() {
                            self.record(Event::SignoffRefused {
                                step: step.id.clone(),
                                signer: name.clone(),
                                reason: e.to_string(),
                            })?;
                        }
                        self.progress.message(&format!("   {e}"));
                        self.remember_comment(&step.id, answer.comment.as_deref());
                        return Ok(ConsoleAnswer::Again);
                    }
                }
            }
        };
        if let Err(reason) = policy::check_signer(
            policy,
            &signer,
            view,
            step_view,
            answer.comment.as_deref(),
            decision == SignoffDecision::Approved,
        ) {
            self.record(Event::SignoffRefused {
                step: step.id.clone(),
                signer: signer.name.clone(),
                reason: reason.clone(),
            })?;
            self.progress.message(&format!("   refused: {reason}"));
            self.remember_comment(&step.id, answer.comment.as_deref());
            return Ok(ConsoleAnswer::Again);
        }
        let binding = self.binding(step, view, &evidence);
        self.record(signoff_event(
            &step.id,
            &signer,
            decision,
            answer.comment,
            evidence,
            binding,
        ))?;
        Ok(ConsoleAnswer::Again)
    }

    /// The binding of a sign-off of `step` with `evidence`, as the run stands now.
    fn binding(&self, step: &PlannedStep, view: &RunView, evidence: &Map<String, Value>) -> String {
        policy::binding(
            &self.run_id,
            &step.id,
            view.bound_hash(),
            &view.params,
            evidence,
        )
    }

    /// Keeps the comment of a refused answer, to offer it again in the next round.
    fn remember_comment(&self, step: &str, comment: Option<&str>) {
        if let (Some(comment), Ok(mut kept)) = (comment, self.last_comments.lock()) {
            kept.insert(step.to_string(), comment.to_string());
        }
    }

    fn heading(
        &self,
        step: &PlannedStep,
        policy: &Policy,
        view: &RunView,
        step_view: &StepView,
        evidence: &Map<String, Value>,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> String {
        let prompt_text = self
            .render_text(&policy.prompt)
            .unwrap_or_else(|_| policy.prompt.clone());
        let what = if policy.manual { "manual step" } else { "gate" };
        let mut heading = format!(
            "\n── {what} {}: {}\n   {}\n",
            step.id,
            step.name,
            prompt_text.replace('\n', "\n   ")
        );
        if let Some(Expectation::Observe(expected)) = &step.expect {
            heading.push_str(&format!("   expected: {expected}\n"));
        }
        for line in policy::describe_evidence(evidence) {
            heading.push_str(&format!("   evidence  {}\n", self.redactor.text(&line)));
        }
        heading.push_str(&format!("   who signs: {}\n", policy.who_may_sign(view)));
        if let Verdict::Pending { approvals, needed } = policy::verdict(policy, step_view) {
            if needed > 1 {
                heading.push_str(&format!("   approvals so far: {approvals} of {needed}\n"));
            }
        }
        if let Some(d) = deadline {
            let then = if policy.on_timeout == OnTimeout::Abort {
                "abort"
            } else {
                "reject"
            };
            heading.push_str(&format!(
                "   times out at {} (then {then})\n",
                d.format("%H:%M:%S UTC")
            ));
        }
        heading
    }
}
