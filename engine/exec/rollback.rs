//! Rollback: after a step with `on_failure: rollback` fails, the rollback steps run in reverse
//! order; one that undoes a step which never ran is skipped.

use super::*;

impl Executor {
    pub(super) async fn rollback(&self, failed: &PlannedStep) -> Result<()> {
        let planned: Vec<String> = self
            .plan
            .rollback
            .iter()
            .rev()
            .map(|s| s.id.clone())
            .collect();
        self.record(Event::RollbackStarted {
            failed_step: failed.id.clone(),
            steps: planned.clone(),
        })?;
        if planned.is_empty() {
            self.progress.message(&format!(
                "step `{}` failed; it asks for a rollback, but the runbook has no rollback steps",
                failed.id
            ));
            return Ok(());
        }
        self.progress.message(&format!(
            "step `{}` failed; rolling back: {}",
            failed.id,
            planned.join(", ")
        ));
        let started = self.started.lock().map(|s| s.clone()).unwrap_or_default();
        for step in self.plan.rollback.iter().rev() {
            if let Some(undone) = step.undo.as_ref().filter(|u| !started.contains(*u)) {
                let reason = format!("it undoes `{undone}`, which did not run");
                self.skip(step, Phase::Rollback, None, reason, None, false)?;
                continue;
            }
            let outcome = self.run_step(step, Phase::Rollback, None).await?;
            if outcome == StepOutcome::Done(StepStatus::Failed)
                && step.on_failure == OnFailure::Abort
            {
                self.progress
                    .message(&format!("rollback stopped: step `{}` failed", step.id));
                break;
            }
        }
        Ok(())
    }
}
