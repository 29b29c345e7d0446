//! `opsbook resume`: continue a parked or interrupted run, after checking who may, that no
//! other process drives it, and that its runbook is still the text that ran.

use std::path::PathBuf;

use clap::Args;

use super::{drive, load_plan, terminal_console, Identity};
use crate::config::Settings;
use crate::error::Result;
use crate::exec;
use crate::exec::resume::{InterruptedPolicy, ResumeOptions};
use crate::journal::Journal;
use crate::people::directory::Directory;
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
    /// Start steps even when their history says they will not fit in what is left of the
    /// runbook's window (the window's cutoff still holds)
    #[arg(long)]
    ignore_window_history: bool,
    /// A stop request parks the run after the current step (set by the daemon)
    #[arg(long, hide = true)]
    park_on_stop: bool,
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
        .authenticate(identity.as_name.as_deref(), &identity.passphrases)?;
    let request = exec::resume::prepare(
        &mut journal,
        &args.run,
        ResumeOptions {
            db: &settings.db,
            operator,
            interrupted: InterruptedPolicy {
                rerun: args.rerun_interrupted,
                mark_done: args
                    .skip_interrupted
                    .then(|| args.comment.clone().unwrap_or_default()),
            },
            console: terminal_console(args.non_interactive),
            wait: args.wait,
            secrets: &prompt::TerminalSecrets,
            window: &|plan| {
                let (windows, calendars) = super::timing_config(settings)?;
                crate::exec::request::Timing {
                    windows: &windows,
                    calendars: &calendars,
                    config: settings.config_name(),
                    now: chrono::Utc::now(),
                }
                .window_for(plan, false, args.ignore_window_history)
            },
            park_on_stop: args.park_on_stop,
        },
        &|path| load_plan(settings, path),
    )?;
    drive(
        settings,
        request,
        journal,
        no_progress,
        args.report.as_deref(),
    )
}
