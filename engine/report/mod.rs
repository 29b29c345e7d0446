//! Reports, rendered with tera from the journal alone: the audit report of a run (HTML,
//! Markdown, JSON, JUnit XML) and the printable checklist of a runbook (Markdown, HTML).
//!
//! The templates live in `reports/` and are compiled into the binary; a folder of templates
//! with the same names (`reports_dir` in the config) or a single `--template FILE` overrides
//! them. Filters are registered in one place, one small function each.

use std::collections::HashMap;
use std::path::Path;

use tera::{Context, Tera};

use crate::error::{Error, Result};

mod filters;
mod run_report;
mod runbook_doc;
pub mod text;

pub use run_report::{RunContext, RunReport};
pub use runbook_doc::RunbookDoc;

/// The version of the JSON report's schema (documented in the README). 2: `run.steps` is
/// gone (the steps are `steps`), `run.status` says `interrupted`, steps not reached are
/// listed, and `counts` and `totals` count the same steps.
pub const SCHEMA_VERSION: u32 = 2;

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
        filters::register_filters(&mut tera);
        let mut files = HashMap::new();
        for (name, text) in BUILT_IN {
            let override_path = dir.map(|d| d.join(name)).filter(|p| p.is_file());
            let text = match &override_path {
                Some(path) => read_template(path)?,
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
        let text = read_template(path)?;
        let name = format.run_template();
        self.tera
            .add_raw_template(name, &text)
            .map_err(|e| template_error(name, Some(path), &e))?;
        self.files.insert(name.to_string(), path.to_path_buf());
        Ok(())
    }

    pub fn render_run(&self, report: &RunReport, format: Format) -> Result<String> {
        if format == Format::Json {
            // JSON escapes every control character but DEL: written as `\u007f`, the report
            // stays valid JSON when the terminal's escaping shows it.
            return serde_json::to_string_pretty(report)
                .map(|json| json.replace('\u{7f}', "\\u007f"))
                .map_err(|e| Error::Encode {
                    what: "the JSON report",
                    problem: e.to_string(),
                });
        }
        let mut value = serde_json::to_value(report).map_err(|e| Error::Encode {
            what: "the report context",
            problem: e.to_string(),
        })?;
        // What a terminal, a browser or an XML reader would obey or refuse is shown instead.
        printable_everywhere(&mut value);
        let context = Context::from_value(value).map_err(|e| Error::Encode {
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

/// Every string in `value`, keys included, with its control characters and bidirectional
/// marks escaped (`\x1b`): HTML and XML escaping leave them as they are, and XML 1.0 does
/// not even allow most of them.
fn printable_everywhere(value: &mut serde_json::Value) {
    use serde_json::Value;
    use std::borrow::Cow;
    match value {
        Value::String(s) => {
            if let Cow::Owned(escaped) = crate::printable::escape(s) {
                *s = escaped;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(printable_everywhere),
        Value::Object(map) => {
            map.values_mut().for_each(printable_everywhere);
            let unsafe_key = |k: &String| matches!(crate::printable::escape(k), Cow::Owned(_));
            if map.keys().any(unsafe_key) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (crate::printable::escape(&k).into_owned(), v))
                    .collect();
            }
        }
        _ => {}
    }
}

/// A template file: a regular file of at most 1 MiB of UTF-8 text.
fn read_template(path: &Path) -> Result<String> {
    let bytes = crate::sys::files::read_capped(path, crate::sys::files::MAX_SOURCE_BYTES)
        .map_err(|problem| Error::file(path, problem.describe("the template")))?;
    String::from_utf8(bytes).map_err(|_| Error::file(path, "the template is not UTF-8 text"))
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
