//! The analyzer: turns a runbook file into a [`Plan`] or into every problem it has, each at
//! its `file:line:col`. It runs for `opsbook check` and before every run, so a runbook with a
//! mistake fails before step 1.
//!
//! It walks the YAML with positions (marked-yaml) to find all problems at once — unknown keys
//! with suggestions, wrong types, bad durations, duplicate ids, steps with zero or two kinds,
//! defaults that break their own type or pattern, Rhai syntax errors mapped into the YAML,
//! missing script files, placeholders that name nothing — and only then builds the model with
//! serde_yaml.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, Node, Span};
use regex::Regex;
use rhai::{Engine, Position, AST};

use crate::runbook::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
use crate::runbook::duration::parse_duration;
use crate::runbook::plan::{
    Expectation, Expression, Plan, PlannedStep, RetryPolicy, ScriptSource, StepKind,
    DEFAULT_STEP_TIMEOUT,
};
use crate::runbook::review;
use crate::runbook::template::{self, Placeholder};
use crate::runbook::{
    field_names, Gate, ParamSpec, ParamType, Retry, Runbook, SourceFile, Step, STEP_KINDS,
};
use crate::script;

/// The result of analyzing one file: a plan when it has no errors, and every diagnostic.
pub struct Analysis {
    pub plan: Option<Plan>,
    pub diagnostics: Diagnostics,
}

/// Reads and analyzes the runbook at `path`.
pub fn analyze_file(path: &Path, scripts_dir: &Path, engine: &Engine) -> Analysis {
    match SourceFile::read(path) {
        Ok(source) => analyze_source(source, scripts_dir, engine),
        Err(e) => Analysis {
            plan: None,
            diagnostics: Diagnostics(vec![Diagnostic::error(path, 0, 0, file_error_text(&e))]),
        },
    }
}

fn file_error_text(error: &crate::error::Error) -> String {
    match error {
        crate::error::Error::File { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

pub fn analyze_source(source: SourceFile, scripts_dir: &Path, engine: &Engine) -> Analysis {
    let mut linter = Linter::new(&source, scripts_dir, engine);
    let root = match marked_yaml::parse_yaml_with_options(
        0,
        &source.text,
        marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true),
    ) {
        Ok(root) => root,
        Err(e) => {
            linter.load_error(&e);
            return linter.finish_without_plan();
        }
    };
    let Some(map) = root.as_mapping() else {
        linter.error(
            root.span(),
            "a runbook is a YAML mapping (`runbook: id`, `title:`, `steps:` ...)",
        );
        return linter.finish_without_plan();
    };
    linter.lint_runbook(map);
    if linter.diagnostics.has_errors() {
        return linter.finish_without_plan();
    }
    let runbook: Runbook = match serde_yaml::from_str(&source.text) {
        Ok(runbook) => runbook,
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            linter.diagnostics.push(
                Diagnostic::error(&source.path, line, column, e.to_string())
                    .with_source(&source.text),
            );
            return linter.finish_without_plan();
        }
    };
    let plan = linter.build_plan(runbook);
    Analysis {
        plan: Some(plan),
        diagnostics: linter.diagnostics,
    }
}

/// Where a scalar's content sits in the file, to map an offset inside it to a line and column.
#[derive(Clone, Copy)]
struct ScalarLocation {
    line: usize,
    column: usize,
    /// A `|` or `>` block: content starts on the next line at this indentation.
    block_indent: Option<usize>,
    quoted: bool,
}

struct Linter<'a> {
    source: &'a SourceFile,
    scripts_dir: &'a Path,
    engine: &'a Engine,
    diagnostics: Diagnostics,
    lines: Vec<&'a str>,
    params: Vec<String>,
    /// Every step id with where it was first defined.
    step_ids: HashMap<String, (usize, usize)>,
    /// Ids of main steps, in order, to tell earlier steps from later ones.
    main_order: Vec<String>,
    compiled: HashMap<(String, &'static str), AST>,
    id_pattern: Regex,
    /// `undo:` values of rollback steps, checked once every step is known.
    undos: Vec<(String, Span)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Steps,
    ParallelGroup,
    Rollback,
}

impl<'a> Linter<'a> {
    fn new(source: &'a SourceFile, scripts_dir: &'a Path, engine: &'a Engine) -> Self {
        Self {
            source,
            scripts_dir,
            engine,
            diagnostics: Diagnostics::default(),
            lines: source.text.lines().collect(),
            params: Vec::new(),
            step_ids: HashMap::new(),
            main_order: Vec::new(),
            compiled: HashMap::new(),
            undos: Vec::new(),
            // A literal pattern, exercised by every test that loads a runbook.
            id_pattern: Regex::new("^[a-z0-9][a-z0-9_-]*$").expect("valid regex literal"),
        }
    }

    fn finish_without_plan(mut self) -> Analysis {
        self.diagnostics.sort();
        Analysis {
            plan: None,
            diagnostics: self.diagnostics,
        }
    }

    fn at(span: &Span) -> (usize, usize) {
        span.start()
            .map(|m| (m.line(), m.column()))
            .unwrap_or((0, 0))
    }

    fn error_at(&mut self, (line, column): (usize, usize), message: impl Into<String>) {
        self.diagnostics.push(
            Diagnostic::error(&self.source.path, line, column, message)
                .with_source(&self.source.text),
        );
    }

    fn warning_at(&mut self, (line, column): (usize, usize), message: impl Into<String>) {
        self.diagnostics.push(
            Diagnostic::warning(&self.source.path, line, column, message)
                .with_source(&self.source.text),
        );
    }

    fn error(&mut self, span: &Span, message: impl Into<String>) {
        self.error_at(Self::at(span), message);
    }

    fn load_error(&mut self, error: &LoadError) {
        let (marker, message) = match error {
            LoadError::UnexpectedAnchor(m) => (
                Some(*m),
                "YAML anchors and aliases (`&name`, `*name`) are not allowed in runbooks; write the value out".to_string(),
            ),
            LoadError::UnexpectedTag(m) => (
                Some(*m),
                "YAML tags (`!tag`) are not allowed in runbooks".to_string(),
            ),
            LoadError::MappingKeyMustBeScalar(m) => {
                (Some(*m), "a mapping key must be a plain name".to_string())
            }
            LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => (
                Some(*m),
                "a runbook is a YAML mapping (`runbook: id`, `title:`, `steps:` ...)".to_string(),
            ),
            LoadError::ScanError(m, e) => (Some(*m), format!("YAML syntax error: {}", scan_error_text(e))),
            LoadError::DuplicateKey(inner) => {
                let first = Self::at(inner.prev_key.span());
                (
                    inner.key.span().start().copied(),
                    format!(
                        "duplicate key `{}` (first given at line {}); keep one",
                        inner.key.as_str(),
                        first.0
                    ),
                )
            }
            #[allow(unreachable_patterns)]
            other => (None, other.to_string()),
        };
        let position = marker.map(|m| (m.line(), m.column())).unwrap_or((0, 0));
        self.error_at(position, message);
    }

    // ----- keys and scalar types -------------------------------------------------------

    fn check_keys(&mut self, map: &MarkedMappingNode, known: &[&str], what: &str) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = did_you_mean(key.as_str(), known.iter().copied());
                let hint = if hint.is_empty() {
                    format!("; {what} takes: {}", known.join(", "))
                } else {
                    hint
                };
                self.error(
                    key.span(),
                    format!("unknown key `{}` in {what}{hint}", key.as_str()),
                );
            }
        }
    }

    /// Where a mapping starts, for errors about the whole mapping: its first key (marked-yaml
    /// starts a block mapping's span at the first `:`).
    fn map_span(&self, map: &MarkedMappingNode) -> Span {
        let (line, column) = Self::at(map.span());
        let flow = self
            .lines
            .get(line.saturating_sub(1))
            .and_then(|l| l.chars().nth(column.saturating_sub(1)))
            == Some('{');
        match map.keys().next() {
            Some(first) if !flow => *first.span(),
            _ => *map.span(),
        }
    }

    fn key_span(map: &MarkedMappingNode, key: &str) -> Span {
        map.keys()
            .find(|k| k.as_str() == key)
            .map(|k| *k.span())
            .unwrap_or(*map.span())
    }

    fn scalar<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
        expected: &str,
    ) -> Option<&'n MarkedScalarNode> {
        match node.as_scalar() {
            Some(s) => Some(s),
            None => {
                self.error(node.span(), format!("`{key}` must be {expected}"));
                None
            }
        }
    }

    fn string_value(&mut self, map: &MarkedMappingNode, key: &str) -> Option<String> {
        let node = map.get_node(key)?;
        self.scalar(node, key, "text")
            .map(|s| s.as_str().to_string())
    }

    fn bool_value(&mut self, map: &MarkedMappingNode, key: &str) {
        if let Some(node) = map.get_node(key) {
            if let Some(s) = self.scalar(node, key, "true or false") {
                if s.as_bool().is_none() {
                    self.error(
                        s.span(),
                        format!("`{key}` must be true or false, not `{}`", s.as_str()),
                    );
                }
            }
        }
    }

    fn enum_value(&mut self, map: &MarkedMappingNode, key: &str, allowed: &[&str]) {
        if let Some(node) = map.get_node(key) {
            let expected = format!("one of {}", allowed.join(", "));
            if let Some(s) = self.scalar(node, key, &expected) {
                if !allowed.contains(&s.as_str()) {
                    let hint = did_you_mean(s.as_str(), allowed.iter().copied());
                    self.error(
                        s.span(),
                        format!("`{key}` is `{}`; it must be {expected}{hint}", s.as_str()),
                    );
                }
            }
        }
    }

    fn positive_int(&mut self, map: &MarkedMappingNode, key: &str) {
        if let Some(node) = map.get_node(key) {
            if let Some(s) = self.scalar(node, key, "a whole number") {
                match s.as_i64() {
                    Some(n) if n >= 1 && n <= u32::MAX as i64 => {}
                    _ => self.error(
                        s.span(),
                        format!(
                            "`{key}` must be a whole number of at least 1, not `{}`",
                            s.as_str()
                        ),
                    ),
                }
            }
        }
    }

    fn duration_value(&mut self, map: &MarkedMappingNode, key: &str) {
        if let Some(node) = map.get_node(key) {
            if let Some(s) = self.scalar(node, key, "a duration like `30s`, `10m` or `2h`") {
                if let Err(message) = parse_duration(s.as_str()) {
                    self.error(s.span(), format!("`{key}`: {message}"));
                }
            }
        }
    }

    fn string_list(&mut self, map: &MarkedMappingNode, key: &str) -> Vec<(String, Span)> {
        let Some(node) = map.get_node(key) else {
            return Vec::new();
        };
        let Some(seq) = node.as_sequence() else {
            self.error(
                node.span(),
                format!("`{key}` must be a list, like `[a, b]`"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in seq.iter() {
            if let Some(s) = self.scalar(item, key, "a list of names") {
                out.push((s.as_str().to_string(), *s.span()));
            }
        }
        out
    }

    // ----- the runbook -------------------------------------------------------------------

    fn lint_runbook(&mut self, map: &MarkedMappingNode) {
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
        self.duration_value(map, "review_every");
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

    fn lint_review(&mut self, map: &MarkedMappingNode) {
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

    // ----- params --------------------------------------------------------------------------

    fn lint_params(&mut self, node: &Node) {
        let Some(map) = node.as_mapping() else {
            self.error(node.span(), "`params` must be a mapping of parameter names");
            return;
        };
        let name_pattern = Regex::new("^[a-z_][a-z0-9_]*$").expect("valid regex literal");
        for (name, spec) in map.iter() {
            self.params.push(name.as_str().to_string());
            if !name_pattern.is_match(name.as_str()) {
                self.error(
                    name.span(),
                    format!(
                        "parameter name `{}` must be lower-case letters, digits and `_`",
                        name.as_str()
                    ),
                );
            }
            self.lint_param(name.as_str(), spec);
        }
    }

    fn lint_param(&mut self, name: &str, node: &Node) {
        let Some(map) = node.as_mapping() else {
            self.error(node.span(), format!("parameter `{name}` must be a mapping like `{{ type: string, required: true }}`"));
            return;
        };
        let what = format!("parameter `{name}`");
        self.check_keys(map, field_names::<ParamSpec>(), &what);
        self.enum_value(map, "type", &["string", "int", "float", "bool"]);
        self.bool_value(map, "required");
        self.bool_value(map, "secret");
        self.string_value(map, "description");
        let kind = match map.get_scalar("type").map(|t| t.as_str()) {
            Some("int") => ParamType::Int,
            Some("float") => ParamType::Float,
            Some("bool") => ParamType::Bool,
            _ => ParamType::String,
        };
        let secret = map
            .get_scalar("secret")
            .and_then(|s| s.as_bool())
            .unwrap_or(false);
        if let Some(env) = self.string_value(map, "env") {
            if env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.error(
                    &Self::key_span(map, "env"),
                    format!("`env` of {what} must be an environment variable name"),
                );
            }
        }
        let pattern = match (self.string_value(map, "pattern"), map.get_node("pattern")) {
            (Some(p), Some(node)) => {
                match Regex::new(&p) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        let first_line =
                            e.to_string().lines().last().unwrap_or_default().to_string();
                        self.error(node.span(), format!("`pattern` of {what} is not a valid regular expression: {first_line}"));
                        None
                    }
                }
            }
            _ => None,
        };
        let mut choices = Vec::new();
        if let Some(node) = map.get_node("enum") {
            match node.as_sequence() {
                Some(seq) if !seq.is_empty() => {
                    for item in seq.iter() {
                        if let Some(s) = self.scalar(item, "enum", "a list of values") {
                            if let Err(m) = check_typed(s, kind) {
                                self.error(s.span(), format!("`enum` value of {what}: {m}"));
                            }
                            choices.push(s.as_str().to_string());
                        }
                    }
                }
                _ => self.error(
                    node.span(),
                    format!("`enum` of {what} must be a non-empty list of allowed values"),
                ),
            }
        }
        if let Some(node) = map.get_node("default") {
            if secret {
                self.error(node.span(), format!("{what} is secret and cannot have a default; it comes from its `env` variable or a prompt"));
            } else if let Some(s) = self.scalar(node, "default", "a single value") {
                if let Err(m) = check_typed(s, kind) {
                    self.error(s.span(), format!("`default` of {what}: {m}"));
                } else if let Some(re) = &pattern {
                    if !re.is_match(s.as_str()) {
                        self.error(s.span(), format!("`default` of {what} is `{}`, which does not match its pattern `{}`", s.as_str(), re.as_str()));
                    }
                }
                if !choices.is_empty() && !choices.iter().any(|c| c == s.as_str()) {
                    self.error(s.span(), format!("`default` of {what} is `{}`, which is not one of its `enum` values ({})", s.as_str(), choices.join(", ")));
                }
            }
            if map.get_scalar("required").and_then(|r| r.as_bool()) == Some(true) {
                self.warning_at(
                    Self::at(node.span()),
                    format!("{what} is required and also has a default; the default is never used"),
                );
            }
        }
    }

    // ----- steps ---------------------------------------------------------------------------

    fn lint_steps(&mut self, node: &Node, section: Section, is_test: bool) {
        let Some(seq) = node.as_sequence() else {
            self.error(node.span(), "steps must be a list (`- id: ...`)");
            return;
        };
        for step in seq.iter() {
            self.lint_step(step, section, is_test);
        }
    }

    fn lint_step(&mut self, node: &Node, section: Section, is_test: bool) {
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
        self.duration_value(map, "timeout");
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

    fn lint_retry(&mut self, node: &Node, what: &str) {
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
        self.positive_int(map, "attempts");
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

    fn lint_gate(&mut self, node: &Node, what: &str) {
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
        self.positive_int(map, "min_approvals");
        self.duration_value(map, "timeout");
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

    /// Scripts, conditions and placeholders: compiled or resolved now, errors mapped into the YAML.
    fn lint_step_texts(&mut self, map: &MarkedMappingNode, id: &str, section: Section) {
        if let Some(node) = map.get_scalar("rhai") {
            let location = self.locate(node);
            match script::compile_script(self.engine, node.as_str()) {
                Ok(ast) => {
                    self.compiled.insert((id.to_string(), "rhai"), ast);
                }
                Err((message, pos)) => {
                    let pos = locate_import(node.as_str(), &message).unwrap_or(pos);
                    let at = self.map_position(location, node.as_str(), pos);
                    self.error_at(at, format!("Rhai error in step `{id}`: {message}"));
                }
            }
        }
        if let Some(node) = map.get_scalar("script") {
            self.lint_script_file(node, id);
        }
        for key in ["when", "expect"] {
            let Some(node) = map.get_scalar(key) else {
                continue;
            };
            if key == "expect" && map.get_node("manual").is_some() {
                continue; // a manual step's expectation is text for the operator
            }
            let location = self.locate(node);
            match script::compile_expression(self.engine, node.as_str()) {
                Ok(ast) => {
                    self.compiled.insert(
                        (
                            id.to_string(),
                            if key == "when" { "when" } else { "expect" },
                        ),
                        ast,
                    );
                }
                Err((message, pos)) => {
                    let at = self.map_position(location, node.as_str(), pos);
                    self.error_at(
                        at,
                        format!("Rhai error in `{key}` of step `{id}`: {message}"),
                    );
                }
            }
        }
        let gate_prompt = map.get_mapping("gate").and_then(|g| g.get_scalar("prompt"));
        let texts = [
            map.get_scalar("shell"),
            map.get_scalar("manual"),
            gate_prompt,
        ];
        for node in texts.into_iter().flatten() {
            self.lint_placeholders(node, id, section);
        }
    }

    fn lint_script_file(&mut self, node: &MarkedScalarNode, id: &str) {
        let name = node.as_str();
        let relative = Path::new(name);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            self.error(node.span(), format!("`script: {name}` must name a file inside the scripts folder, without `..` or a leading `/`"));
            return;
        }
        let path = self.scripts_dir.join(relative);
        let file = match SourceFile::read(&path) {
            Ok(file) => file,
            Err(e) => {
                let mut message = format!("step `{id}`: script `{name}`: {}", file_error_text(&e));
                if !path.exists() {
                    message = format!(
                        "step `{id}`: script file `{}` not found; scripts live in {}",
                        name,
                        self.scripts_dir.display()
                    );
                }
                self.error(node.span(), message);
                return;
            }
        };
        match script::compile_script(self.engine, &file.text) {
            Ok(ast) => {
                self.compiled.insert((id.to_string(), "script"), ast);
            }
            Err((message, pos)) => {
                let pos = locate_import(&file.text, &message).unwrap_or(pos);
                let line = pos.line().unwrap_or(0);
                self.diagnostics.push(
                    Diagnostic::error(
                        &path,
                        line,
                        pos.position().unwrap_or(1).max(1),
                        format!("Rhai error (script of step `{id}`): {message}"),
                    )
                    .with_source(&file.text),
                );
            }
        }
    }

    fn lint_placeholders(&mut self, node: &MarkedScalarNode, id: &str, section: Section) {
        let location = self.locate(node);
        for found in template::find(node.as_str()) {
            let at = self.map_offset(location, node.as_str(), found.start);
            match found.placeholder {
                Err(message) => self.error_at(at, message),
                Ok(Placeholder::Param(name)) if !self.params.contains(&name) => {
                    let hint = did_you_mean(&name, self.params.iter().map(String::as_str));
                    self.error_at(
                        at,
                        format!(
                            "`{{{{ params.{name} }}}}` names no parameter of this runbook{hint}"
                        ),
                    );
                }
                Ok(Placeholder::Var { step, .. }) => {
                    let earlier = match section {
                        Section::Rollback => self.main_order.contains(&step),
                        _ => self
                            .main_order
                            .iter()
                            .take_while(|s| *s != id)
                            .any(|s| *s == step),
                    };
                    if !earlier {
                        let hint = did_you_mean(&step, self.main_order.iter().map(String::as_str));
                        self.error_at(at, format!("`{{{{ vars.{step}.… }}}}` in step `{id}` names no earlier step{hint}"));
                    }
                }
                Ok(_) => {}
            }
        }
    }

    // ----- positions inside scalars -------------------------------------------------------

    fn locate(&self, node: &MarkedScalarNode) -> ScalarLocation {
        let (line, column) = Self::at(node.span());
        let text_line = self
            .lines
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or_default();
        let before: String = text_line.chars().take(column.saturating_sub(1)).collect();
        let first = text_line.chars().nth(column.saturating_sub(1));
        // marked-yaml starts a `|` or `>` block scalar at its first content line; the line
        // before it (skipping blank ones) ends with the block indicator.
        let indicator_above = self.lines[..line.saturating_sub(1).min(self.lines.len())]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| {
                let end = l
                    .trim_end()
                    .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
                end.ends_with('|') || end.ends_with('>')
            })
            .unwrap_or(false);
        let is_block = before.trim().is_empty() && indicator_above;
        ScalarLocation {
            line,
            column,
            block_indent: is_block.then(|| column.saturating_sub(1)),
            quoted: !is_block && matches!(first, Some('"') | Some('\'')),
        }
    }

    /// File position of a byte offset into a scalar's content.
    fn map_offset(&self, location: ScalarLocation, content: &str, offset: usize) -> (usize, usize) {
        let before = &content[..offset.min(content.len())];
        let content_line = before.matches('\n').count();
        let column_in_line = before
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .count();
        self.map_line_col(location, content_line, column_in_line)
    }

    /// File position of a Rhai position (1-based line and column) in a scalar's content.
    fn map_position(
        &self,
        location: ScalarLocation,
        _content: &str,
        pos: Position,
    ) -> (usize, usize) {
        let line = pos.line().unwrap_or(1).max(1) - 1;
        let column = pos.position().unwrap_or(1).max(1) - 1;
        self.map_line_col(location, line, column)
    }

    fn map_line_col(
        &self,
        location: ScalarLocation,
        content_line: usize,
        column: usize,
    ) -> (usize, usize) {
        match location.block_indent {
            Some(indent) => (location.line + content_line, indent + column + 1),
            None if content_line == 0 => (
                location.line,
                location.column + column + usize::from(location.quoted),
            ),
            None => (location.line, location.column),
        }
    }

    // ----- the plan ------------------------------------------------------------------------

    fn build_plan(&mut self, runbook: Runbook) -> Plan {
        let steps = runbook.steps.iter().map(|s| self.plan_step(s)).collect();
        let rollback = runbook.rollback.iter().map(|s| self.plan_step(s)).collect();
        Plan {
            source: self.source.clone(),
            runbook,
            steps,
            rollback,
            scripts_dir: self.scripts_dir.to_path_buf(),
        }
    }

    fn take_ast(&mut self, id: &str, key: &'static str) -> Arc<AST> {
        // Every script and expression was compiled by the lint pass, which found no errors.
        Arc::new(
            self.compiled
                .remove(&(id.to_string(), key))
                .unwrap_or_default(),
        )
    }

    fn plan_step(&mut self, step: &Step) -> PlannedStep {
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

/// Rhai reports a module that cannot be found without a position; find its `import`.
pub fn locate_import(script: &str, message: &str) -> Option<Position> {
    let marker = "module not found: ";
    let start = message.find(marker)? + marker.len();
    let name = message[start..].split([' ', '`']).next()?;
    for (i, line) in script.lines().enumerate() {
        if let Some(col) = line.find(&format!("\"{name}\"")) {
            if line[..col].contains("import") {
                let import_col = line.find("import").unwrap_or(col);
                return Some(Position::new((i + 1) as u16, (import_col + 1) as u16));
            }
        }
    }
    None
}

fn check_typed(s: &MarkedScalarNode, kind: ParamType) -> Result<(), String> {
    let ok = match kind {
        ParamType::String => true,
        ParamType::Int => s.as_i64().is_some(),
        ParamType::Float => s.as_f64().is_some(),
        ParamType::Bool => s.as_bool().is_some(),
    };
    if ok {
        Ok(())
    } else {
        let article = if kind == ParamType::Int { "an" } else { "a" };
        Err(format!("`{}` is not {article} {}", s.as_str(), kind.name()))
    }
}

fn scan_error_text(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    // yaml-rust appends "at byte N line L column C"; the diagnostic already says where.
    match text.find(" at byte ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
