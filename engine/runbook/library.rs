//! The runbook library: finding a runbook by id or path (with "did you mean"), listing the
//! library, and loading a runbook into a checked `Plan`. The command line, the daemon and
//! schedules all find runbooks here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::config::Settings;
use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics, Severity};
use crate::error::{Error, Result};
use crate::runbook::analyze;
use crate::runbook::plan::Plan;
use crate::runbook::review::{self, ReviewStatus};
use crate::script;

/// A runbook argument: a path when it looks like one, else an id in the library.
pub fn resolve(settings: &Settings, name: &str) -> Result<PathBuf> {
    let looks_like_path = name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml");
    if looks_like_path {
        let path = PathBuf::from(name);
        if !path.is_file() {
            return Err(Error::file(&path, "no such runbook file"));
        }
        return Ok(path);
    }
    for ext in ["yaml", "yml"] {
        let path = settings.runbooks.join(format!("{name}.{ext}"));
        if path.is_file() {
            return Ok(path);
        }
    }
    let ids: Vec<String> = runbook_files(&settings.runbooks)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .collect();
    let suggestion = match did_you_mean(name, ids.iter().map(String::as_str)) {
        s if !s.is_empty() => s,
        _ if ids.is_empty() => {
            "; the folder has no runbooks (set --runbooks or OPSBOOK_RUNBOOKS)".into()
        }
        _ => "; `opsbook list` shows the library".into(),
    };
    Err(Error::UnknownRunbook {
        name: name.to_string(),
        dir: settings.runbooks.clone(),
        suggestion,
    })
}

/// The runbook files of a folder (its `*.yaml` and `*.yml` files), sorted.
pub fn runbook_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml") | Some("yml")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A runbook ready to run: its plan, the engine its scripts were compiled with, and the
/// warnings the analyzer had (the caller shows them).
pub struct Loaded {
    pub plan: Plan,
    pub engine: Arc<rhai::Engine>,
    pub warnings: Vec<Diagnostic>,
}

/// Loads and analyzes a runbook; any error ends it with every error found.
pub fn load(settings: &Settings, path: &Path) -> Result<Loaded> {
    let scripts_dir = settings.scripts_dir_for(path);
    let engine = Arc::new(script::build_engine(&scripts_dir));
    let analysis = analyze::analyze_file(path, &scripts_dir, &engine);
    let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) = analysis
        .diagnostics
        .0
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    match analysis.plan {
        Some(plan) if errors.is_empty() => Ok(Loaded {
            plan,
            engine,
            warnings,
        }),
        _ => Err(Error::Invalid(Diagnostics(errors))),
    }
}

/// One runbook of the library as `opsbook list` shows it.
#[derive(Debug, Serialize)]
pub struct LibraryEntry {
    pub id: String,
    pub path: String,
    pub valid: bool,
    pub title: Option<String>,
    pub version: Option<u32>,
    pub risk: Option<String>,
    pub owner: Option<String>,
    pub steps: Option<usize>,
    pub tags: Vec<String>,
    pub review_overdue: bool,
    pub errors: usize,
}

/// Every runbook of the library, valid or not.
pub fn entries(settings: &Settings) -> Result<Vec<LibraryEntry>> {
    let files = runbook_files(&settings.runbooks).map_err(|e| {
        Error::file(
            &settings.runbooks,
            format!("cannot list the runbook library: {e}"),
        )
    })?;
    let today = review::today();
    let mut entries = Vec::new();
    for file in files {
        let scripts_dir = settings.scripts_dir_for(&file);
        let engine = script::build_engine(&scripts_dir);
        let analysis = analyze::analyze_file(&file, &scripts_dir, &engine);
        let id = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let errors = analysis.diagnostics.error_count();
        let rb = analysis.plan.as_ref().map(|p| &p.runbook);
        entries.push(LibraryEntry {
            id,
            path: file.display().to_string(),
            valid: errors == 0,
            title: rb.map(|r| r.title.clone()),
            version: rb.map(|r| r.version),
            risk: rb.map(|r| r.risk.name().to_string()),
            owner: rb.and_then(|r| r.owner.clone()),
            steps: analysis.plan.as_ref().map(|p| p.steps.len()),
            tags: rb.map(|r| r.tags.clone()).unwrap_or_default(),
            review_overdue: rb.is_some_and(|r| ReviewStatus::of(r, today).overdue),
            errors,
        });
    }
    Ok(entries)
}
