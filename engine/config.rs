//! Where things are: the journal database, the runbook library and the scripts folder, from
//! the command line, the environment, the config file (`opsbook.yaml`) and the defaults, in
//! that order; and the operations the config file declares (maintenance windows, freeze
//! calendars, schedules, notification channels and routes), as plain data that the modules
//! owning them validate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::sys::files;

/// The optional config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub db: Option<PathBuf>,
    pub runbooks: Option<PathBuf>,
    pub scripts: Option<PathBuf>,
    /// Report templates that replace the built-in ones of the same name.
    pub reports_dir: Option<PathBuf>,
    #[serde(default)]
    pub windows: BTreeMap<String, WindowSpec>,
    #[serde(default)]
    pub calendars: BTreeMap<String, CalendarSpec>,
    #[serde(default)]
    pub schedules: BTreeMap<String, ScheduleSpec>,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSpec>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub max_concurrent_runs: Option<usize>,
}

/// What the config file declares about when and how work happens unattended.
#[derive(Debug, Clone, Default)]
pub struct Operations {
    pub windows: BTreeMap<String, WindowSpec>,
    pub calendars: BTreeMap<String, CalendarSpec>,
    pub schedules: BTreeMap<String, ScheduleSpec>,
    pub channels: BTreeMap<String, ChannelSpec>,
    pub routes: Vec<RouteSpec>,
    /// How many runs the daemon drives at once (default 4).
    pub max_concurrent_runs: Option<usize>,
}

impl From<ConfigFile> for Operations {
    fn from(file: ConfigFile) -> Self {
        Operations {
            windows: file.windows,
            calendars: file.calendars,
            schedules: file.schedules,
            channels: file.channels,
            routes: file.routes,
            max_concurrent_runs: file.max_concurrent_runs,
        }
    }
}

/// A maintenance window: when it opens (cron in a time zone, moved by `offset_days`), how
/// long it stays open, and how long before its end no step may start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub schedule: String,
    #[serde(default)]
    pub timezone: Option<String>,
    pub duration: String,
    #[serde(default)]
    pub cutoff: Option<String>,
    #[serde(default)]
    pub offset_days: Option<u32>,
    /// RFC 3339 or a date: the window opens at no time before this.
    #[serde(default)]
    pub start: Option<String>,
    /// RFC 3339 or a date: the window opens at no time after this.
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A freeze calendar: an iCalendar file whose events close (or, on a calendar closed by
/// default, open) the calendar.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    pub file: PathBuf,
    #[serde(default)]
    pub default: Openness,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Openness {
    #[default]
    Open,
    Closed,
}

/// A runbook the daemon starts: when its window opens, or on its own cron.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub runbook: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub missed: MissedPolicy,
    #[serde(default)]
    pub overlap: OverlapPolicy,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// What the daemon does with slots that fell due while it was not running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissedPolicy {
    /// Journal them as missed; start nothing.
    #[default]
    Skip,
    /// Start the latest of them once (inside its window), journal the others as missed.
    RunOnce,
}

/// What the daemon does when a slot falls due while the schedule's previous run is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlapPolicy {
    #[default]
    Skip,
    /// Start it when the previous run has finished or parked.
    Queue,
}

/// Where notifications go: exactly one of `file`, `command` or `webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// JSON lines appended to this file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A program and its arguments (no shell); the notification is its standard input.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// An `http://` or `https://` URL the notification is POSTed to as JSON.
    #[serde(default)]
    pub webhook: Option<String>,
    /// The environment variable whose value is sent as `Authorization: Bearer` to a webhook.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// How long one delivery may take (default 10s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// The longest wait between two tries (default 30s).
    #[serde(default)]
    pub max_backoff: Option<String>,
}

/// A routing rule: notifications matching every key of `match` go to `channels`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, MatchValues>,
    pub channels: Vec<String>,
}

/// One value or a list of values, any of which matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MatchValues {
    One(serde_yaml::Value),
    Any(Vec<serde_yaml::Value>),
}

fn yes() -> bool {
    true
}

/// The settings a command runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub db: PathBuf,
    pub runbooks: PathBuf,
    /// Set only by the config file; otherwise the `scripts` folder beside a runbook's folder.
    pub scripts: Option<PathBuf>,
    /// Set only by the config file; otherwise the built-in templates.
    pub reports_dir: Option<PathBuf>,
    /// The config file read, if any: errors in its operations name it.
    pub config_file: Option<PathBuf>,
    /// The folder relative paths in the config file are taken from.
    pub config_base: PathBuf,
    pub operations: Operations,
}

impl Settings {
    pub fn resolve(
        db: Option<PathBuf>,
        runbooks: Option<PathBuf>,
        config: Option<PathBuf>,
    ) -> Result<Self> {
        let (file, base, config_file) = match config {
            Some(path) => (read_config(&path)?, dir_of(&path), Some(path)),
            None if Path::new("opsbook.yaml").is_file() => (
                read_config(Path::new("opsbook.yaml"))?,
                PathBuf::from("."),
                Some(PathBuf::from("opsbook.yaml")),
            ),
            None => (ConfigFile::default(), PathBuf::from("."), None),
        };
        let db = db
            .or_else(|| file.db.as_ref().map(|p| base.join(p)))
            .unwrap_or_else(default_db_path);
        let runbooks = runbooks
            .or_else(|| file.runbooks.as_ref().map(|p| base.join(p)))
            .unwrap_or_else(|| PathBuf::from("runbooks"));
        let scripts = file.scripts.as_ref().map(|p| base.join(p));
        let reports_dir = file.reports_dir.as_ref().map(|p| base.join(p));
        Ok(Self {
            db,
            runbooks,
            scripts,
            reports_dir,
            config_file,
            config_base: base,
            operations: Operations::from(file),
        })
    }

    /// `path` from the config file, taken relative to the config file's folder.
    pub fn config_path(&self, path: &Path) -> PathBuf {
        self.config_base.join(path)
    }

    /// How the config file is named in messages.
    pub fn config_name(&self) -> String {
        self.config_file
            .as_ref()
            .map_or_else(|| "opsbook.yaml".to_string(), |p| p.display().to_string())
    }

    /// The scripts folder for the runbook at `runbook_path`.
    pub fn scripts_dir_for(&self, runbook_path: &Path) -> PathBuf {
        if let Some(dir) = &self.scripts {
            return dir.clone();
        }
        let folder = dir_of(runbook_path);
        folder
            .parent()
            .map(|p| p.join("scripts"))
            .unwrap_or_else(|| PathBuf::from("scripts"))
    }
}

fn dir_of(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new("."));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf())
}

/// A config file is small; anything over this is not one.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

fn read_config(path: &Path) -> Result<ConfigFile> {
    let bytes = files::read_capped(path, MAX_CONFIG_BYTES)
        .map_err(|problem| Error::file(path, problem.describe("the config file")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::file(path, "the config file is not UTF-8 text"))?;
    serde_yaml::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        position: e.location().map(|l| (l.line(), l.column())),
        message: e.to_string(),
    })
}

/// `$XDG_STATE_HOME/opsbook/opsbook.db`, or `~/.local/state/opsbook/opsbook.db`.
pub fn default_db_path() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("opsbook").join("opsbook.db")
}
