//! Reports, rendered with tera from the journal alone: the audit report of a run (HTML,
//! Markdown, JSON, JUnit XML) and the printable checklist of a runbook (Markdown, HTML).
//!
//! The templates live in `reports/` and are compiled into the binary; a folder of templates
//! with the same names (`reports_dir` in the config) or a single `--template FILE` overrides
//! them. Filters are registered in one place, one small function each.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};
use tera::{Context, Tera};

use crate::error::{Error, Result};
use crate::journal::event::{Phase, StepStatus};
use crate::journal::view::{RunView, StepView};
use crate::journal::ChainStatus;
use crate::runbook::plan::{Expectation, Plan, PlannedStep, ScriptSource, StepKind};
use crate::runbook::review::{self, ReviewStatus};

/// The version of the JSON report's schema (documented in the README).
pub const SCHEMA_VERSION: u32 = 1;

const BUILT_IN: &[(&str, &str)] = &[
    ("run.html", include_str!("../../reports/run.html")),
    ("run.md", include_str!("../../reports/run.md")),
    ("junit.xml", include_str!("../../reports/junit.xml")),
    ("runbook.html", include_str!("../../reports/runbook.html")),
    ("runbook.md", include_str!("../../reports/runbook.md")),
    ("index.html", include_str!("../../reports/index.html")),
    ("index.md", include_str!("../../reports/index.md")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Json,
    Junit,
}

impl Format {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "html" => Ok(Format::Html),
            "md" | "markdown" => Ok(Format::Markdown),
            "json" => Ok(Format::Json),
            "junit" | "xml" => Ok(Format::Junit),
            other => Err(Error::UnknownReportFormat {
                name: other.to_string(),
            }),
        }
    }

    /// From a file name: `.html`, `.md`, `.json`, `.xml`.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("html" | "htm") => Ok(Format::Html),
            Some("md" | "markdown") => Ok(Format::Markdown),
            Some("json") => Ok(Format::Json),
            Some("xml") => Ok(Format::Junit),
            _ => Err(Error::ReportFormatUnknown {
                path: path.to_path_buf(),
            }),
        }
    }

    fn run_template(self) -> &'static str {
        match self {
            Format::Html => "run.html",
            Format::Markdown | Format::Json => "run.md",
            Format::Junit => "junit.xml",
        }
    }
}

/// Everything a run report shows, from the journal alone. Serialized as the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub generated_at: String,
    pub run: RunView,
    pub duration_ms: Option<i64>,
    pub counts: Map<String, Value>,
    pub expectations: Expectations,
    pub totals: Totals,
    pub steps: Vec<StepReport>,
    pub chain: ChainStatus,
}

/// Test-report totals (JUnit): every step is a test case.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Expectations {
    pub passed: usize,
    pub total: usize,
}

/// One step as reported: its record, and what is derived from it.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    #[serde(flatten)]
    pub step: StepView,
    pub status_name: String,
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub rollback: bool,
    pub interrupted: bool,
    pub seconds: f64,
}

fn millis_between(start: &str, end: Option<&str>) -> Option<i64> {
    let start = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(end?).ok()?;
    Some((end - start).num_milliseconds())
}

impl RunReport {
    pub fn new(mut run: RunView, chain: ChainStatus) -> Self {
        let mut counts = Map::new();
        let mut steps = Vec::new();
        for (i, s) in run.steps.iter().enumerate() {
            let interrupted = s.status.is_none()
                && run.steps[i + 1..]
                    .iter()
                    .any(|l| l.id == s.id && l.phase == s.phase);
            let status_name = match s.status {
                Some(status) => status.name().to_string(),
                None if interrupted => "interrupted".into(),
                None if run.paused.as_ref().is_some_and(|p| p.step == s.id) => "waiting".into(),
                None => "running".into(),
            };
            if s.kind != "parallel" && !interrupted {
                let n = counts
                    .get(&status_name)
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                counts.insert(status_name.clone(), Value::from(n + 1));
            }
            let duration_ms = millis_between(&s.started_at, s.finished_at.as_deref());
            steps.push(StepReport {
                seconds: duration_ms.unwrap_or(0) as f64 / 1000.0,
                duration_ms,
                exit_code: s.attempts.last().and_then(|a| a.exit_code),
                rollback: s.phase == Phase::Rollback,
                interrupted,
                status_name,
                step: s.clone(),
            });
        }
        let count = |names: &[&str]| {
            steps
                .iter()
                .filter(|s| names.contains(&s.status_name.as_str()))
                .count()
        };
        let duration_ms = millis_between(&run.started_at, run.finished_at.as_deref());
        let totals = Totals {
            tests: steps.len(),
            failures: count(&["failed"]),
            errors: count(&["rejected", "aborted", "interrupted"]),
            skipped: count(&["skipped", "would-run", "waiting", "running"]),
            seconds: duration_ms.unwrap_or(0) as f64 / 1000.0,
        };
        let with_expectation: Vec<bool> = run
            .steps
            .iter()
            .filter_map(|s| s.expectation.as_ref().map(|e| e.passed))
            .collect();
        // The steps appear once, enriched, at the top level of the report.
        run.steps.clear();
        Self {
            schema_version: SCHEMA_VERSION,
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration_ms,
            totals,
            expectations: Expectations {
                passed: with_expectation.iter().filter(|p| **p).count(),
                total: with_expectation.len(),
            },
            counts,
            steps,
            chain,
            run,
        }
    }

    pub fn failed_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.step.status == Some(StepStatus::Failed))
            .count()
    }
}

/// The templates, built in or overridden.
pub struct Renderer {
    tera: Tera,
    /// Templates read from files, by name, so that errors name the file.
    files: HashMap<String, std::path::PathBuf>,
}

impl Renderer {
    /// The built-in templates, each replaced by a file of the same name in `dir` if it has one.
    pub fn new(dir: Option<&Path>) -> Result<Self> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![".html", ".xml"]);
        register_filters(&mut tera);
        let mut files = HashMap::new();
        for (name, text) in BUILT_IN {
            let override_path = dir.map(|d| d.join(name)).filter(|p| p.is_file());
            let text = match &override_path {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| Error::file(path, format!("cannot read the template: {e}")))?,
                None => text.to_string(),
            };
            tera.add_raw_template(name, &text)
                .map_err(|e| template_error(name, override_path.as_deref(), &e))?;
            if let Some(path) = override_path {
                files.insert(name.to_string(), path);
            }
        }
        Ok(Self { tera, files })
    }

    /// Replaces the template a format renders with the file at `path`.
    pub fn override_template(&mut self, format: Format, path: &Path) -> Result<()> {
        if format == Format::Json {
            return Err(Error::TemplateForJson);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::file(path, format!("cannot read the template: {e}")))?;
        let name = format.run_template();
        self.tera
            .add_raw_template(name, &text)
            .map_err(|e| template_error(name, Some(path), &e))?;
        self.files.insert(name.to_string(), path.to_path_buf());
        Ok(())
    }

    pub fn render_run(&self, report: &RunReport, format: Format) -> Result<String> {
        if format == Format::Json {
            return serde_json::to_string_pretty(report).map_err(|e| Error::Encode {
                what: "the JSON report",
                problem: e.to_string(),
            });
        }
        let context = Context::from_serialize(report).map_err(|e| Error::Encode {
            what: "the report context",
            problem: e.to_string(),
        })?;
        self.render(format.run_template(), &context)
    }

    pub fn render_runbook(&self, doc: &RunbookDoc, format: Format) -> Result<String> {
        let context = Context::from_serialize(doc).map_err(|e| Error::Encode {
            what: "the document context",
            problem: e.to_string(),
        })?;
        self.render(
            if format == Format::Html {
                "runbook.html"
            } else {
                "runbook.md"
            },
            &context,
        )
    }

    pub fn render_index(&self, docs: &[RunbookDoc], format: Format) -> Result<String> {
        let mut context = Context::new();
        context.insert("runbooks", docs);
        context.insert(
            "generated_at",
            &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        self.render(
            if format == Format::Html {
                "index.html"
            } else {
                "index.md"
            },
            &context,
        )
    }

    fn render(&self, name: &str, context: &Context) -> Result<String> {
        self.tera
            .render(name, context)
            .map_err(|e| template_error(name, self.files.get(name).map(|p| p.as_path()), &e))
    }
}

fn template_error(name: &str, path: Option<&Path>, error: &tera::Error) -> Error {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let place = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("template {name}"));
    Error::Template { place, message }
}

/// The template filters, one small function each.
fn register_filters(tera: &mut Tera) {
    tera.register_filter("duration", duration_filter);
    tera.register_filter("short", short_filter);
    tera.register_filter("symbol", symbol_filter);
    tera.register_filter("text", text_filter);
    tera.register_filter("md_cell", md_cell_filter);
}

/// `{{ text | md_cell }}`: safe inside a Markdown table cell or inline code: no pipes, no
/// line breaks, no raw HTML.
fn md_cell_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let text = crate::runbook::params::value_text(value);
    let cell = text
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace("\r\n", " ↵ ")
        .replace('\n', " ↵ ");
    Ok(Value::from(cell))
}

/// `{{ ms | duration }}`: 850ms, 12.3s, 4m05s.
fn duration_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let ms = value
        .as_i64()
        .or_else(|| value.as_f64().map(|f| f as i64))
        .unwrap_or(0)
        .max(0);
    Ok(Value::from(crate::runbook::duration::format_duration(
        std::time::Duration::from_millis(ms as u64),
    )))
}

/// `{{ hash | short }}`: the first 12 characters.
fn short_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let text = value.as_str().unwrap_or_default();
    Ok(Value::from(text.chars().take(12).collect::<String>()))
}

/// `{{ status | symbol }}`: ✓ ✗ - ~ ! for people and for greyscale print.
fn symbol_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let symbol = match value.as_str().unwrap_or_default() {
        "succeeded" => "✓",
        "failed" => "✗",
        "skipped" => "–",
        "would-run" => "~",
        "rejected" | "aborted" => "!",
        "interrupted" => "↯",
        _ => "…",
    };
    Ok(Value::from(symbol))
}

/// `{{ value | text }}`: strings as they are, anything else as JSON.
fn text_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::from(crate::runbook::params::value_text(value)))
}

// ----- runbook documents ---------------------------------------------------------------------

/// A runbook as a printable checklist.
#[derive(Debug, Clone, Serialize)]
pub struct RunbookDoc {
    pub id: String,
    pub title: String,
    pub version: u32,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub risk: String,
    pub kind: String,
    pub change: String,
    pub window: Option<String>,
    pub review_every: Option<String>,
    pub last_reviewed: Option<String>,
    pub review_due: Option<String>,
    pub review_overdue: bool,
    pub qualification: Option<u32>,
    pub content_hash: String,
    pub params: Vec<ParamDoc>,
    pub steps: Vec<StepDoc>,
    pub rollback: Vec<StepDoc>,
    pub file: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamDoc {
    pub name: String,
    pub kind: String,
    pub required: bool,
    pub default: Option<String>,
    pub allowed: Option<String>,
    pub pattern: Option<String>,
    pub secret: bool,
    pub env: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepDoc {
    pub number: String,
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub kind: String,
    /// The command, script or instructions, as a person reads them.
    pub body: String,
    pub notes: Vec<String>,
    pub gate_role: Option<String>,
    pub signatures: u32,
    pub members: Vec<StepDoc>,
}

impl RunbookDoc {
    pub fn new(plan: &Plan) -> Self {
        let rb = &plan.runbook;
        let review = ReviewStatus::of(rb, review::today());
        let params = rb
            .params
            .iter()
            .map(|(name, spec)| ParamDoc {
                name: name.clone(),
                kind: spec.kind.name().into(),
                required: spec.required,
                default: spec.default.as_ref().map(yaml_text),
                allowed: spec
                    .choices
                    .as_ref()
                    .map(|c| c.iter().map(yaml_text).collect::<Vec<_>>().join(", ")),
                pattern: spec.pattern.clone(),
                secret: spec.secret,
                env: spec.env.clone(),
                description: spec.description.clone(),
            })
            .collect();
        Self {
            id: rb.runbook.clone(),
            title: rb.title.clone(),
            version: rb.version,
            owner: rb.owner.clone(),
            description: rb.description.clone(),
            tags: rb.tags.clone(),
            risk: rb.risk.name().to_string(),
            kind: rb.kind.name().to_string(),
            change: rb.change.name().to_string(),
            window: rb.window.clone(),
            review_every: rb.review_every.clone(),
            last_reviewed: rb.last_reviewed.clone(),
            review_due: review.due.map(|d| d.to_string()),
            review_overdue: review.overdue,
            qualification: rb.qualification.as_ref().map(|q| q.supervised_runs),
            content_hash: plan.source.content_hash.clone(),
            params,
            steps: plan
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| step_doc(s, (i + 1).to_string()))
                .collect(),
            rollback: plan
                .rollback
                .iter()
                .rev()
                .enumerate()
                .map(|(i, s)| step_doc(s, format!("R{}", i + 1)))
                .collect(),
            file: plan
                .source
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

fn yaml_text(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn step_doc(step: &PlannedStep, number: String) -> StepDoc {
    let mut notes = Vec::new();
    if let Some(when) = &step.when {
        notes.push(format!("only when `{}`", when.text.trim()));
    }
    if step.readonly {
        notes.push("read-only (runs in a dry run)".into());
    }
    if step.idempotent {
        notes.push("idempotent (safe to run again)".into());
    }
    if step.retry.attempts > 1 {
        notes.push(format!(
            "up to {} attempts, {} apart{}",
            step.retry.attempts,
            crate::runbook::duration::format_duration(step.retry.delay),
            if step.retry.backoff > 1.0 {
                format!(", backoff ×{}", step.retry.backoff)
            } else {
                String::new()
            }
        ));
    }
    if matches!(step.kind, StepKind::Rhai { .. } | StepKind::Shell { .. }) {
        notes.push(format!(
            "timeout {}",
            crate::runbook::duration::format_duration(step.timeout)
        ));
    }
    match step.on_failure {
        crate::runbook::OnFailure::Continue => notes.push("on failure: continue".into()),
        crate::runbook::OnFailure::Rollback => notes.push("on failure: roll back".into()),
        crate::runbook::OnFailure::Abort => {}
    }
    if let Some(undo) = &step.undo {
        notes.push(format!("undoes step `{undo}`"));
    }
    match &step.expect {
        Some(Expectation::Check(e)) => notes.push(format!("expect `{}`", e.text.trim())),
        Some(Expectation::Observe(text)) => notes.push(format!("expected result: {text}")),
        None => {}
    }
    let (body, gate_role, signatures, members) = match &step.kind {
        StepKind::Shell { command } => (command.trim().to_string(), None, 0, Vec::new()),
        StepKind::Rhai {
            source: ScriptSource::Inline(text),
            ..
        } => (text.trim().to_string(), None, 0, Vec::new()),
        StepKind::Rhai {
            source: ScriptSource::File(file),
            ..
        } => (format!("scripts/{file}"), None, 0, Vec::new()),
        StepKind::Manual { instructions } => (instructions.trim().to_string(), None, 0, Vec::new()),
        StepKind::Gate(g) => {
            let mut policy = Vec::new();
            if g.four_eyes {
                policy.push("four eyes: not the person running it".to_string());
            }
            if !g.approvers.is_empty() {
                policy.push(format!("approvers: {}", g.approvers.join(", ")));
            }
            if g.evidence == crate::runbook::Evidence::Required {
                policy.push("evidence required".into());
            }
            if let Some(t) = &g.timeout {
                policy.push(format!("times out after {t} ({})", g.on_timeout.name()));
            }
            notes.extend(policy);
            (
                g.prompt.trim().to_string(),
                Some(g.role.name().to_string()),
                g.min_approvals.max(1),
                Vec::new(),
            )
        }
        StepKind::Parallel(members) => (
            format!("{} steps at the same time", members.len()),
            None,
            0,
            members
                .iter()
                .enumerate()
                .map(|(i, m)| step_doc(m, format!("{number}.{}", i + 1)))
                .collect(),
        ),
    };
    StepDoc {
        id: step.id.clone(),
        name: step.name.clone(),
        description: step.description.clone(),
        kind: step.kind.name().into(),
        body,
        notes,
        gate_role,
        signatures,
        members,
        number,
    }
}
