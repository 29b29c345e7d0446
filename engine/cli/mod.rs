//! The command line: clap definitions, and one small function per subcommand that turns
//! arguments into a call into the engine. Exit codes follow `error::exit`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::calendar::{Calendars, Windows};
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::exec::console::Console;
use crate::exec::progress::Progress;
use crate::exec::request::{self, Admission, FreezeBreakApproval};
use crate::exec::{self, RunRequest, RunResult};
use crate::journal::event::RunStatus;
use crate::journal::event::ScheduledSlot;
use crate::journal::Journal;
use crate::runbook::duration::format_duration;
use crate::runbook::library;
use crate::runbook::params::{parse_assignment, Params};
use crate::runbook::plan::Plan;
use crate::sys::abort::AbortSignal;
use crate::sys::keepers;
use crate::term::console::TerminalConsole;
use crate::term::{progress, prompt};

/// Everything a command prints passes through these, so that text from outside (names,
/// step output, errors) reaches the terminal with its control characters escaped.
macro_rules! outln {
    ($($arg:tt)*) => {
        println!("{}", $crate::printable::escape(&format!($($arg)*)))
    };
}
macro_rules! out {
    ($($arg:tt)*) => {
        print!("{}", $crate::printable::escape(&format!($($arg)*)))
    };
}
macro_rules! errln {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::printable::escape(&format!($($arg)*)))
    };
}

mod audit;
mod check;
mod daemon;
mod handover;
mod operator;
mod pending;
mod reports;
mod resume;
mod runs;
mod signoff;
mod training;
mod windows;

use crate::people::directory::Directory;
use crate::people::policy;
use crate::term::prompt::TerminalPassphrases;

/// Who a command acts as: `--as NAME` with a passphrase source.
pub struct Identity {
    pub as_name: Option<String>,
    pub passphrases: TerminalPassphrases,
}

#[derive(Debug, Parser)]
#[command(
    name = "opsbook",
    version,
    about = "Runs operational runbooks and checklists, and journals every step",
    propagate_version = true
)]
pub struct Cli {
    /// The journal database [default: $XDG_STATE_HOME/opsbook/opsbook.db]
    #[arg(long, global = true, env = "OPSBOOK_DB", value_name = "PATH")]
    db: Option<PathBuf>,
    /// The runbook library [default: ./runbooks]
    #[arg(long, global = true, env = "OPSBOOK_RUNBOOKS", value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// A config file: paths, windows, calendars, schedules, channels [default: ./opsbook.yaml
    /// where it exists]
    #[arg(long, global = true, env = "OPSBOOK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Plain lines instead of progress bars (also when NO_COLOR is set or there is no terminal)
    #[arg(long, global = true)]
    no_progress: bool,
    /// Act as this operator (with a passphrase: a prompt, OPSBOOK_PASSPHRASE or --passphrase-file)
    #[arg(long = "as", global = true, value_name = "NAME")]
    as_name: Option<String>,
    /// Read the passphrase for --as from this file
    #[arg(long, global = true, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a runbook by id (from the library) or by path
    Run(RunArgs),
    /// Validate runbooks and scripts: every problem, at its file:line:col
    Check {
        /// Runbook files or folders [default: the whole library]
        paths: Vec<PathBuf>,
    },
    /// The runbook library
    List {
        /// The library as JSON
        #[arg(long)]
        json: bool,
    },
    /// Runs in the journal, newest first
    Runs {
        /// Only runs of this runbook
        #[arg(long, value_name = "ID")]
        runbook: Option<String>,
        /// Only runs in this state: running, interrupted, awaiting-signoff, awaiting-acceptance,
        /// succeeded, failed, aborted, rejected
        #[arg(long)]
        status: Option<String>,
        /// Only runs started since then: a duration back from now (`7d`, `12h`) or a time
        /// (RFC 3339, `2026-11-01T00:00:00Z`)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// At most this many runs (the newest)
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// The runs as JSON
        #[arg(long)]
        json: bool,
    },
    /// One run, step by step
    Show {
        /// A run id, or a unique prefix of one
        run: String,
        /// The run as JSON (the run view, step by step)
        #[arg(long)]
        json: bool,
        /// Every output line the journal kept for each attempt (else the last 5)
        #[arg(long)]
        full: bool,
    },
    /// The journal's integrity
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The audit report of a run, from the journal
    Report(reports::ReportArgs),
    /// A runbook as a printable checklist (or the whole library with --all)
    Docs(reports::DocsArgs),
    /// Continue a parked or interrupted run
    Resume(resume::ResumeArgs),
    /// Sign a gate or manual step, or accept a supervised training run
    Signoff(signoff::SignoffArgs),
    /// Pass a run to another operator (they take it on by resuming it)
    Handover {
        run: String,
        #[arg(long, value_name = "NAME")]
        to: String,
        /// What the next owner must know
        #[arg(long, value_name = "TEXT")]
        note: String,
    },
    /// Operators and roles
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// What waits for a person: parked gates and manual steps, training runs to accept
    Pending {
        /// The list as JSON
        #[arg(long)]
        json: bool,
    },
    /// Maintenance windows: list them, their next openings, whether one is open
    #[command(subcommand)]
    Window(windows::WindowCommand),
    /// Freeze calendars: open or closed, why, and the next transition
    #[command(subcommand)]
    Calendar(windows::CalendarCommand),
    /// Schedules: next due, last decision and why
    #[command(subcommand)]
    Schedule(daemon::ScheduleCommand),
    /// Start scheduled runbooks in their windows, resume what they parked once signed, and
    /// deliver notifications
    Daemon(daemon::DaemonArgs),
    /// Notifications and their delivery
    #[command(subcommand)]
    Outbox(daemon::OutboxCommand),
    /// The training record: supervised runs per trainee and runbook, and qualification
    Training {
        /// A trainee [default: everyone]
        name: Option<String>,
        /// The record as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A runbook id from the library, or a path to a runbook file
    runbook: String,
    /// A parameter, KEY=VALUE (repeatable); secrets come from their env variable or a prompt
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Run only `readonly: true` steps; record what the others would do
    #[arg(long)]
    dry_run: bool,
    /// Never prompt: manual steps and gates park the run (exit 3)
    #[arg(long)]
    non_interactive: bool,
    /// The approved change request this run implements
    #[arg(long, value_name = "CR-ID")]
    change: Option<String>,
    /// A supervised training run: you are the trainee (needs --supervisor)
    #[arg(long, requires = "supervisor")]
    trainee: bool,
    /// The supervisor who counter-signs every gate and manual step of a training run
    #[arg(long, value_name = "NAME")]
    supervisor: Option<String>,
    /// Without a terminal, poll for sign-offs at gates instead of parking
    #[arg(long)]
    wait: bool,
    /// Write the run's report here when the run stops (format from the extension: .html, .md, .json, .xml)
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Run even while another run of this runbook is being driven
    #[arg(long)]
    concurrent: bool,
    /// Start inside a freeze (needs --reason and a supervisor's --approved-by)
    #[arg(long, requires_all = ["reason", "approved_by"])]
    break_freeze: bool,
    /// Why the freeze must be broken (journaled)
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// The supervisor approving the freeze break; their passphrase is asked on the terminal,
    /// or read from OPSBOOK_APPROVER_PASSPHRASE or --approver-passphrase-file
    #[arg(long, value_name = "NAME")]
    approved_by: Option<String>,
    /// The approving supervisor's passphrase, in a file
    #[arg(long, value_name = "FILE")]
    approver_passphrase_file: Option<PathBuf>,
    /// Start steps even when their history says they will not fit in what is left of the
    /// runbook's window (the window's cutoff still holds)
    #[arg(long)]
    ignore_window_history: bool,
    /// The schedule slot this run is started for, SCHEDULE@TIME (set by the daemon)
    #[arg(long, value_name = "SCHEDULE@TIME", hide = true)]
    slot: Option<String>,
    /// A stop request parks the run after the current step instead of aborting it (set by
    /// the daemon, which resumes it when it starts again)
    #[arg(long, hide = true)]
    park_on_stop: bool,
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> i32 {
    // The engine runs each command under a keeper forked by a process started from this
    // binary (see sys/keepers.rs); that subcommand is not for people, so `--help` does not
    // list it.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == keepers::SUBCOMMAND)
    {
        return keepers::main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::SUCCESS
            };
        }
    };
    if !matches!(
        cli.command,
        Command::Run(_) | Command::Resume(_) | Command::Daemon(_)
    ) {
        // Listings behave like other Unix tools when their reader goes away: they stop quietly.
        // A run, and the daemon, go on: the daemon writes to notification commands that may
        // exit without reading, and a run's reader may go away.
        // SAFETY: restoring the default action of SIGPIPE before any thread or I/O exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match execute(cli) {
        Ok(code) => code,
        Err(Error::Invalid(diagnostics)) => {
            // Each diagnostic says `error:` itself.
            errln!("{diagnostics}");
            exit::BAD_INPUT
        }
        Err(e) => {
            errln!("error: {e}");
            e.exit_code()
        }
    }
}

fn execute(cli: Cli) -> Result<i32> {
    let settings = Settings::resolve(cli.db, cli.runbooks, cli.config)?;
    let identity = Identity {
        as_name: cli.as_name,
        passphrases: TerminalPassphrases {
            file: cli.passphrase_file,
            env: "OPSBOOK_PASSPHRASE",
        },
    };
    match cli.command {
        Command::Run(args) => run(&settings, &identity, args, cli.no_progress),
        Command::Resume(args) => resume::resume(&settings, &identity, args, cli.no_progress),
        Command::Signoff(args) => signoff::signoff(&settings, &identity, args),
        Command::Handover { run, to, note } => {
            handover::handover(&settings, &identity, &run, &to, &note)
        }
        Command::Operator(command) => operator::operator(&settings, &identity, command),
        Command::Training { name, json } => training::training(&settings, name.as_deref(), json),
        Command::Pending { json } => pending::pending(&settings, json),
        Command::Check { paths } => check::check(&settings, &paths),
        Command::List { json } => check::list(&settings, json),
        Command::Runs {
            runbook,
            status,
            since,
            limit,
            json,
        } => runs::runs(
            &settings,
            runs::RunFilter {
                runbook,
                status,
                since,
                limit,
            },
            json,
        ),
        Command::Show { run, json, full } => runs::show(&settings, &run, json, full),
        Command::Audit(command) => audit::audit(&settings, command),
        Command::Report(args) => reports::report(&settings, args),
        Command::Docs(args) => reports::docs(&settings, args),
        Command::Window(command) => windows::window(&settings, command),
        Command::Calendar(command) => windows::calendar(&settings, command),
        Command::Schedule(command) => daemon::schedule(&settings, command),
        Command::Daemon(args) => daemon::run_daemon(&settings, identity.as_name.as_deref(), args),
        Command::Outbox(command) => daemon::outbox(&settings, command),
    }
}

/// Loads a runbook for a command; its warnings go to stderr, its errors end the command.
fn load_plan(settings: &Settings, path: &Path) -> Result<(Plan, Arc<rhai::Engine>)> {
    let loaded = library::load(settings, path)?;
    for warning in &loaded.warnings {
        errln!("{warning}");
    }
    Ok((loaded.plan, loaded.engine))
}

// ----- commands ---------------------------------------------------------------------------

fn run(settings: &Settings, identity: &Identity, args: RunArgs, no_progress: bool) -> Result<i32> {
    let path = library::resolve(settings, &args.runbook)?;
    let (plan, engine) = load_plan(settings, &path)?;
    let given = args
        .params
        .iter()
        .map(|p| parse_assignment(p))
        .collect::<Result<Vec<_>>>()?;
    let params = Params::resolve(
        &plan.runbook.params,
        &given,
        &|var| std::env::var(var).ok(),
        &prompt::TerminalSecrets,
    )?;
    request::secrets_present(&plan, &params)?;
    let mut journal = Journal::open(&settings.db)?;
    let operator = Directory::new(&mut journal)
        .authenticate(identity.as_name.as_deref(), &identity.passphrases)?;
    if !operator.verified() {
        let gates = policy::gates_needing_identities(&plan);
        if let Some(warning) =
            policy::unenforceable_warning(&plan.runbook.runbook, &gates, &settings.db)
        {
            errln!("{warning}");
        }
    }
    let supervision = request::admit(
        &mut journal,
        Admission {
            plan: &plan,
            operator: &operator,
            supervisor: args.supervisor.as_deref(),
            change: args.change.as_deref(),
            dry_run: args.dry_run,
            concurrent: args.concurrent,
        },
    )?;
    let (windows, calendars) = timing_config(settings)?;
    let timing = request::Timing {
        windows: &windows,
        calendars: &calendars,
        config: settings.config_name(),
        now: chrono::Utc::now(),
    };
    let window = timing.window_for(&plan, args.dry_run, args.ignore_window_history)?;
    let freeze_break = match timing.freeze_for(&plan, args.dry_run) {
        None => None,
        Some(freeze) if !args.break_freeze => return Err(request::inside_freeze(&freeze)),
        Some(freeze) => Some(approve_freeze_break(
            &mut journal,
            &operator,
            &args,
            &freeze,
        )?),
    };
    let slot = args.slot.as_deref().map(parse_slot).transpose()?;
    let request = RunRequest {
        window,
        slot,
        park_on_stop: args.park_on_stop,
        freeze_break,
        plan,
        engine,
        params,
        operator,
        dry_run: args.dry_run,
        console: terminal_console(args.non_interactive),
        wait: args.wait,
        supervision,
        change: args.change,
        db: settings.db.clone(),
        resume: None,
    };
    drive(
        settings,
        request,
        journal,
        no_progress,
        args.report.as_deref(),
    )
}

/// The maintenance windows and freeze calendars of the config.
fn timing_config(settings: &Settings) -> Result<(Windows, Calendars)> {
    Ok((
        Windows::from_settings(settings)?,
        Calendars::from_settings(settings)?,
    ))
}

/// A supervisor's approval, given on the spot, to start this run inside `freeze`: the
/// approver authenticates, is a supervisor, and is not the person running it.
fn approve_freeze_break(
    journal: &mut Journal,
    operator: &crate::people::directory::Operator,
    args: &RunArgs,
    freeze: &crate::calendar::FreezeReason,
) -> Result<FreezeBreakApproval> {
    let refused = |why: String| Error::FreezeBreakRefused { why };
    let name = args.approved_by.clone().unwrap_or_default();
    let reason = args.reason.clone().unwrap_or_default();
    if reason.trim().is_empty() {
        return Err(refused(
            "--reason must say why the freeze must be broken".into(),
        ));
    }
    errln!(
        "the freeze \"{}\" of calendar {} is in force: {name} approves breaking it",
        freeze.event,
        freeze.calendar
    );
    let mut directory = Directory::new(journal);
    if directory.count()? == 0 {
        return Err(refused(
            "nobody can approve it: no operators are registered, so no supervisor can be authenticated (opsbook operator add)".into(),
        ));
    }
    let approver = directory.authenticate(
        Some(&name),
        &TerminalPassphrases {
            file: args.approver_passphrase_file.clone(),
            env: "OPSBOOK_APPROVER_PASSPHRASE",
        },
    )?;
    if approver.role != Some(crate::people::Role::Supervisor) {
        return Err(refused(format!(
            "{name} is {}, and only a supervisor may approve it",
            approver.role.map_or("not an operator", |r| r.name())
        )));
    }
    if approver.person == operator.person {
        return Err(refused(format!(
            "{name} is the person running it; another supervisor must approve"
        )));
    }
    Ok(FreezeBreakApproval {
        calendar: freeze.calendar.clone(),
        freeze: freeze.event.clone(),
        reason,
        approved_by: approver.name,
    })
}

/// `SCHEDULE@TIME` (RFC 3339): the slot a daemon starts a run for.
fn parse_slot(text: &str) -> Result<ScheduledSlot> {
    let bad = || Error::BadValue {
        flag: "--slot",
        value: text.to_string(),
        expected: "SCHEDULE@TIME, TIME in RFC 3339".into(),
    };
    let (schedule, at) = text.split_once('@').ok_or_else(bad)?;
    let at = chrono::DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
    Ok(ScheduledSlot {
        schedule: schedule.to_string(),
        slot: at
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// The terminal's console, when a person is there to answer and may be asked.
fn terminal_console(non_interactive: bool) -> Option<Arc<dyn Console>> {
    (!non_interactive && prompt::is_interactive())
        .then(|| Arc::new(TerminalConsole) as Arc<dyn Console>)
}

/// Runs the executor on a fresh runtime, with signals handled; says what to do next, and
/// returns the exit code.
fn drive(
    settings: &Settings,
    request: RunRequest,
    journal: Journal,
    no_progress: bool,
    report: Option<&Path>,
) -> Result<i32> {
    if let Some(path) = report {
        // Known before the run starts, so a bad name or a place it cannot be written fails
        // before step 1.
        crate::report::Format::from_path(path)?;
        check_writable(path)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the runtime", e))?;
    let display: Arc<dyn Progress> = Arc::from(progress::choose(no_progress));
    let result = runtime.block_on(async {
        let abort = AbortSignal::default();
        abort.listen_for_signals();
        exec::run(request, journal, display.clone(), abort).await
    });
    // Rhai or shell work that ignored its stop request must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    // No command is left to run: the keepers' parent ends, after its keepers.
    keepers::stop();
    let result = result?;
    for line in next_steps(&result) {
        display.message(&line);
    }
    if let Some(path) = report {
        reports::write_run_report(settings, &result.run_id, path, None)?;
        outln!("report: {}", path.display());
    }
    Ok(result.status.exit_code())
}

/// Fails unless `path` can be written: an existing file opened for writing, or a new one
/// created (and removed again) in a folder that exists.
fn check_writable(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(path, format!("the report cannot be written there: {e}")))?;
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::file(path, format!("the report cannot be written there: {e}")))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// What the operator reads when a drive ends: how it ended and what to do next.
fn next_steps(result: &RunResult) -> Vec<String> {
    let id = &result.run_id;
    let mut lines = Vec::new();
    for parked in &result.parked {
        if !parked.asks.is_empty() {
            lines.push(format!("  {} asks: {}", parked.step, parked.asks));
        }
        lines.push(format!(
            "  sign it from any terminal: opsbook signoff {id} --step {} --approve {} --as NAME\n  binding {}",
            parked.step,
            if parked.evidence_required {
                "--comment EVIDENCE"
            } else {
                "[--comment TEXT]"
            },
            parked.binding
        ));
    }
    let took = format_duration(result.elapsed);
    let summary = &result.summary;
    lines.push(match (&result.awaiting_acceptance_by, result.status) {
        (Some(supervisor), _) => format!(
            "run {id} {} in {took}: {summary}. It awaits acceptance by the supervisor {supervisor}: opsbook signoff {id} --accept (or --reject-run) --as {supervisor}",
            result.outcome.name()
        ),
        (None, RunStatus::AwaitingSignoff) => format!(
            "run {id} parked ({summary}); it waits for a person. Continue it with: opsbook resume {id}"
        ),
        (None, RunStatus::Parked) => format!(
            "run {id} parked ({summary}){}. Continue it with: opsbook resume {id}",
            result
                .pause_reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        (None, status) => format!(
            "run {id} {} in {took}: {summary}. Details: opsbook show {id}",
            status.name()
        ),
    });
    lines
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(|e| Error::Encode {
        what: "the JSON output",
        problem: e.to_string(),
    })
}
