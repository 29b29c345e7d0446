//! opsbook: a runbook and checklist execution engine for infrastructure operations.
//! `engine/README.md` maps the folders and which may use which.

pub mod cli;
pub mod config;
pub mod error;
pub mod exec;
pub mod journal;
pub mod people;
pub mod report;
pub mod runbook;
pub mod script;
pub mod sys;
pub mod term;
