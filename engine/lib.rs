//! opsbook: a runbook and checklist execution engine for infrastructure operations.
//! `engine/README.md` maps the modules.

pub mod abort;
pub mod analyze;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod duration;
pub mod error;
pub mod event;
pub mod exec;
pub mod gate;
pub mod history;
pub mod hostinfo;
pub mod identity;
pub mod journal;
pub mod lease;
pub mod params;
pub mod plan;
pub mod progress;
pub mod prompt;
pub mod redact;
pub mod report;
pub mod runbook;
pub mod script;
pub mod script_api;
pub mod shell;
pub mod template;
