//! `opsbook audit`: recompute the journal's hash chain, and print its head for a change ticket.

use clap::Subcommand;

use super::to_json;
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::journal::Journal;
use crate::journal::{chain, view};
use crate::people::directory::Directory;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit 1 at the first break
    Verify {
        /// Report on this run's events only (the whole chain is still recomputed)
        run: Option<String>,
        /// A head hash recorded earlier (`audit head`): detects a journal rewritten and
        /// re-chained, or cut short, since then
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
        /// The verdict as JSON
        #[arg(long)]
        json: bool,
    },
    /// The current head hash and event count, to write into a change ticket
    Head {
        /// The head as JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn audit(settings: &Settings, command: AuditCommand) -> Result<i32> {
    let mut journal = Journal::open_read_only(&settings.db)?;
    match command {
        AuditCommand::Head { json } => {
            let status = journal.verify()?;
            if json {
                outln!(
                    "{}",
                    to_json(
                        &serde_json::json!({"head": status.head, "events": status.events, "intact": status.intact})
                    )?
                );
            } else {
                outln!("head {} events {}", status.head, status.events);
                if !status.intact {
                    errln!("warning: the chain is broken; run `opsbook audit verify`");
                }
            }
            Ok(exit::SUCCESS)
        }
        AuditCommand::Verify {
            run,
            expect_head,
            json,
        } => verify(&mut journal, run.as_deref(), expect_head.as_deref(), json),
    }
}

/// What `audit verify` prints as JSON: the chain's verdict and the operator directory's.
#[derive(serde::Serialize)]
struct AuditReport<'a> {
    #[serde(flatten)]
    chain: &'a chain::AuditVerdict,
    /// Where the operator directory differs from the chained events (journal scope only).
    operators: Vec<String>,
}

fn verify(
    journal: &mut Journal,
    run: Option<&str>,
    expect_head: Option<&str>,
    json: bool,
) -> Result<i32> {
    if let Some(head) = expect_head {
        if head.len() != 64 || !head.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::BadHead {
                head: head.to_string(),
            });
        }
    }
    let run_id = run.map(|r| view::resolve_run_id(journal, r)).transpose()?;
    let mut verdict = chain::audit(journal, run_id.as_deref(), expect_head)?;
    // Identities sign every gate: the directory must be what the chain says it is.
    let operators = Directory::new(journal).problems()?;
    let intact = verdict.intact && operators.is_empty();
    verdict.intact = intact;
    if json {
        outln!(
            "{}",
            to_json(&AuditReport {
                chain: &verdict,
                operators: operators.clone(),
            })?
        );
    } else {
        match &verdict.first_break {
            None if operators.is_empty() => outln!(
                "intact: {}: {} events verified; head {}",
                verdict.scope,
                verdict.events,
                verdict.head
            ),
            None => {}
            Some(b) if b.seq == 0 => outln!("BROKEN: {}: {}", verdict.scope, b.problem),
            Some(b) => outln!("BROKEN: {}: event {}: {}", verdict.scope, b.seq, b.problem),
        }
        for problem in &operators {
            outln!("BROKEN: the operator directory: {problem}");
        }
    }
    Ok(if intact {
        exit::SUCCESS
    } else {
        exit::STEP_FAILED
    })
}
