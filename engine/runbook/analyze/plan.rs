//! Building the `Plan` from the model once the file is clean: every AST compiled once.

use super::*;

impl Linter<'_> {
    // ----- the plan ------------------------------------------------------------------------

    pub(super) fn build_plan(&mut self, runbook: Runbook) -> Plan {
        let steps = runbook.steps.iter().map(|s| self.plan_step(s)).collect();
        let rollback = runbook.rollback.iter().map(|s| self.plan_step(s)).collect();
        Plan {
            source: self.source.clone(),
            runbook,
            steps,
            rollback,
            scripts_dir: self.scripts_dir.to_path_buf(),
            sources: Default::default(),
        }
    }

    pub(super) fn take_ast(&mut self, id: &str, key: &'static str) -> Arc<AST> {
        // Every script and expression was compiled by the lint pass, which found no errors.
        Arc::new(
            self.compiled
                .remove(&(id.to_string(), key))
                .unwrap_or_default(),
        )
    }

    pub(super) fn plan_step(&mut self, step: &Step) -> PlannedStep {
        let kind = if let Some(text) = &step.rhai {
            StepKind::Rhai {
                source: ScriptSource::Inline(text.clone()),
                ast: self.take_ast(&step.id, "rhai"),
            }
        } else if let Some(file) = &step.script {
            StepKind::Rhai {
                source: ScriptSource::File(file.clone()),
                ast: self.take_ast(&step.id, "script"),
            }
        } else if let Some(command) = &step.shell {
            StepKind::Shell {
                command: command.clone(),
            }
        } else if let Some(text) = &step.manual {
            StepKind::Manual {
                instructions: text.clone(),
            }
        } else if let Some(gate) = &step.gate {
            StepKind::Gate(gate.clone())
        } else {
            let members = step.parallel.as_deref().unwrap_or_default();
            StepKind::Parallel(members.iter().map(|m| self.plan_step(m)).collect())
        };
        let when = step.when.as_ref().map(|text| Expression {
            text: text.clone(),
            ast: self.take_ast(&step.id, "when"),
        });
        let expect = step.expect.as_ref().map(|text| match kind {
            StepKind::Manual { .. } => Expectation::Observe(text.clone()),
            _ => Expectation::Check(Expression {
                text: text.clone(),
                ast: self.take_ast(&step.id, "expect"),
            }),
        });
        let retry = step.retry.as_ref().map(|r| RetryPolicy {
            attempts: r.attempts.max(1),
            delay: r
                .delay
                .as_deref()
                .and_then(|d| parse_duration(d).ok())
                .unwrap_or_default(),
            backoff: r.backoff.unwrap_or(1.0),
        });
        PlannedStep {
            id: step.id.clone(),
            name: step.name.clone().unwrap_or_else(|| step.id.clone()),
            description: step.description.clone(),
            kind,
            when,
            timeout: step
                .timeout
                .as_deref()
                .and_then(|t| parse_duration(t).ok())
                .unwrap_or(DEFAULT_STEP_TIMEOUT),
            retry: retry.unwrap_or(RetryPolicy::ONCE),
            on_failure: step.on_failure,
            readonly: step.readonly,
            idempotent: step.idempotent,
            undo: step.undo.clone(),
            expect,
        }
    }
}
