//! The one error type of the engine, and the exit code each error maps to.
//!
//! Every error a user can cause is a value here; `Display` says what went wrong and what to
//! do, and [`Error::exit_code`] maps it onto the exit codes of the command line contract.

use std::path::PathBuf;

use crate::runbook::diagnostic::Diagnostics;

/// The exit codes of the command line (a contract: scripts and checks depend on them).
pub mod exit {
    pub const SUCCESS: i32 = 0;
    pub const STEP_FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const AWAITING_SIGNOFF: i32 = 3;
    pub const REJECTED_OR_ABORTED: i32 = 4;
    pub const REFUSED_TO_START: i32 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(Diagnostics),

    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },

    #[error("unknown runbook `{name}` in {dir}{suggestion}")]
    UnknownRunbook {
        name: String,
        dir: PathBuf,
        suggestion: String,
    },

    #[error("parameter `{name}`: {message}")]
    Param { name: String, message: String },

    #[error("{0}")]
    Usage(String),

    #[error("no run with id `{0}` in the journal; `opsbook runs` lists the runs")]
    UnknownRun(String),

    #[error("journal {path}: {message}")]
    Journal { path: PathBuf, message: String },

    #[error("refused to start: {0}")]
    Refused(String),

    /// Identity or permission: a wrong passphrase, an unknown operator, a refused sign-off.
    #[error("{0}")]
    Auth(String),

    #[error("{0}")]
    Io(#[from] std::io::Error),

    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_)
            | Error::File { .. }
            | Error::UnknownRunbook { .. }
            | Error::Param { .. }
            | Error::Usage(_)
            | Error::UnknownRun(_) => exit::BAD_INPUT,
            Error::Refused(_) | Error::Auth(_) => exit::REFUSED_TO_START,
            Error::Journal { .. } | Error::Io(_) | Error::Internal(_) => exit::STEP_FAILED,
        }
    }

    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn param(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Param {
            name: name.into(),
            message: message.into(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Journal {
            path: PathBuf::new(),
            message: e.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
