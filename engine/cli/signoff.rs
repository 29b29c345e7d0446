//! `opsbook signoff`: sign a gate or manual step from any terminal, or accept a supervised
//! training run.

use std::path::PathBuf;

use clap::Args;

use super::{load_plan, Identity};
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::journal::event::{AcceptanceDecision, RunStatus, SignoffDecision};
use crate::journal::view;
use crate::journal::Journal;
use crate::people::directory::Directory;
use crate::people::policy::Verdict;
use crate::people::signoff::{self, SignoffRequest};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("decision").required(true).args(["approve", "reject", "accept", "reject_run"])))]
pub struct SignoffArgs {
    /// A run id, or a unique prefix of one
    run: String,
    /// The gate or manual step [default: the step the run waits at]
    #[arg(long)]
    step: Option<String>,
    /// Approve the gate (or tick off the manual step)
    #[arg(long)]
    approve: bool,
    /// Reject the gate (the run ends rejected)
    #[arg(long)]
    reject: bool,
    /// Accept a finished supervised training run (the supervisor)
    #[arg(long)]
    accept: bool,
    /// Reject a finished supervised training run (the supervisor)
    #[arg(long)]
    reject_run: bool,
    /// Evidence or remarks, stored with the sign-off
    #[arg(long)]
    comment: Option<String>,
    /// The binding hash printed when the run parked: refuses the sign-off unless it applies to
    /// exactly that run, step, runbook text and evidence
    #[arg(long, value_name = "HASH")]
    binding: Option<String>,
}

pub fn signoff(settings: &Settings, identity: &Identity, args: SignoffArgs) -> Result<i32> {
    let mut journal = Journal::open(&settings.db)?;
    let run = view::load_run(&journal, &args.run)?;
    let attempted_step = if args.accept || args.reject_run {
        Some("(run)".to_string())
    } else {
        args.step
            .clone()
            .or_else(|| signoff::waiting_step(&run).map(|s| s.id.clone()))
    };
    let signer = match Directory::new(&mut journal)
        .authenticate(identity.as_name.as_deref(), &identity.passphrases)
    {
        Ok(signer) => signer,
        Err(e) => {
            // A failed identification is an attempt on the record, like a refused sign-off.
            if let (Some(step), Some(name)) = (&attempted_step, identity.as_name.as_deref()) {
                if e.is_identity_refusal() {
                    signoff::record_refusal(&mut journal, &run.id, step, name, &e.to_string())?;
                }
            }
            return Err(e);
        }
    };
    if args.accept || args.reject_run {
        let decision = if args.accept {
            AcceptanceDecision::Accepted
        } else {
            AcceptanceDecision::Rejected
        };
        signoff::accept(&mut journal, &run, &signer, decision, args.comment)?;
        outln!("training run {} {decision} by {}", run.id, signer.name);
        return Ok(exit::SUCCESS);
    }
    let step_id = match (&args.step, signoff::waiting_step(&run)) {
        (Some(s), _) => s.clone(),
        (None, Some(w)) => w.id.clone(),
        (None, None) => {
            return Err(Error::NotWaiting {
                run: run.id.clone(),
                status: run.status.name().to_string(),
            })
        }
    };
    let (plan, _) = load_plan(settings, &PathBuf::from(&run.path))?;
    let policy = signoff::policy_for(&mut journal, &plan, &run, &step_id)?;
    let decision = if args.approve {
        SignoffDecision::Approved
    } else {
        SignoffDecision::Rejected
    };
    let signed = signoff::sign(
        &mut journal,
        &run.id,
        &policy,
        SignoffRequest {
            step: &step_id,
            signer: &signer,
            decision,
            comment: args.comment,
            binding: args.binding.as_deref(),
        },
    )?;
    let next = match signed.verdict {
        Verdict::Pending { approvals, needed } => {
            format!("{approvals} of {needed} approvals; another person must approve")
        }
        _ if run.status == RunStatus::AwaitingSignoff => {
            format!("continue the run with: opsbook resume {}", run.id)
        }
        _ => "the run continues".into(),
    };
    outln!(
        "{decision} step `{step_id}` of run {} as {}; {next}",
        run.id,
        signer.name
    );
    Ok(exit::SUCCESS)
}
