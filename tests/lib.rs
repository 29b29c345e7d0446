//! Integration tests: each drives the real `opsbook` binary on a temporary workspace.

mod support;

mod check;
mod gates;
mod journal_compat;
mod report;
mod run;
