//! The top of a runbook: its fields, its kind, and its review schedule.

use super::*;

impl Linter<'_> {
    // ----- the runbook -------------------------------------------------------------------

    pub(super) fn lint_runbook(&mut self, map: &MarkedMappingNode) {
        self.check_keys(map, field_names::<Runbook>(), "the runbook");
        for required in ["runbook", "title", "steps"] {
            if map.get_node(required).is_none() {
                self.error(
                    &self.map_span(map),
                    format!("the runbook has no `{required}`; add it at the top level"),
                );
            }
        }
        if let Some(id) = self.string_value(map, "runbook") {
            let span = *map
                .get_node("runbook")
                .map(Node::span)
                .unwrap_or(map.span());
            if !self.id_pattern.is_match(&id) {
                self.error(
                    &span,
                    format!("runbook id `{id}` must be lower-case letters, digits, `-` and `_`"),
                );
            }
            let stem = self
                .source
                .path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if stem != id {
                self.error(&span, format!("runbook id `{id}` does not match the file name `{stem}`; rename one of them"));
            }
        }
        for key in ["title", "owner", "description", "window"] {
            self.string_value(map, key);
        }
        self.positive_int(map, "version");
        self.enum_value(map, "risk", &["low", "medium", "high"]);
        self.enum_value(map, "change", &["none", "required"]);
        self.enum_value(map, "kind", &["runbook", "test"]);
        self.string_list(map, "tags");
        self.nonzero_duration(map, "review_every");
        self.lint_review(map);

        if let Some(params) = map.get_node("params") {
            self.lint_params(params);
        }
        if let Some(node) = map.get_node("qualification") {
            match node.as_mapping() {
                Some(q) => {
                    self.check_keys(
                        q,
                        field_names::<crate::runbook::Qualification>(),
                        "`qualification`",
                    );
                    if q.get_node("supervised_runs").is_none() {
                        self.error(
                            &self.map_span(q),
                            "`qualification` needs `supervised_runs: N`",
                        );
                    }
                    self.positive_int(q, "supervised_runs");
                }
                None => self.error(
                    node.span(),
                    "`qualification` must be a mapping like `{ supervised_runs: 3 }`",
                ),
            }
        }
        let is_test = map
            .get_scalar("kind")
            .map(|k| k.as_str() == "test")
            .unwrap_or(false);
        if let Some(steps) = map.get_node("steps") {
            if steps.as_sequence().map(|s| s.is_empty()).unwrap_or(false) {
                self.error(
                    steps.span(),
                    "`steps` is empty; a runbook needs at least one step",
                );
            }
            self.lint_steps(steps, Section::Steps, is_test);
        }
        if let Some(rollback) = map.get_node("rollback") {
            self.lint_steps(rollback, Section::Rollback, is_test);
        }
        for (undo, span) in std::mem::take(&mut self.undos) {
            if !self.main_order.contains(&undo) {
                let hint = did_you_mean(&undo, self.main_order.iter().map(String::as_str));
                self.error(
                    &span,
                    format!("`undo: {undo}` names no step of this runbook{hint}"),
                );
            }
        }
    }

    pub(super) fn lint_review(&mut self, map: &MarkedMappingNode) {
        let Some(node) = map.get_node("last_reviewed") else {
            return;
        };
        let Some(s) = self.scalar(node, "last_reviewed", "a date like 2026-11-01") else {
            return;
        };
        let Some(date) = review::parse_date(s.as_str()) else {
            self.error(
                s.span(),
                format!(
                    "`last_reviewed` is `{}`; write the date as YYYY-MM-DD",
                    s.as_str()
                ),
            );
            return;
        };
        let every = map
            .get_scalar("review_every")
            .and_then(|e| parse_duration(e.as_str()).ok());
        if let Some(every) = every {
            let status = review::ReviewStatus::from_dates(date, every, review::today());
            if let (true, Some(due)) = (status.overdue, status.due) {
                self.warning_at(
                    Self::at(s.span()),
                    format!(
                        "review overdue: last reviewed {date}, due every {} (since {due}); review the runbook and update `last_reviewed`",
                        map.get_scalar("review_every").map(|e| e.as_str()).unwrap_or_default()
                    ),
                );
            }
        }
    }
}
