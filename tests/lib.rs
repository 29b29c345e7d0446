//! Integration tests: each drives the real `opsbook` binary on a temporary workspace.

mod support;

mod check;
mod conditions;
mod console;
mod containment;
mod daemon;
mod environment;
mod gate_timeouts;
mod handover;
mod inputs;
mod journal_compat;
mod layout;
mod pending;
mod report;
mod report_trust;
mod resume;
mod run;
mod signoff;
mod training;
mod trust;
mod windows;
