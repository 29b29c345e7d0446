//! The one error type of the engine, and the exit code each error maps to.
//!
//! Every error a user can cause is a value here, one variant per thing that went wrong, with
//! named fields; `Display` (one match) says what went wrong and what to do, and
//! [`Error::exit_code`] maps it onto the exit codes of the command line contract. Journal and
//! I/O errors keep the path and the source error.

use std::path::PathBuf;

use crate::diagnostic::Diagnostics;

/// The exit codes of the command line (a contract: scripts and checks depend on them).
pub mod exit {
    pub const SUCCESS: i32 = 0;
    pub const STEP_FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const AWAITING_SIGNOFF: i32 = 3;
    pub const REJECTED_OR_ABORTED: i32 = 4;
    pub const REFUSED: i32 = 5;
    pub const ENVIRONMENT: i32 = 6;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ----- bad input (exit 2) ----------------------------------------------------------------
    /// A runbook with errors: every one, each at its `file:line:col`.
    #[error("{0}")]
    Invalid(Diagnostics),

    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },

    #[error("{}{}: {message}; the config file takes db, runbooks, scripts, reports_dir, windows, calendars, schedules, channels, routes and max_concurrent_runs", path.display(), position.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Config {
        path: PathBuf,
        position: Option<(usize, usize)>,
        message: String,
    },

    /// A value in the config file that reads but does not make sense (a cron expression, a
    /// time zone, a channel without a destination): `key` is its path, `windows.nightly.timezone`.
    #[error("{}: {key}: {message}", path.display())]
    ConfigValue {
        path: PathBuf,
        key: String,
        message: String,
    },

    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Calendar {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },

    #[error("runbook `{runbook}` runs in maintenance window `{window}`, which {config} does not define{known}")]
    UnknownWindow {
        runbook: String,
        window: String,
        config: String,
        known: String,
    },

    #[error("refused to start: runbook `{runbook}` runs in maintenance window `{window}`, which is closed; it next opens {next}")]
    OutsideWindow {
        runbook: String,
        window: String,
        next: String,
    },

    #[error("refused to start: the freeze calendar `{calendar}` is closed by \"{freeze}\" until {until}; only a read-only or dry run may start (a supervisor may approve breaking it: --break-freeze --reason TEXT --approved-by NAME)")]
    InsideFreeze {
        calendar: String,
        freeze: String,
        until: String,
    },

    #[error("unknown runbook `{name}` in {}{suggestion}", dir.display())]
    UnknownRunbook {
        name: String,
        dir: PathBuf,
        suggestion: String,
    },

    #[error("no runbooks to check in {}", dirs.join(", "))]
    NoRunbooks { dirs: Vec<String> },

    #[error("parameter `{name}`: {message}")]
    Param { name: String, message: String },

    #[error("`-p {given}` is not KEY=VALUE; write it like `-p host=db1`")]
    ParamSyntax { given: String },

    /// A flag's value that is not one the flag takes.
    #[error("{flag} {value}: {expected}")]
    BadValue {
        flag: &'static str,
        value: String,
        expected: String,
    },

    #[error("unknown report format `{name}`: use html, md, json or junit")]
    UnknownReportFormat { name: String },

    #[error("{}: name the report .html, .md, .json or .xml (JUnit) so its format is known", path.display())]
    ReportFormatUnknown { path: PathBuf },

    #[error("--template applies to html, md and junit; the JSON report has a fixed schema")]
    TemplateForJson,

    #[error("{place}: {message}")]
    Template { place: String, message: String },

    #[error("no journal at {}: check --db or OPSBOOK_DB (the first run of a runbook creates the journal)", path.display())]
    NoJournal { path: PathBuf },

    #[error("no run with id `{id}` in the journal; `opsbook runs` lists the runs")]
    UnknownRun { id: String },

    #[error("`{prefix}` matches {matches} runs; give more of the run id")]
    AmbiguousRun { prefix: String, matches: usize },

    #[error("runbook {runbook} has no step `{step}`")]
    UnknownStep { runbook: String, step: String },

    #[error("step `{step}` is a {kind} step; only gates and manual steps are signed")]
    NotSignable { step: String, kind: String },

    #[error("run {run} has not reached step `{step}`")]
    StepNotReached { run: String, step: String },

    #[error("run {run} is not waiting for a sign-off (it is {status}); name the step with --step")]
    NotWaiting { run: String, status: String },

    #[error("run {run} has finished ({status}); {what}")]
    RunFinished {
        run: String,
        status: String,
        what: &'static str,
    },

    #[error("run {run} has finished and awaits acceptance: opsbook signoff {run} --accept (or --reject-run) --as {supervisor}")]
    AwaitsAcceptance { run: String, supervisor: String },

    #[error("run {run} is not a supervised training run; there is nothing to accept")]
    NotTraining { run: String },

    #[error("run {run} has not finished; the supervisor accepts it after its last step")]
    NotFinished { run: String },

    #[error("step `{step}` of run {run} was interrupted (started, never finished) and is not idempotent: its work may be half done. Check it, then pass --rerun-interrupted, or --skip-interrupted --comment TEXT")]
    InterruptedStep { run: String, step: String },

    #[error("a handover needs a note: what the next owner must know")]
    HandoverWithoutNote,

    #[error("run {run} is already owned by {owner}")]
    AlreadyOwner { run: String, owner: String },

    /// Naming someone who is not there (a supervisor, the new owner of a run).
    #[error("no operator named `{name}`; `opsbook operator list` shows them")]
    NoSuchOperator { name: String },

    #[error("operator `{name}` is disabled")]
    OperatorDisabled { name: String },

    #[error("`{name}` has the role {role}, not supervisor")]
    NotASupervisor { name: String, role: &'static str },

    #[error("refused to break the freeze: {why}")]
    FreezeBreakRefused { why: String },

    #[error("{name} cannot supervise their own training run")]
    OwnSupervisor { name: String },

    #[error("operator `{name}` exists already")]
    OperatorExists { name: String },

    #[error("the OS user `{user}` is already mapped to another operator")]
    OsUserTaken { user: String },

    #[error("operator name `{name}`: use letters, digits, `-`, `_` and `.` (at most 64)")]
    BadOperatorName { name: String },

    #[error("a passphrase needs at least {min} characters")]
    ShortPassphrase { min: usize },

    #[error("the two passphrases differ")]
    PassphrasesDiffer,

    #[error("the new passphrase for `{name}`: set OPSBOOK_NEW_PASSPHRASE, pass --new-passphrase-file FILE, or run on a terminal")]
    NewPassphraseNeeded { name: String },

    #[error("cannot read the passphrase: {problem}")]
    PassphraseUnreadable { problem: String },

    #[error("--expect-head {head}: give the full head hash, 64 hex digits, as `opsbook audit head` prints it")]
    BadHead { head: String },

    // ----- refused (exit 5) ------------------------------------------------------------------
    #[error("refused to start: runbook `{runbook}` changes production and needs an approved change request: pass --change CR-ID (or try it with --dry-run)")]
    ChangeRequired { runbook: String },

    #[error("refused to start: {trainee} is a trainee, and runbook `{runbook}` has no qualification path: run it under supervision with --supervisor NAME")]
    TraineeWithoutPath { trainee: String, runbook: String },

    #[error("refused to start: {trainee} is a trainee with {accepted} of {needed} accepted supervised runs of `{runbook}`: {} more needed before running it unsupervised (run it with --supervisor NAME)", needed - accepted)]
    TraineeNotQualified {
        trainee: String,
        runbook: String,
        accepted: usize,
        needed: usize,
    },

    #[error("refused to start: runbook `{runbook}` is running now (run {run}); wait for it, or pass --concurrent to run it alongside")]
    AlreadyRunning { runbook: String, run: String },

    #[error("refused: run {run} is being driven by process {pid} on {host} (lease renewed {renewed_at}); wait for it, or stop that process")]
    LeaseHeld {
        run: String,
        pid: i64,
        host: String,
        renewed_at: String,
    },

    #[error("refused: the runbook {path} changed since run {run} started (sha256 {then} then, {now} now); a run continues only with the text it started with — start a new run")]
    ChangedSinceStart {
        path: String,
        run: String,
        then: String,
        now: String,
    },

    #[error("the runbook {path} changed since run {run} started; a sign-off applies only to the exact text that ran")]
    ChangedSinceSignable { path: String, run: String },

    #[error("run {run} is owned by {owner}; {what}")]
    NotOwner {
        run: String,
        owner: String,
        what: String,
    },

    #[error("no operator named `{name}`{hint}; `opsbook operator list` shows them")]
    UnknownOperator { name: String, hint: String },

    #[error("no operator is registered for the OS user `{user}`; act as one with --as NAME (`opsbook operator list` shows them)")]
    NoOperatorForOsUser { user: String },

    #[error("operator `{name}` is disabled")]
    ActingAsDisabled { name: String },

    #[error("wrong passphrase for `{name}`")]
    WrongPassphrase { name: String },

    #[error("`{name}` needs a passphrase: there is no terminal to ask on, so set OPSBOOK_PASSPHRASE or pass --passphrase-file FILE")]
    PassphraseNeeded { name: String },

    /// An action the acting operator's role does not allow.
    #[error("{rule}")]
    NotAllowed { rule: String },

    #[error("the operator directory was changed outside opsbook ({problems}); nobody is trusted until it is restored: `opsbook audit verify` reports it")]
    DirectoryTampered { problems: String },

    #[error("sign-off refused: {reason}")]
    SignoffRefused { reason: String },

    #[error("{subject}: {decided}; nothing changed")]
    AlreadyDecided { subject: String, decided: String },

    #[error("step `{step}` of run {run} timed out waiting for a sign-off and is rejected; a gate never approves by timing out (resume the run to end it)")]
    SignoffTimedOut { run: String, step: String },

    // ----- the environment failed (exit 6) ---------------------------------------------------
    #[error("journal {}: {source}; nothing acknowledged was lost: check the file's permissions and free space, then run the command again", path.display())]
    Journal {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error("journal {}: cannot create its folder {}: {source}", path.display(), dir.display())]
    JournalFolder {
        path: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },

    #[error("journal {}: it has schema version {version}, newer than this opsbook knows ({known}); use a newer opsbook", path.display())]
    JournalTooNew {
        path: PathBuf,
        version: usize,
        known: usize,
    },

    #[error("journal event {seq} ({kind}) cannot be read: {problem}; `opsbook audit verify` checks the journal")]
    UnreadableEvent {
        seq: i64,
        kind: String,
        problem: String,
    },

    #[error("the stored record of operator `{name}` cannot be read: {problem}; a supervisor can set a new passphrase")]
    OperatorRecordUnreadable { name: String, problem: String },

    #[error("run {run}: the journal has no record of step `{step}`, which this process started; `opsbook audit verify` checks the journal")]
    StepNotInJournal { run: String, step: String },

    #[error("run {run} in the journal does not begin with run_started; `opsbook audit verify` checks the journal")]
    RunWithoutStart { run: String },

    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },

    /// A lock whose holder panicked: the engine cannot go on safely.
    #[error("the {what} lock was poisoned by a failed thread; nothing acknowledged was lost: resume the run")]
    Poisoned { what: &'static str },

    #[error("cannot encode {what}: {problem}")]
    Encode { what: &'static str, problem: String },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        use Error::*;
        match self {
            Invalid(_)
            | File { .. }
            | Config { .. }
            | UnknownRunbook { .. }
            | NoRunbooks { .. }
            | Param { .. }
            | ParamSyntax { .. }
            | BadValue { .. }
            | ReportFormatUnknown { .. }
            | UnknownReportFormat { .. }
            | TemplateForJson
            | Template { .. }
            | UnknownRun { .. }
            | NoJournal { .. }
            | AmbiguousRun { .. }
            | UnknownStep { .. }
            | NotSignable { .. }
            | StepNotReached { .. }
            | NotWaiting { .. }
            | RunFinished { .. }
            | AwaitsAcceptance { .. }
            | NotTraining { .. }
            | NotFinished { .. }
            | InterruptedStep { .. }
            | HandoverWithoutNote
            | AlreadyOwner { .. }
            | NoSuchOperator { .. }
            | OperatorDisabled { .. }
            | NotASupervisor { .. }
            | OwnSupervisor { .. }
            | OperatorExists { .. }
            | OsUserTaken { .. }
            | BadOperatorName { .. }
            | ShortPassphrase { .. }
            | PassphrasesDiffer
            | NewPassphraseNeeded { .. }
            | PassphraseUnreadable { .. }
            | BadHead { .. }
            | ConfigValue { .. }
            | Calendar { .. }
            | UnknownWindow { .. } => exit::BAD_INPUT,
            ChangeRequired { .. }
            | OutsideWindow { .. }
            | FreezeBreakRefused { .. }
            | InsideFreeze { .. }
            | TraineeWithoutPath { .. }
            | TraineeNotQualified { .. }
            | LeaseHeld { .. }
            | AlreadyRunning { .. }
            | ChangedSinceStart { .. }
            | ChangedSinceSignable { .. }
            | NotOwner { .. }
            | UnknownOperator { .. }
            | NoOperatorForOsUser { .. }
            | ActingAsDisabled { .. }
            | WrongPassphrase { .. }
            | PassphraseNeeded { .. }
            | NotAllowed { .. }
            | SignoffRefused { .. }
            | DirectoryTampered { .. }
            | AlreadyDecided { .. }
            | SignoffTimedOut { .. } => exit::REFUSED,
            Journal { .. }
            | JournalFolder { .. }
            | JournalTooNew { .. }
            | UnreadableEvent { .. }
            | RunWithoutStart { .. }
            | StepNotInJournal { .. }
            | OperatorRecordUnreadable { .. }
            | Io { .. }
            | Poisoned { .. }
            | Encode { .. } => exit::ENVIRONMENT,
        }
    }

    /// An identity that could not be established: a wrong passphrase, an unknown or
    /// disabled operator.
    pub fn is_identity_refusal(&self) -> bool {
        matches!(
            self,
            Error::WrongPassphrase { .. }
                | Error::UnknownOperator { .. }
                | Error::ActingAsDisabled { .. }
        )
    }

    pub fn file(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub fn param(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Param {
            name: name.into(),
            message: message.into(),
        }
    }

    pub fn journal(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        Error::Journal {
            path: path.into(),
            source,
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_failures_exit_6_and_keep_the_path() {
        let e = Error::journal(
            "/srv/ops/opsbook.db",
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                Some("attempt to write a readonly database".into()),
            ),
        );
        assert_eq!(e.exit_code(), exit::ENVIRONMENT);
        assert_eq!(
            e.to_string(),
            "journal /srv/ops/opsbook.db: attempt to write a readonly database; nothing acknowledged was lost: check the file's permissions and free space, then run the command again"
        );
    }

    #[test]
    fn refusals_exit_5_and_bad_input_exits_2() {
        let refused = Error::ChangeRequired {
            runbook: "pg-vacuum".into(),
        };
        assert_eq!(refused.exit_code(), exit::REFUSED);
        let bad = Error::ParamSyntax {
            given: "host".into(),
        };
        assert_eq!(bad.exit_code(), exit::BAD_INPUT);
        assert_eq!(
            bad.to_string(),
            "`-p host` is not KEY=VALUE; write it like `-p host=db1`"
        );
    }
}
