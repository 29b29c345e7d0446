//! `opsbook report` and `opsbook docs`: reports rendered from the journal, and runbooks as
//! printable checklists.

use std::path::{Path, PathBuf};

use clap::Args;

use super::load_plan;
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::journal::view;
use crate::journal::view::RunView;
use crate::journal::Journal;
use crate::report::{Format, Renderer, RunContext, RunReport, RunbookDoc};
use crate::runbook::library::{self, runbook_files};
use crate::runbook::SourceFile;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run id, or a unique prefix of one
    run: String,
    /// html, md, json or junit [default: from the -o extension, else md]
    #[arg(long)]
    format: Option<String>,
    /// Write to this file instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// A template to render with instead of the built-in one
    #[arg(long, value_name = "FILE")]
    template: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// A runbook id or path (not with --all)
    #[arg(required_unless_present = "all")]
    runbook: Option<String>,
    /// The whole library, one file per runbook and an index, into the -o folder
    #[arg(long, requires = "output", conflicts_with = "runbook")]
    all: bool,
    /// md or html [default: from the -o extension, else md]
    #[arg(long)]
    format: Option<String>,
    /// A file (one runbook) or a folder (--all)
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    output: Option<PathBuf>,
}

fn choose_format(name: Option<&str>, output: Option<&Path>) -> Result<Format> {
    match (name, output) {
        (Some(n), _) => Format::parse(n),
        (None, Some(path)) if path.extension().is_some() => Format::from_path(path),
        _ => Ok(Format::Markdown),
    }
}

/// Runbook documents are Markdown or HTML.
fn document_format(format: Format, given: Option<&str>) -> Result<()> {
    match format {
        Format::Markdown | Format::Html => Ok(()),
        Format::Json | Format::Junit => Err(Error::BadValue {
            flag: "--format",
            value: given.unwrap_or("(from the file name)").to_string(),
            expected: "runbook documents are md or html (json and junit are for run reports)"
                .into(),
        }),
    }
}

fn write_or_print(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::file(dir, format!("cannot create the folder: {e}")))?;
            }
            std::fs::write(path, text).map_err(|e| Error::file(path, format!("cannot write: {e}")))
        }
        None => {
            out!("{text}");
            Ok(())
        }
    }
}

/// Renders run `run`'s report from the journal into `path` (format from its extension).
pub fn write_run_report(
    settings: &Settings,
    run: &str,
    path: &Path,
    template: Option<&Path>,
) -> Result<()> {
    let format = Format::from_path(path)?;
    let text = render_run_report(settings, run, format, template)?;
    write_or_print(Some(path), &text)
}

fn render_run_report(
    settings: &Settings,
    run: &str,
    format: Format,
    template: Option<&Path>,
) -> Result<String> {
    let journal = Journal::open_read_only(&settings.db)?;
    let view = view::load_run(&journal, run)?;
    let chain = journal.verify()?;
    let mut renderer = Renderer::new(settings.reports_dir.as_deref())?;
    if let Some(t) = template {
        renderer.override_template(format, t)?;
    }
    let context = run_context(settings, &view)?;
    renderer.render_run(&RunReport::with_context(view, chain, context), format)
}

/// What a report needs beyond the journal: the runbook's steps, from its file when that still
/// has the run's content (else why not), and whether a running run has lost its process.
pub fn run_context(settings: &Settings, view: &RunView) -> Result<RunContext> {
    let interrupted = view.status == crate::journal::event::RunStatus::Running
        && !crate::journal::lease::Lease::is_held_elsewhere(&settings.db, &view.id)?;
    let unlisted = "the steps this run did not reach cannot be listed";
    let path = Path::new(&view.path);
    let plan = match SourceFile::read(path) {
        Err(e) => Err(format!(
            "The runbook file is gone or unreadable ({e}): {unlisted}."
        )),
        Ok(source) if source.content_hash != view.content_hash => Err(format!(
            "The runbook file {} has changed since this run (its content hash is now {}, the run's was {}): {unlisted}.",
            path.display(),
            &source.content_hash[..12],
            view.content_hash.chars().take(12).collect::<String>(),
        )),
        Ok(_) => match library::load(settings, path) {
            Ok(loaded) => Ok(RunContext::planned_steps(&loaded.plan)),
            Err(e) => Err(format!(
                "The runbook file {} still has this run's content but does not load now ({}): {unlisted}.",
                path.display(),
                e.to_string().lines().next().unwrap_or_default()
            )),
        },
    };
    Ok(RunContext { plan, interrupted })
}

pub fn report(settings: &Settings, args: ReportArgs) -> Result<i32> {
    let format = choose_format(args.format.as_deref(), args.output.as_deref())?;
    let text = render_run_report(settings, &args.run, format, args.template.as_deref())?;
    write_or_print(args.output.as_deref(), &text)?;
    Ok(exit::SUCCESS)
}

pub fn docs(settings: &Settings, args: DocsArgs) -> Result<i32> {
    let renderer = Renderer::new(settings.reports_dir.as_deref())?;
    if !args.all {
        let format = choose_format(args.format.as_deref(), args.output.as_deref())?;
        document_format(format, args.format.as_deref())?;
        let name = args.runbook.as_deref().unwrap_or_default();
        let (plan, _) = load_plan(settings, &library::resolve(settings, name)?)?;
        let text = renderer.render_runbook(&RunbookDoc::new(&plan), format)?;
        write_or_print(args.output.as_deref(), &text)?;
        return Ok(exit::SUCCESS);
    }
    let format = match args.format.as_deref() {
        Some(f) => Format::parse(f)?,
        None => Format::Markdown,
    };
    document_format(format, args.format.as_deref())?;
    let extension = if format == Format::Html { "html" } else { "md" };
    let dir = args.output.unwrap_or_default();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::file(&dir, format!("cannot create the folder: {e}")))?;
    let mut docs = Vec::new();
    let mut invalid = Vec::new();
    for file in runbook_files(&settings.runbooks)
        .map_err(|e| Error::file(&settings.runbooks, format!("cannot list: {e}")))?
    {
        match load_plan(settings, &file) {
            Ok((plan, _)) => {
                let doc = RunbookDoc::new(&plan);
                let text = renderer.render_runbook(&doc, format)?;
                write_or_print(Some(&dir.join(format!("{}.{extension}", doc.id))), &text)?;
                docs.push(doc);
            }
            Err(e) => {
                errln!("{e}");
                invalid.push(file.display().to_string());
            }
        }
    }
    let index = renderer.render_index(&docs, format)?;
    write_or_print(Some(&dir.join(format!("index.{extension}"))), &index)?;
    outln!(
        "{} runbook document(s) and an index written to {}",
        docs.len(),
        dir.display()
    );
    if invalid.is_empty() {
        Ok(exit::SUCCESS)
    } else {
        errln!("not documented (invalid): {}", invalid.join(", "));
        Ok(exit::BAD_INPUT)
    }
}
