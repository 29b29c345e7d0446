//! Steps that need a person: gates and manual steps, decided at the terminal, by sign-offs
//! from other processes, or parked; and the timeout that never approves.

use super::*;

enum TerminalAnswer {
    /// Something was recorded (or nothing usable was said): look at the verdict again.
    Again,
    /// Nobody decides now: park.
    Defer,
}

/// The journal event of one sign-off.
pub fn signoff_event(
    step: &str,
    signer: &Operator,
    decision: &str,
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
        decision: decision.into(),
        comment,
        evidence,
        binding,
    }
}

impl Executor {
    // ----- people ------------------------------------------------------------------------

    async fn ask<T: Send + 'static>(
        &self,
        question: impl FnOnce() -> Option<T> + Send + 'static,
    ) -> Option<T> {
        let progress = self.progress.clone();
        let asking = tokio::task::spawn_blocking(move || {
            let mut answer = None;
            let mut question = Some(question);
            progress.suspend(&mut || answer = question.take().and_then(|q| q()));
            answer
        });
        tokio::select! {
            answer = asking => answer.ok().flatten(),
            _ = self.abort.requested() => None,
        }
    }

    fn park(&self, step: &PlannedStep, reason: String, waiting_for: &str) -> Result<StepOutcome> {
        self.record(Event::RunPaused {
            step: step.id.clone(),
            reason: reason.clone(),
            waiting_for: waiting_for.into(),
        })?;
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
        let journal = self
            .journal
            .lock()
            .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
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
        let Some(mut policy) = Policy::for_step(step, person) else {
            return Err(Error::Internal(format!("step {} needs no person", step.id)));
        };
        {
            let view = self.current_view()?;
            let mut journal = self
                .journal
                .lock()
                .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
            policy.resolve_people(&view, &mut Directory::new(&mut journal))?;
            policy.runner_people.push(self.operator.person.clone());
        }
        loop {
            let view = self.current_view()?;
            let Some(step_view) = view.step(&step.id).cloned() else {
                return Err(Error::Internal(format!("step {} has no record", step.id)));
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
                        .filter(|s| s.decision == "approved")
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
            if self.interactive {
                match self
                    .ask_at_terminal(step, &policy, &view, &step_view, deadline)
                    .await?
                {
                    TerminalAnswer::Again => continue,
                    TerminalAnswer::Defer => {}
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
            let evidence = policy::evidence(&policy, &view);
            let binding = policy::binding(
                &self.run_id,
                &step.id,
                &self.plan.source.content_hash,
                &view.params,
                &evidence,
            );
            let waiting_for = if self.supervision.is_some() {
                "countersign"
            } else if policy.manual {
                "operator"
            } else {
                "signoff"
            };
            let what = if policy.manual { "manual step" } else { "gate" };
            self.park(
                step,
                format!("{what} `{}` waits: {}", step.id, policy.who_may_sign(&view)),
                waiting_for,
            )?;
            self.progress.message(&format!(
                "  sign it from any terminal: opsbook signoff {} --step {} --approve [--comment TEXT] --as NAME\n  binding {binding}",
                self.run_id, step.id
            ));
            return Ok(StepOutcome::Parked);
        }
    }

    /// Journals the gate's timeout, unless a decision was journaled first (by another process,
    /// just before the deadline); says whether it did.
    fn record_timeout_unless_decided(&self, step: &PlannedStep, policy: &Policy) -> Result<bool> {
        let action = if policy.on_timeout == OnTimeout::Abort {
            "abort"
        } else {
            "reject"
        };
        self.record_all(Vec::new())?;
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
        journal.append_checked(&self.run_id, |events| {
            let view = RunView::from_events(events)?;
            let undecided = view
                .step(&step.id)
                .is_some_and(|s| matches!(policy::verdict(policy, s), Verdict::Pending { .. }));
            let event = Event::GateTimedOut {
                step: step.id.clone(),
                action: action.into(),
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

    /// One round at the terminal: the prompt, the evidence and who may sign; then a decision
    /// by the runner, or by another operator who identifies on the spot.
    async fn ask_at_terminal(
        &self,
        step: &PlannedStep,
        policy: &Policy,
        view: &RunView,
        step_view: &StepView,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<TerminalAnswer> {
        let evidence = policy::evidence(policy, view);
        let heading = self.terminal_heading(step, policy, view, step_view, &evidence, deadline);
        let manual = policy.manual;
        let own_name = self.operator.name.clone();
        let trainee_run = self.supervision.is_some();
        // On a training run the supervisor signs; otherwise the runner, unless someone steps up.
        let default_signer = self
            .supervision
            .as_ref()
            .map(|s| s.supervisor.clone())
            .unwrap_or_else(|| own_name.clone());
        let evidence_required = policy.evidence_required;
        let observe = matches!(step.expect, Some(Expectation::Observe(_)));
        let asked = self.ask(move || {
            eprintln!("{heading}");
            let (question, choices): (&str, &[char]) = match (manual, observe) {
                (true, true) => ("   [d]one, as expected / [m]ismatch / [s]kip (with a reason) / [w]ait (park) / [a]bort? ", &['d', 'm', 's', 'w', 'a']),
                (true, false) => ("   [d]one / [s]kip (with a reason) / [w]ait (park) / [a]bort? ", &['d', 's', 'w', 'a']),
                (false, _) => ("   [a]pprove / [r]eject / [d]efer (park)? ", &['a', 'r', 'd']),
            };
            let decision = match (manual, prompt::ask_choice(question, choices)?) {
                (true, 'd') | (false, 'a') => "approved",
                (true, 'm') | (false, 'r') => "rejected",
                (true, 's') => "skipped",
                (true, 'a') => "aborted",
                _ => return Some(None),
            };
            let comment = match decision {
                "skipped" => Some(prompt::ask_required("   reason for skipping: ")?),
                "aborted" => None,
                _ if evidence_required => Some(prompt::ask_required("   evidence (required): ")?),
                _ => prompt::ask_line("   comment (optional): ").filter(|c| !c.is_empty()),
            };
            // A manual step is ticked off by the runner; on a training run the supervisor
            // counter-signs it, as they sign every gate.
            let asks_for_signer = !matches!(decision, "skipped" | "aborted") && (!manual || trainee_run);
            let signer = if asks_for_signer {
                let typed = prompt::ask_line(&format!(
                    "   signing as (Enter for {default_signer}, or another operator's name): "
                ))?;
                if typed.is_empty() { default_signer } else { typed }
            } else {
                own_name.clone()
            };
            let passphrase = if signer == own_name {
                None
            } else {
                Some(rpassword::prompt_password(format!("   passphrase for {signer}: ")).ok()?)
            };
            Some(Some((decision, comment, signer, passphrase)))
        });
        let answer = match deadline {
            Some(d) => {
                let left = (d - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    answer = asked => answer,
                    _ = tokio::time::sleep(left) => return Ok(TerminalAnswer::Again),
                }
            }
            None => asked.await,
        };
        let Some(Some((decision, comment, signer_name, passphrase))) = answer else {
            // Deferred, end of input, or Ctrl-C (the loop then sees the abort).
            return Ok(if self.abort.is_requested() {
                TerminalAnswer::Again
            } else {
                TerminalAnswer::Defer
            });
        };
        if matches!(decision, "skipped" | "aborted") {
            self.record(Event::StepDecided {
                step: step.id.clone(),
                decision: decision.into(),
                by: self.operator.name.clone(),
                comment: comment.clone(),
            })?;
            if decision == "aborted" {
                self.abort.escalate();
            } else {
                let reason = comment.map(|c| format!("skipped by {}: {c}", self.operator.name));
                self.record(Event::StepFinished {
                    step: step.id.clone(),
                    status: StepStatus::Skipped,
                    attempts: 0,
                    reason,
                })?;
            }
            return Ok(TerminalAnswer::Again);
        }
        let trainee_done_before = step_view
            .decisions
            .iter()
            .any(|d| d.decision == "done" && d.by == self.operator.name);
        if manual && trainee_run && decision == "approved" && !trainee_done_before {
            // The trainee's own tick, on record before the supervisor's counter-signature.
            self.record(Event::StepDecided {
                step: step.id.clone(),
                decision: "done".into(),
                by: self.operator.name.clone(),
                comment: comment.clone(),
            })?;
        }
        let signer = match passphrase {
            None => self.operator.clone(),
            Some(pass) => {
                let mut journal = self
                    .journal
                    .lock()
                    .map_err(|_| Error::Internal("the journal lock was poisoned".into()))?;
                match Directory::new(&mut journal).verify(&signer_name, &pass) {
                    Ok(op) => op,
                    Err(e) => {
                        self.progress.message(&format!("   {e}"));
                        return Ok(TerminalAnswer::Again);
                    }
                }
            }
        };
        let approves = decision == "approved";
        if let Err(reason) = policy::check_signer(
            policy,
            &signer,
            view,
            step_view,
            comment.as_deref(),
            approves,
        ) {
            self.record(Event::SignoffRefused {
                step: step.id.clone(),
                signer: signer.name.clone(),
                reason: reason.clone(),
            })?;
            self.progress.message(&format!("   refused: {reason}"));
            return Ok(TerminalAnswer::Again);
        }
        let binding = policy::binding(
            &self.run_id,
            &step.id,
            &self.plan.source.content_hash,
            &view.params,
            &evidence,
        );
        self.record(signoff_event(
            &step.id, &signer, decision, comment, evidence, binding,
        ))?;
        Ok(TerminalAnswer::Again)
    }

    fn terminal_heading(
        &self,
        step: &PlannedStep,
        policy: &Policy,
        view: &RunView,
        step_view: &StepView,
        evidence: &Map<String, Value>,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> String {
        let prompt_text = self
            .render(&policy.prompt, Quoting::Plain)
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
