//! Who is running: the operator named in the journal and on every report, and whether that
//! identity was verified.

use serde::{Deserialize, Serialize};

use crate::hostinfo;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub name: String,
    /// False when the name is only the OS user's, taken on trust.
    pub verified: bool,
}

impl Operator {
    /// The OS user, unverified: what runs are attributed to when no operators are registered.
    pub fn os_user() -> Self {
        Self {
            name: hostinfo::os_user(),
            verified: false,
        }
    }
}
