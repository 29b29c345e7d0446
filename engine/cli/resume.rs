//! `opsbook resume`: continue a parked or interrupted run, after checking who may, that no
//! other process drives it, and that its runbook is still the text that ran.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;

use super::{drive, load_plan, Identity};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::exec::{self, InterruptedChoice, Resumption, RunRequest, Supervision};
use crate::journal::event::RunStatus;
use crate::journal::lease::Lease;
use crate::journal::view;
use crate::journal::Journal;
use crate::people::directory::Directory;
use crate::runbook::params::{value_text, Params};
use crate::runbook::Role;
use crate::term::prompt;

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// A run id, or a unique prefix of one
    run: String,
    /// Never prompt: gates and manual steps park the run again (exit 3)
    #[arg(long)]
    non_interactive: bool,
    /// Without a terminal, poll for sign-offs instead of parking
    #[arg(long)]
    wait: bool,
    /// Run an interrupted (started, never finished) step again
    #[arg(long, conflicts_with = "skip_interrupted")]
    rerun_interrupted: bool,
    /// Mark an interrupted step done instead of running it again (needs --comment)
    #[arg(long, requires = "comment")]
    skip_interrupted: bool,
    /// Why an interrupted step is marked done
    #[arg(long)]
    comment: Option<String>,
    /// Write the run's report here when the run stops (.html, .md, .json or .xml)
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

pub fn resume(
    settings: &Settings,
    identity: &Identity,
    args: ResumeArgs,
    no_progress: bool,
) -> Result<i32> {
    let mut journal = Journal::open(&settings.db)?;
    let operator = Directory::new(&mut journal)
        .authenticate(identity.as_name.as_deref(), &identity.passphrase)?;
    let view = view::load_run(&journal, &args.run)?;
    check_resumable(&view)?;
    let owner_person = Directory::new(&mut journal).person_of(&view.owner)?;
    if operator.verified()
        && operator.person != owner_person
        && operator.role != Some(Role::Supervisor)
    {
        return Err(Error::Auth(format!(
            "run {} is owned by {}; they resume it, or hand it over first (opsbook handover {} --to {} --note TEXT)",
            view.id, view.owner, view.id, operator.name
        )));
    }
    // Taken before anything is journaled: a second resume of a live run stops here (exit 5).
    let lease = Lease::acquire(&settings.db, &view.id)?;
    // What was read before the lease may be stale: another resume may have finished the run.
    let view = view::load_run(&journal, &view.id)?;
    check_resumable(&view)?;

    let path = PathBuf::from(&view.path);
    let (plan, engine) = load_plan(settings, &path)?;
    if plan.source.content_hash != view.content_hash {
        return Err(Error::Refused(format!(
            "the runbook {} changed since run {} started (sha256 {} then, {} now); a run continues only with the text it started with — start a new run",
            view.path,
            view.id,
            &view.content_hash[..12],
            &plan.source.content_hash[..12]
        )));
    }
    let given: Vec<(String, String)> = view
        .params
        .iter()
        .filter(|(name, _)| !plan.runbook.params.get(*name).is_some_and(|s| s.secret))
        .map(|(name, value)| (name.clone(), value_text(value)))
        .collect();
    let params = Params::resolve(
        &plan.runbook.params,
        &given,
        &|var| std::env::var(var).ok(),
        &prompt::TerminalSecrets,
    )?;

    let interactive = !args.non_interactive && prompt::is_interactive();
    let mut choices = HashMap::new();
    for step in exec::interrupted_steps(&plan, &view) {
        let choice = if step.idempotent {
            InterruptedChoice::Rerun {
                why: "the step is idempotent".into(),
            }
        } else if args.rerun_interrupted {
            InterruptedChoice::Rerun {
                why: "--rerun-interrupted".into(),
            }
        } else if args.skip_interrupted {
            InterruptedChoice::MarkDone {
                comment: args.comment.clone().unwrap_or_default(),
            }
        } else if interactive {
            ask_about_interrupted(&step.id, &step.name)?
        } else {
            return Err(Error::Usage(format!(
                "step `{}` of run {} was interrupted (started, never finished) and is not idempotent: its work may be half done. Check it, then pass --rerun-interrupted, or --skip-interrupted --comment TEXT",
                step.id, view.id
            )));
        };
        choices.insert(step.id.clone(), choice);
    }
    let supervision = match &view.supervisor {
        Some(name) => Some(Supervision {
            supervisor: name.clone(),
            person: Directory::new(&mut journal).person_of(name)?,
        }),
        None => None,
    };
    let request = RunRequest {
        plan,
        engine,
        params,
        operator,
        dry_run: view.dry_run,
        interactive,
        wait: args.wait,
        supervision,
        change: view.change.clone(),
        db: settings.db.clone(),
        resume: Some(Resumption {
            view,
            lease,
            choices,
        }),
    };
    drive(
        settings,
        request,
        journal,
        no_progress,
        args.report.as_deref(),
    )
}

fn ask_about_interrupted(id: &str, name: &str) -> Result<InterruptedChoice> {
    eprintln!("\nstep {id} ({name}) was interrupted: it started and never finished, and it is not idempotent.");
    let choice = prompt::ask_choice(
        "  [r]un it again / [m]ark it done (with a comment) / [a]bort the run? ",
        &['r', 'm', 'a'],
    );
    Ok(match choice {
        Some('r') => InterruptedChoice::Rerun {
            why: "chosen at the terminal".into(),
        },
        Some('m') => match prompt::ask_required("  what was checked: ") {
            Some(comment) => InterruptedChoice::MarkDone { comment },
            None => InterruptedChoice::Abort,
        },
        _ => InterruptedChoice::Abort,
    })
}

/// A run that can be continued: running (its driver gone) or waiting for a person.
fn check_resumable(view: &crate::journal::view::RunView) -> Result<()> {
    match view.status {
        RunStatus::Running | RunStatus::AwaitingSignoff => {}
        RunStatus::AwaitingAcceptance => {
            return Err(Error::Usage(format!(
                "run {} has finished and awaits acceptance: opsbook signoff {} --accept (or --reject-run) --as {}",
                view.id,
                view.id,
                view.supervisor.as_deref().unwrap_or("SUPERVISOR")
            )))
        }
        finished => {
            return Err(Error::Usage(format!("run {} has finished ({}); start a new run instead", view.id, finished.name())))
        }
    }
    Ok(())
}
