//! People: the operator directory (identities, roles, passphrases, aliases), the sign-off
//! policy of gates and manual steps, the sign-off transaction itself (from a terminal or from
//! `opsbook signoff`), supervised training and its acceptance, and handing a run over.
//!
//! `Role` stays with the runbook format (`runbook::model`), since gates name it there; it is
//! re-exported here as the word of the operator directory.

pub mod directory;
pub mod handover;
pub mod pending;
pub mod policy;
pub mod signoff;
pub mod training;

pub use crate::runbook::model::Role;
