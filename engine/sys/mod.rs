//! The operating system, below everything else: processes (a command in its own process group,
//! with a timeout and capped capture), the operator's stop request (Ctrl-C, SIGTERM), facts
//! about the machine from `/proc` and `statvfs`, and reading files under a size cap.
//!
//! It knows nothing of runbooks, runs or the journal, so the script sandbox (`sh()`) and the
//! executor (shell steps) share it without importing each other.

pub mod abort;
pub mod files;
pub mod hostinfo;
pub mod shell;
