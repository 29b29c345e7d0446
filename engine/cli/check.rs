//! `opsbook check` and `opsbook list`: the runbook library, validated.

use std::path::{Path, PathBuf};

use super::to_json;
use crate::calendar::{Calendars, Windows};
use crate::config::Settings;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::error::{exit, Error, Result};
use crate::journal::Journal;
use crate::notify::channel::Channels;
use crate::notify::route::Routes;
use crate::people::directory::Directory;
use crate::people::policy;
use crate::runbook::analyze;
use crate::runbook::library::{self, runbook_files};
use crate::schedule::Schedules;
use crate::script;

/// Whether the journal has operators (a journal that does not exist has none).
fn operators_registered(settings: &Settings) -> bool {
    Journal::open_read_only(&settings.db)
        .ok()
        .and_then(|mut journal| Directory::new(&mut journal).count().ok())
        .is_some_and(|n| n > 0)
}

pub fn check(settings: &Settings, paths: &[PathBuf]) -> Result<i32> {
    let mut files = Vec::new();
    let targets = if paths.is_empty() {
        vec![settings.runbooks.clone()]
    } else {
        paths.to_vec()
    };
    for target in &targets {
        if target.is_dir() {
            files.extend(
                runbook_files(target)
                    .map_err(|e| Error::file(target, format!("cannot list: {e}")))?,
            );
        } else {
            files.push(target.clone());
        }
    }
    if files.is_empty() {
        return Err(Error::NoRunbooks {
            dirs: targets.iter().map(|t| t.display().to_string()).collect(),
        });
    }
    // The config's windows, calendars, schedules and channels are checked first: a runbook's
    // window is looked up in them.
    let windows = check_config(settings)?;
    let mut all = Diagnostics::default();
    let mut warnings = Vec::new();
    let mut checked_scripts = std::collections::BTreeSet::new();
    let mut pending_scripts = Vec::new();
    for file in &files {
        let scripts_dir = settings.scripts_dir_for(file);
        let engine = script::build_engine(&scripts_dir);
        let analysis = analyze::analyze_file(file, &scripts_dir, &engine);
        if let Some(plan) = &analysis.plan {
            if let Some(window) = &plan.runbook.window {
                if windows.get(window).is_none() {
                    warnings.push(format!(
                        "warning: runbook `{}` runs in maintenance window `{window}`, which {} does not define: it will refuse to start until the window is defined",
                        plan.runbook.runbook,
                        settings.config_name()
                    ));
                }
            }
            let gates = policy::gates_needing_identities(plan);
            if !gates.is_empty() && !operators_registered(settings) {
                if let Some(w) =
                    policy::unenforceable_warning(&plan.runbook.runbook, &gates, &settings.db)
                {
                    warnings.push(w);
                }
            }
        }
        all.extend(analysis.diagnostics);
        if checked_scripts.insert(scripts_dir.clone()) {
            pending_scripts.push((scripts_dir, engine));
        }
    }
    // Script files a runbook uses were reported with it; the scan adds the rest.
    for (dir, engine) in pending_scripts {
        for d in check_scripts(&dir, &engine).0 {
            if !all.0.iter().any(|seen| seen.path == d.path) {
                all.push(d);
            }
        }
    }
    if !all.0.is_empty() {
        errln!("{all}");
    }
    for warning in &warnings {
        errln!("{warning}");
    }
    let errors = all.error_count();
    let scripts = checked_scripts.len();
    if errors > 0 {
        outln!(
            "{errors} error(s) in {} runbook file(s) checked",
            files.len()
        );
        Ok(exit::BAD_INPUT)
    } else {
        let warnings = all.0.len();
        let warned = if warnings > 0 {
            format!(", {warnings} warning(s)")
        } else {
            String::new()
        };
        outln!(
            "{} runbook(s) valid{warned} (scripts folders checked: {scripts})",
            files.len()
        );
        Ok(exit::SUCCESS)
    }
}

/// The operations the config file declares read and make sense; the windows, for the
/// runbooks that name one.
fn check_config(settings: &Settings) -> Result<Windows> {
    let windows = Windows::from_settings(settings)?;
    Calendars::from_settings(settings)?;
    let schedules = Schedules::from_settings(settings, &windows)?;
    for schedule in schedules.iter() {
        library::resolve(settings, &schedule.runbook).map_err(|e| Error::ConfigValue {
            path: settings
                .config_file
                .clone()
                .unwrap_or_else(|| "opsbook.yaml".into()),
            key: format!("schedules.{}.runbook", schedule.name),
            message: e.to_string(),
        })?;
    }
    let channels = Channels::from_settings(settings)?;
    Routes::from_settings(settings, &channels)?;
    Ok(windows)
}

/// Every `.rhai` file in the scripts folder compiles.
fn check_scripts(dir: &Path, engine: &rhai::Engine) -> Diagnostics {
    let mut out = Diagnostics::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .collect();
    files.sort();
    for file in files {
        match crate::runbook::SourceFile::read(&file) {
            Err(e) => out.push(Diagnostic::error(&file, 0, 0, e.to_string())),
            Ok(source) => {
                if let Err((message, pos)) = script::compile_script(engine, &source.text) {
                    let pos = analyze::locate_import(&source.text, &message).unwrap_or(pos);
                    out.push(
                        Diagnostic::error(
                            &file,
                            pos.line().unwrap_or(0),
                            pos.position().unwrap_or(1),
                            format!("Rhai error: {message}"),
                        )
                        .with_source(&source.text),
                    );
                }
            }
        }
    }
    out
}

pub fn list(settings: &Settings, json: bool) -> Result<i32> {
    let entries = library::entries(settings)?;
    if json {
        outln!("{}", to_json(&entries)?);
        return Ok(exit::SUCCESS);
    }
    if entries.is_empty() {
        outln!("no runbooks in {}", settings.runbooks.display());
    }
    for e in &entries {
        let state = if !e.valid {
            format!("INVALID ({} errors; opsbook check {})", e.errors, e.path)
        } else if e.review_overdue {
            "review overdue".into()
        } else {
            String::new()
        };
        outln!(
            "{:<24} v{:<3} {:<7} {:>3} steps  {}  {}",
            e.id,
            e.version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
            e.risk.as_deref().unwrap_or("?"),
            e.steps.unwrap_or(0),
            e.title.as_deref().unwrap_or(""),
            state
        );
    }
    Ok(exit::SUCCESS)
}
