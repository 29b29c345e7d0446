//! `opsbook schedule`, `opsbook daemon` and `opsbook outbox`: what the schedules will do and
//! last did, the daemon that does it, and the notifications on their way.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::notify::outbox;
use crate::schedule::daemon::{self, DaemonOptions};
use crate::schedule::systemd;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Every schedule: its runbook, when it falls due next, and its last decision and why
    List {
        /// Count the next slot from this instant, RFC 3339 [default: now]
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Start every slot that is due and not yet claimed, wait for those runs to finish or
    /// park, deliver notifications, and exit (for systemd timers and tests)
    #[arg(long)]
    once: bool,
    /// Print a systemd unit that runs this daemon, and exit
    #[arg(long)]
    print_systemd_unit: bool,
    /// The user the unit runs the daemon as
    #[arg(
        long,
        value_name = "USER",
        default_value = "opsbook",
        requires = "print_systemd_unit"
    )]
    user: String,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Notifications, oldest first, with their delivery: attempts, last error, delivered when
    List {
        /// Only those not delivered yet
        #[arg(long)]
        pending: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn schedule(settings: &Settings, command: ScheduleCommand) -> Result<i32> {
    let ScheduleCommand::List { at, json } = command;
    let now = super::windows::instant_arg(at.as_deref())?;
    let states = daemon::states(settings, now)?;
    if json {
        outln!("{}", super::to_json(&states)?);
        return Ok(0);
    }
    if states.is_empty() {
        outln!(
            "no schedules: define them under `schedules:` in {}",
            settings.config_name()
        );
        return Ok(0);
    }
    for s in states {
        outln!(
            "{}  runs {} {} (missed: {}, overlap: {}){}",
            s.schedule,
            s.runbook,
            s.when,
            s.missed,
            s.overlap,
            if s.enabled { "" } else { " — disabled" }
        );
        outln!(
            "  next: {}",
            s.next
                .as_deref()
                .unwrap_or(if s.enabled { "none" } else { "none (disabled)" })
        );
        match s.last {
            Some(last) => outln!(
                "  last: {} {}{} — {}",
                last.slot,
                last.decision.name(),
                last.run.map(|r| format!(" (run {r})")).unwrap_or_default(),
                last.reason
            ),
            None => outln!("  last: never"),
        }
    }
    Ok(0)
}

/// The global options a child `opsbook` of the daemon needs to reach the same journal,
/// library and config, whatever folder it starts in.
fn global_args(settings: &Settings, as_name: Option<&str>) -> Vec<OsString> {
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let mut args: Vec<OsString> = vec![
        "--db".into(),
        absolute(&settings.db).into(),
        "--runbooks".into(),
        absolute(&settings.runbooks).into(),
    ];
    if let Some(config) = &settings.config_file {
        args.push("--config".into());
        args.push(absolute(config).into());
    }
    if let Some(name) = as_name {
        args.push("--as".into());
        args.push(name.into());
    }
    args
}

pub fn run_daemon(settings: &Settings, as_name: Option<&str>, args: DaemonArgs) -> Result<i32> {
    let program = std::env::current_exe()
        .map_err(|e| Error::io("cannot find the opsbook program to drive runs with", e))?;
    if args.print_systemd_unit {
        let options: Vec<String> = global_args(settings, as_name)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let db = std::path::absolute(&settings.db).unwrap_or_else(|_| settings.db.clone());
        let writes_home = db.starts_with("/home") || db.starts_with("/root");
        out!(
            "{}",
            systemd::unit(&program, &options, &args.user, writes_home)
        );
        return Ok(0);
    }
    let say: daemon::Say = Arc::new(|line: &str| {
        use std::io::Write;
        let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // A log line that cannot be written (its reader went away) is lost, not fatal.
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            crate::printable::escape(&format!("{stamp} {line}"))
        );
    });
    daemon::run(
        settings,
        DaemonOptions {
            once: args.once,
            program,
            global_args: global_args(settings, as_name),
        },
        say,
    )
}

pub fn outbox(settings: &Settings, command: OutboxCommand) -> Result<i32> {
    let OutboxCommand::List { pending, json } = command;
    let entries = match Journal::open_read_only(&settings.db) {
        Ok(mut journal) => outbox::list(&mut journal, pending)?,
        Err(Error::NoJournal { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    if json {
        outln!("{}", super::to_json(&entries)?);
        return Ok(0);
    }
    if entries.is_empty() {
        outln!(
            "{}",
            if pending {
                "no notifications wait for delivery"
            } else {
                "no notifications yet"
            }
        );
        return Ok(0);
    }
    for e in entries {
        let state = match (&e.delivered_at, &e.last_error) {
            (Some(at), _) => format!("delivered {at}"),
            (None, Some(error)) => format!(
                "pending, next try {} — {error}",
                e.next_try_at.as_deref().unwrap_or("soon")
            ),
            (None, None) => "pending".into(),
        };
        outln!(
            "{}  {:<10} {:<13} {} attempt(s)  {state}",
            e.id,
            e.channel,
            e.topic,
            e.attempts
        );
        outln!("    {}", e.summary);
    }
    Ok(0)
}
