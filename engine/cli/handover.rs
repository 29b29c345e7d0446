//! `opsbook handover`: pass a run to another operator.

use super::Identity;
use crate::config::Settings;
use crate::error::{exit, Result};
use crate::journal::Journal;
use crate::people::directory::Directory;
use crate::people::handover;

pub fn handover(
    settings: &Settings,
    identity: &Identity,
    run: &str,
    to: &str,
    note: &str,
) -> Result<i32> {
    let mut journal = Journal::open(&settings.db)?;
    let by = Directory::new(&mut journal)
        .authenticate(identity.as_name.as_deref(), &identity.passphrases)?;
    let done = handover::hand_over(&mut journal, run, to, note, &by)?;
    outln!(
        "run {} handed over from {} to {}; {} takes it on with: opsbook resume {} --as {}",
        done.run,
        done.from,
        done.to,
        done.to,
        done.run,
        done.to
    );
    Ok(exit::SUCCESS)
}
