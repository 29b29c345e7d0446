//! Steps: ids, exactly one kind, parallel groups, `retry`, gates, and the test-script keys.

use super::*;

/// A step tried more often than this is a loop, not a retry.
const MAX_ATTEMPTS: i64 = 100;
/// More approvals than this is a typo: a gate is signed by people, one by one.
const MAX_APPROVALS: i64 = 50;

impl Linter<'_> {
    // ----- steps ---------------------------------------------------------------------------

    pub(super) fn lint_steps(&mut self, node: &Node, section: Section, is_test: bool) {
        let Some(seq) = node.as_sequence() else {
            self.error(node.span(), "steps must be a list (`- id: ...`)");
            return;
        };
        for step in seq.iter() {
            self.lint_step(step, section, is_test);
        }
    }

    pub(super) fn lint_step(&mut self, node: &Node, section: Section, is_test: bool) {
        let Some(map) = node.as_mapping() else {
            self.error(node.span(), "a step must be a mapping with an `id` and one kind (rhai, script, shell, manual, gate, parallel)");
            return;
        };
        let id = match map.get_node("id") {
            None => {
                self.error(
                    &self.map_span(map),
                    "this step has no `id`; give every step a unique id",
                );
                String::from("?")
            }
            Some(node) => {
                match self.scalar(node, "id", "a name") {
                    Some(s) => {
                        let id = s.as_str().to_string();
                        if !self.id_pattern.is_match(&id) {
                            self.error(s.span(), format!("step id `{id}` must be lower-case letters, digits, `-` and `_`"));
                        }
                        if let Some(first) = self.step_ids.get(&id) {
                            let first_line = first.0;
                            self.error(s.span(), format!("duplicate step id `{id}` (first used at line {first_line}); step ids must be unique"));
                        } else {
                            self.step_ids.insert(id.clone(), Self::at(s.span()));
                        }
                        id
                    }
                    None => String::from("?"),
                }
            }
        };
        let what = format!("step `{id}`");
        self.check_keys(map, field_names::<Step>(), &what);

        let kinds: Vec<&MarkedScalarNode> = map
            .keys()
            .filter(|k| STEP_KINDS.contains(&k.as_str()))
            .collect();
        match kinds.as_slice() {
            [] => self.error(
                &self.map_span(map),
                format!(
                    "{what} has no kind; give it one of: {}",
                    STEP_KINDS.join(", ")
                ),
            ),
            [_] => {}
            [first, second, ..] => {
                let message = format!(
                    "{what} has two kinds, `{}` and `{}`; a step does one thing, so split it into two steps",
                    first.as_str(),
                    second.as_str()
                );
                self.error(second.span(), message);
            }
        }

        for key in ["name", "description", "manual", "when", "expect", "undo"] {
            self.string_value(map, key);
        }
        self.nonzero_duration(map, "timeout");
        self.enum_value(map, "on_failure", &["abort", "continue", "rollback"]);
        self.bool_value(map, "readonly");
        self.bool_value(map, "idempotent");
        if let Some(retry) = map.get_node("retry") {
            self.lint_retry(retry, &what);
        }
        if section == Section::Rollback {
            if let Some(undo) = map.get_scalar("undo") {
                self.undos.push((undo.as_str().to_string(), *undo.span()));
            }
            if let Some(node) = map.get_node("on_failure") {
                if node.as_scalar().map(|s| s.as_str()) == Some("rollback") {
                    self.error(node.span(), format!("{what} is a rollback step; `on_failure: rollback` cannot apply to it (use abort or continue)"));
                }
            }
        } else if let Some(undo) = map.get_node("undo") {
            self.error(
                undo.span(),
                format!("`undo` belongs on rollback steps; {what} is not one"),
            );
        }
        if let Some(expect) = map.get_node("expect") {
            if !is_test {
                self.error(expect.span(), format!("`expect` is for test scripts; add `kind: test` to the runbook or remove it from {what}"));
            }
        }

        if section == Section::Steps {
            self.main_order.push(id.clone());
        }
        self.lint_step_texts(map, &id, section);

        if let Some(gate) = map.get_node("gate") {
            self.lint_gate(gate, &what);
            if section == Section::ParallelGroup {
                self.error(gate.span(), format!("{what} is a gate inside a parallel group; gates need a person and run on their own, outside the group"));
            }
        }
        if let (Some(node), Section::ParallelGroup) = (map.get_node("manual"), section) {
            self.error(node.span(), format!("{what} is a manual step inside a parallel group; it needs a person and must run on its own"));
        }
        if let Some(group) = map.get_node("parallel") {
            if section == Section::ParallelGroup {
                self.error(group.span(), format!("{what} is a parallel group inside a parallel group; flatten it into one group"));
            } else {
                if group.as_sequence().map(|s| s.is_empty()).unwrap_or(false) {
                    self.error(
                        group.span(),
                        format!("the parallel group of {what} is empty"),
                    );
                }
                self.lint_steps(group, Section::ParallelGroup, is_test);
            }
        }
    }

    pub(super) fn lint_retry(&mut self, node: &Node, what: &str) {
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                format!("`retry` of {what} must be a mapping like `{{ attempts: 3, delay: 10s }}`"),
            );
            return;
        };
        self.check_keys(map, field_names::<Retry>(), &format!("`retry` of {what}"));
        if map.get_node("attempts").is_none() {
            self.error(
                &self.map_span(map),
                format!("`retry` of {what} needs `attempts`"),
            );
        }
        self.int_in(map, "attempts", MAX_ATTEMPTS);
        self.duration_value(map, "delay");
        if let Some(node) = map.get_node("backoff") {
            if let Some(s) = self.scalar(node, "backoff", "a number") {
                match s.as_f64() {
                    Some(f) if (1.0..=100.0).contains(&f) => {}
                    _ => self.error(
                        s.span(),
                        format!(
                            "`backoff` must be a number from 1.0 (constant delay) to 100, not `{}`",
                            s.as_str()
                        ),
                    ),
                }
            }
        }
    }

    pub(super) fn lint_gate(&mut self, node: &Node, what: &str) {
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                format!("`gate` of {what} must be a mapping with at least a `prompt`"),
            );
            return;
        };
        let gate_what = format!("the gate of {what}");
        self.check_keys(map, field_names::<Gate>(), &gate_what);
        if map.get_node("prompt").is_none() {
            self.error(
                &self.map_span(map),
                format!("{gate_what} needs a `prompt` saying what the signer confirms"),
            );
        }
        self.string_value(map, "prompt");
        self.enum_value(map, "role", &["trainee", "operator", "supervisor"]);
        self.enum_value(map, "evidence", &["required", "optional"]);
        self.enum_value(map, "on_timeout", &["reject", "abort"]);
        self.bool_value(map, "four_eyes");
        self.int_in(map, "min_approvals", MAX_APPROVALS);
        self.nonzero_duration(map, "timeout");
        self.string_list(map, "approvers");
        for (shown, span) in self.string_list(map, "show") {
            if !self.main_order.contains(&shown) {
                let hint = did_you_mean(&shown, self.main_order.iter().map(String::as_str));
                self.error(
                    &span,
                    format!("{gate_what} shows step `{shown}`, which is not an earlier step{hint}"),
                );
            }
        }
    }
}
