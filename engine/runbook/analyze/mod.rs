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

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
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

mod fields;
mod params;
mod plan;
mod positions;
mod runbook;
mod scripts;
mod steps;

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
        crate::error::Error::File { problem, .. } => problem.clone(),
        other => other.to_string(),
    }
}

pub fn analyze_source(source: SourceFile, scripts_dir: &Path, engine: &Engine) -> Analysis {
    // Compiling resolves every import now: record which files the runbook uses.
    script::resolver::record_loads();
    let mut analysis = analyze_yaml(source, scripts_dir, engine);
    let sources = script::resolver::take_loads();
    if let Some(plan) = analysis.plan.as_mut() {
        plan.sources = sources;
    }
    analysis
}

fn analyze_yaml(source: SourceFile, scripts_dir: &Path, engine: &Engine) -> Analysis {
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
    /// For a block: the 1-based line of its first content line, blank ones included.
    block_first_line: usize,
    /// A `>` block: single line breaks fold into spaces.
    folded: bool,
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

#[cfg(test)]
mod tests;
