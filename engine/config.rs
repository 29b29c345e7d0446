//! Where things are: the journal database, the runbook library and the scripts folder, from
//! the command line, the environment, the config file (`opsbook.yaml`) and the defaults, in
//! that order.

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
}

impl Settings {
    pub fn resolve(
        db: Option<PathBuf>,
        runbooks: Option<PathBuf>,
        config: Option<PathBuf>,
    ) -> Result<Self> {
        let (file, base) = match config {
            Some(path) => (read_config(&path)?, dir_of(&path)),
            None if Path::new("opsbook.yaml").is_file() => {
                (read_config(Path::new("opsbook.yaml"))?, PathBuf::from("."))
            }
            None => (ConfigFile::default(), PathBuf::from(".")),
        };
        let db = db
            .or_else(|| file.db.map(|p| base.join(p)))
            .unwrap_or_else(default_db_path);
        let runbooks = runbooks
            .or_else(|| file.runbooks.map(|p| base.join(p)))
            .unwrap_or_else(|| PathBuf::from("runbooks"));
        let scripts = file.scripts.map(|p| base.join(p));
        let reports_dir = file.reports_dir.map(|p| base.join(p));
        Ok(Self {
            db,
            runbooks,
            scripts,
            reports_dir,
        })
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
