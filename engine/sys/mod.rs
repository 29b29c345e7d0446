//! The operating system, below everything else: processes (a command under a keeper that holds
//! everything it starts, with a timeout and capped capture; the keeper itself, and the process
//! that forks keepers; finding and killing a step's processes by their token and cgroup), the operator's stop request (Ctrl-C,
//! SIGTERM), facts about the machine from `/proc` and `statvfs`, and reading files under a
//! size cap.
//!
//! It knows nothing of runbooks, runs or the journal, so the script sandbox (`sh()`) and the
//! executor (shell steps) share it without importing each other.

pub mod abort;
pub mod containment;
pub mod files;
pub mod hostinfo;
pub mod keeper;
pub mod keepers;
pub mod shell;
