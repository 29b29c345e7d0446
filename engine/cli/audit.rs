//! `opsbook audit`: recompute the journal's hash chain, and print its head for a change ticket.

use clap::Subcommand;
use serde::Serialize;

use super::to_json;
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::journal::view;
use crate::journal::Journal;

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
        #[arg(long)]
        json: bool,
    },
    /// The current head hash and event count, to write into a change ticket
    Head {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Verdict {
    intact: bool,
    scope: String,
    events: i64,
    head: String,
    first_break: Option<crate::journal::ChainBreak>,
}

pub fn audit(settings: &Settings, command: AuditCommand) -> Result<i32> {
    let journal = Journal::open(&settings.db)?;
    match command {
        AuditCommand::Head { json } => {
            let status = journal.verify()?;
            if json {
                println!(
                    "{}",
                    to_json(
                        &serde_json::json!({"head": status.head, "events": status.events, "intact": status.intact})
                    )?
                );
            } else {
                println!("head {} events {}", status.head, status.events);
                if !status.intact {
                    eprintln!("warning: the chain is broken; run `opsbook audit verify`");
                }
            }
            Ok(exit::SUCCESS)
        }
        AuditCommand::Verify {
            run,
            expect_head,
            json,
        } => verify(&journal, run.as_deref(), expect_head.as_deref(), json),
    }
}

fn verify(
    journal: &Journal,
    run: Option<&str>,
    expect_head: Option<&str>,
    json: bool,
) -> Result<i32> {
    let status = journal.verify()?;
    let run_id = run.map(|r| view::resolve_run_id(journal, r)).transpose()?;
    let mut first_break = status.first_break.clone();
    let mut events = status.events;
    if let Some(id) = &run_id {
        let own = journal.run_events(id)?;
        events = own.len() as i64;
        // A break after this run's last event does not touch it.
        let last = own.last().map(|e| e.seq).unwrap_or(0);
        first_break = first_break.filter(|b| b.seq <= last);
        if first_break.is_none() {
            if let Some((expected, e)) = (1..).zip(&own).find(|(n, e)| e.run_seq != *n) {
                first_break = Some(crate::journal::ChainBreak {
                    seq: e.seq,
                    problem: format!(
                        "the run's event {expected} is missing (found its event {} here)",
                        e.run_seq
                    ),
                });
            }
        }
    }
    if let Some(head) = expect_head {
        if head.len() != 64 || !head.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::BadHead {
                head: head.to_string(),
            });
        }
    }
    // The head of an empty journal is the genesis hash, which every journal starts from.
    let recorded_empty = expect_head.is_some_and(|h| h == crate::journal::GENESIS_HASH);
    if let (None, Some(head), false) = (&first_break, expect_head, recorded_empty) {
        if journal.seq_of_hash(head)?.is_none() {
            first_break = Some(crate::journal::ChainBreak {
                seq: 0,
                problem: format!(
                    "the recorded head {head} is not in the journal: it was rewritten and re-chained, or cut short, after that head was recorded"
                ),
            });
        }
    }
    let scope = run_id
        .map(|r| format!("run {r}"))
        .unwrap_or_else(|| "the journal".into());
    let verdict = Verdict {
        intact: first_break.is_none(),
        scope,
        events,
        head: status.head,
        first_break,
    };
    if json {
        println!("{}", to_json(&verdict)?);
    } else {
        match &verdict.first_break {
            None => println!(
                "intact: {}: {} events verified; head {}",
                verdict.scope, verdict.events, verdict.head
            ),
            Some(b) if b.seq == 0 => println!("BROKEN: {}: {}", verdict.scope, b.problem),
            Some(b) => println!("BROKEN: {}: event {}: {}", verdict.scope, b.seq, b.problem),
        }
    }
    Ok(if verdict.intact {
        exit::SUCCESS
    } else {
        exit::STEP_FAILED
    })
}
