//! The commands about people: operators, sign-offs, acceptance of training runs, handover,
//! and the training record.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{load_plan, to_json, Identity};
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::exec::signoff_event;
use crate::journal::event::{Event, RunStatus};
use crate::journal::view::{self, RunView};
use crate::journal::Journal;
use crate::people::directory::{Directory, NewOperator};
use crate::people::policy::{self, Policy, Verdict};
use crate::runbook::library;
use crate::runbook::Role;

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Register an operator (the first one becomes a supervisor; later ones need a supervisor)
    Add {
        name: String,
        #[arg(long, value_enum, default_value = "operator")]
        role: RoleArg,
        /// The OS account that acts as this operator without --as
        #[arg(long, value_name = "USER")]
        os_user: Option<String>,
        /// Another name of the same person (four-eyes and approvals count people)
        #[arg(long, value_name = "NAME")]
        alias_of: Option<String>,
        /// The new operator's passphrase, from a file [else OPSBOOK_NEW_PASSPHRASE or a prompt]
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
    },
    /// The registered operators
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a new passphrase (your own, or anyone's as a supervisor)
    Passwd {
        /// [default: the operator acting]
        name: Option<String>,
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
    },
    /// Disable an operator (a supervisor only)
    Disable { name: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Trainee,
    Operator,
    Supervisor,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Trainee => Role::Trainee,
            RoleArg::Operator => Role::Operator,
            RoleArg::Supervisor => Role::Supervisor,
        }
    }
}

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

fn new_passphrase(file: Option<&PathBuf>, name: &str) -> Result<String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::file(path, format!("cannot read the passphrase file: {e}")))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Ok(value) = std::env::var("OPSBOOK_NEW_PASSPHRASE") {
        return Ok(value);
    }
    if crate::term::prompt::is_interactive() {
        let first = rpassword::prompt_password(format!("new passphrase for {name}: "))?;
        let second = rpassword::prompt_password("again: ")?;
        if first != second {
            return Err(Error::Usage("the two passphrases differ".into()));
        }
        return Ok(first);
    }
    Err(Error::Usage(format!(
        "the new passphrase for `{name}`: set OPSBOOK_NEW_PASSPHRASE, pass --new-passphrase-file FILE, or run on a terminal"
    )))
}

pub fn operator(settings: &Settings, identity: &Identity, command: OperatorCommand) -> Result<i32> {
    let mut journal = Journal::open(&settings.db)?;
    let mut directory = Directory::new(&mut journal);
    match command {
        OperatorCommand::Add {
            name,
            role,
            os_user,
            alias_of,
            new_passphrase_file,
        } => {
            let by = if directory.count()? == 0 {
                None
            } else {
                Some(directory.authenticate(identity.as_name.as_deref(), &identity.passphrase)?)
            };
            let passphrase = new_passphrase(new_passphrase_file.as_ref(), &name)?;
            let added = directory.add(
                NewOperator {
                    name,
                    role: role.into(),
                    os_user,
                    alias_of,
                    passphrase,
                },
                by.as_ref(),
            )?;
            let first = if by.is_none() {
                " (the first operator is a supervisor)"
            } else {
                ""
            };
            println!(
                "added operator {} with role {}{first}",
                added.name,
                added.role.name()
            );
            Ok(exit::SUCCESS)
        }
        OperatorCommand::List { json } => {
            let list = directory.list()?;
            if json {
                println!("{}", to_json(&list)?);
            } else if list.is_empty() {
                println!("no operators registered: runs are attributed to the OS user, unverified");
            } else {
                for o in list {
                    let alias = if o.person != o.name {
                        format!(" (alias of {})", o.person)
                    } else {
                        String::new()
                    };
                    let os = o
                        .os_user
                        .map(|u| format!(" os-user {u}"))
                        .unwrap_or_default();
                    let disabled = if o.disabled { " DISABLED" } else { "" };
                    println!("{:<20} {:<10}{os}{alias}{disabled}", o.name, o.role.name());
                }
            }
            Ok(exit::SUCCESS)
        }
        OperatorCommand::Passwd {
            name,
            new_passphrase_file,
        } => {
            let by = directory.authenticate(identity.as_name.as_deref(), &identity.passphrase)?;
            let name = name.unwrap_or_else(|| by.name.clone());
            let passphrase = new_passphrase(new_passphrase_file.as_ref(), &name)?;
            directory.set_passphrase(&name, &passphrase, &by)?;
            println!("passphrase of {name} changed");
            Ok(exit::SUCCESS)
        }
        OperatorCommand::Disable { name } => {
            let by = directory.authenticate(identity.as_name.as_deref(), &identity.passphrase)?;
            directory.disable(&name, &by)?;
            println!("operator {name} disabled");
            Ok(exit::SUCCESS)
        }
    }
}

/// What a sign-off attempt came to.
enum SignoffAnswer {
    Recorded(Verdict),
    Refused(String),
    AlreadyDecided(String),
    TimedOut,
}

pub fn signoff(settings: &Settings, identity: &Identity, args: SignoffArgs) -> Result<i32> {
    let mut journal = Journal::open(&settings.db)?;
    let signer = Directory::new(&mut journal)
        .authenticate(identity.as_name.as_deref(), &identity.passphrase)?;
    let view = view::load_run(&journal, &args.run)?;
    if args.accept || args.reject_run {
        return acceptance(&mut journal, &view, &signer, &args);
    }
    // The step the run waits at: parked there, or held at it by a process that polls (--wait).
    let waiting = view.waiting_step().or_else(|| {
        view.steps
            .iter()
            .rev()
            .find(|s| s.status.is_none() && matches!(s.kind.as_str(), "gate" | "manual"))
    });
    let step_id = match (&args.step, waiting) {
        (Some(s), _) => s.clone(),
        (None, Some(w)) => w.id.clone(),
        (None, None) => {
            return Err(Error::Usage(format!(
                "run {} is not waiting for a sign-off (it is {}); name the step with --step",
                view.id,
                view.status.name()
            )))
        }
    };
    let path = PathBuf::from(&view.path);
    let (plan, _) = load_plan(settings, &path)?;
    if plan.source.content_hash != view.content_hash {
        return Err(Error::Auth(format!(
            "the runbook {} changed since run {} started; a sign-off applies only to the exact text that ran",
            view.path, view.id
        )));
    }
    let Some(step) = plan.all_steps().into_iter().find(|s| s.id == step_id) else {
        return Err(Error::Usage(format!(
            "runbook {} has no step `{step_id}`",
            plan.runbook.runbook
        )));
    };
    let supervisor_person = match &view.supervisor {
        Some(name) => Some(Directory::new(&mut journal).person_of(name)?),
        None => None,
    };
    let Some(mut policy) = Policy::for_step(step, supervisor_person.as_deref()) else {
        return Err(Error::Usage(format!(
            "step `{step_id}` is a {} step; only gates and manual steps are signed",
            step.kind.name()
        )));
    };
    policy.resolve_people(&view, &mut Directory::new(&mut journal))?;
    let decision = if args.approve { "approved" } else { "rejected" };
    let answer = journal.append_checked(&view.id, |events| {
        let view = RunView::from_events(events)?;
        let Some(sv) = view.step(&step_id) else {
            return Err(Error::Usage(format!("run {} has not reached step `{step_id}`", view.id)));
        };
        if sv.status.is_some() {
            let by = sv.signoffs.last().map(|s| format!(" by {} at {}", s.signer, s.at)).unwrap_or_default();
            let status = sv.status.map(|s| s.name()).unwrap_or_default();
            return Ok((vec![], SignoffAnswer::AlreadyDecided(format!("already decided{by}: {status}"))));
        }
        match policy::verdict(&policy, sv) {
            Verdict::Rejected { by, at } => return Ok((vec![], SignoffAnswer::AlreadyDecided(format!("already decided by {by} at {at}: rejected")))),
            Verdict::Approved => {
                let s = sv.signoffs.iter().rfind(|s| s.decision == "approved");
                let (by, at) = s.map(|s| (s.signer.as_str(), s.at.as_str())).unwrap_or(("?", "?"));
                return Ok((vec![], SignoffAnswer::AlreadyDecided(format!("already decided by {by} at {at}: approved"))));
            }
            Verdict::TimedOut { .. } => return Ok((vec![], SignoffAnswer::TimedOut)),
            Verdict::Pending { .. } => {}
        }
        if policy::is_past_deadline(&policy, sv) {
            let action = if policy.on_timeout == crate::runbook::OnTimeout::Abort { "abort" } else { "reject" };
            return Ok((vec![Event::GateTimedOut { step: step_id.clone(), action: action.into() }], SignoffAnswer::TimedOut));
        }
        let evidence = policy::evidence(&policy, &view);
        let binding = policy::binding(&view.id, &step_id, &view.content_hash, &view.params, &evidence);
        let refusal = |reason: String| {
            let event = Event::SignoffRefused { step: step_id.clone(), signer: signer.name.clone(), reason: reason.clone() };
            Ok((vec![event], SignoffAnswer::Refused(reason)))
        };
        if let Some(given) = &args.binding {
            if !binding.starts_with(given.as_str()) || given.len() < 16 {
                return refusal(format!(
                    "the binding {given} does not belong to step `{step_id}` of run {} with this runbook text and evidence",
                    view.id
                ));
            }
        }
        if let Err(reason) = policy::check_signer(&policy, &signer, &view, sv, args.comment.as_deref(), args.approve) {
            return refusal(reason);
        }
        let event = signoff_event(&step_id, &signer, decision, args.comment.clone(), evidence, binding);
        let mut after = sv.clone();
        after.signoffs.push(view::Signoff {
            signer: signer.name.clone(),
            person: signer.person.clone(),
            role: String::new(),
            auth: String::new(),
            decision: decision.into(),
            comment: None,
            evidence: Default::default(),
            binding: String::new(),
            at: String::new(),
        });
        Ok((vec![event], SignoffAnswer::Recorded(policy::verdict(&policy, &after))))
    })?;
    match answer {
        SignoffAnswer::Recorded(verdict) => {
            let next = match verdict {
                Verdict::Pending { approvals, needed } => format!("{approvals} of {needed} approvals; another person must approve"),
                _ if view.status == RunStatus::AwaitingSignoff => format!("continue the run with: opsbook resume {}", view.id),
                _ => "the run continues".into(),
            };
            println!("{decision} step `{step_id}` of run {} as {}; {next}", view.id, signer.name);
            Ok(exit::SUCCESS)
        }
        SignoffAnswer::Refused(reason) => Err(Error::Auth(format!("sign-off refused: {reason}"))),
        SignoffAnswer::AlreadyDecided(text) => Err(Error::Auth(format!("step `{step_id}` of run {}: {text}; nothing changed", view.id))),
        SignoffAnswer::TimedOut => Err(Error::Auth(format!(
            "step `{step_id}` of run {} timed out waiting for a sign-off and is rejected; a gate never approves by timing out (resume the run to end it)",
            view.id
        ))),
    }
}

fn acceptance(
    journal: &mut Journal,
    view: &RunView,
    signer: &crate::people::directory::Operator,
    args: &SignoffArgs,
) -> Result<i32> {
    let Some(supervisor) = view.supervisor.clone() else {
        return Err(Error::Usage(format!(
            "run {} is not a supervised training run; there is nothing to accept",
            view.id
        )));
    };
    let supervisor_person = Directory::new(journal).person_of(&supervisor)?;
    let decision = if args.accept { "accepted" } else { "rejected" };
    let answer = journal.append_checked(&view.id, |events| {
        let view = RunView::from_events(events)?;
        if view.outcome.is_none() {
            return Err(Error::Usage(format!(
                "run {} has not finished; the supervisor accepts it after its last step",
                view.id
            )));
        }
        if let Some(a) = &view.acceptance {
            return Ok((
                vec![],
                Err(format!(
                    "already decided by {} at {}: {}; nothing changed",
                    a.by, a.at, a.decision
                )),
            ));
        }
        if signer.person != supervisor_person {
            let reason = format!(
                "only the supervisor {supervisor} accepts or rejects this training run, not {}",
                signer.name
            );
            let event = Event::SignoffRefused {
                step: "(run)".into(),
                signer: signer.name.clone(),
                reason: reason.clone(),
            };
            return Ok((vec![event], Err(reason)));
        }
        let event = Event::AcceptanceDecided {
            decision: decision.into(),
            by: signer.name.clone(),
            comment: args.comment.clone(),
        };
        Ok((vec![event], Ok(())))
    })?;
    answer.map_err(Error::Auth)?;
    println!("training run {} {decision} by {}", view.id, signer.name);
    Ok(exit::SUCCESS)
}

pub fn handover(
    settings: &Settings,
    identity: &Identity,
    run: &str,
    to: &str,
    note: &str,
) -> Result<i32> {
    if note.trim().is_empty() {
        return Err(Error::Usage(
            "a handover needs a note: what the next owner must know".into(),
        ));
    }
    let mut journal = Journal::open(&settings.db)?;
    let mut directory = Directory::new(&mut journal);
    let by = directory.authenticate(identity.as_name.as_deref(), &identity.passphrase)?;
    let registered = directory.count()? > 0;
    if registered {
        match directory.get(to)? {
            Some(o) if !o.disabled => {}
            Some(_) => return Err(Error::Usage(format!("operator `{to}` is disabled"))),
            None => {
                return Err(Error::Usage(format!(
                    "no operator named `{to}`; `opsbook operator list` shows them"
                )))
            }
        }
    }
    let owner_person = |journal: &mut Journal, name: &str| Directory::new(journal).person_of(name);
    let view = view::load_run(&journal, run)?;
    let current = owner_person(&mut journal, &view.owner)?;
    let is_supervisor = by.role == Some(Role::Supervisor);
    if registered && by.person != current && !is_supervisor {
        return Err(Error::Auth(format!(
            "run {} is owned by {}; the owner or a supervisor hands it over",
            view.id, view.owner
        )));
    }
    let run_id = view.id.clone();
    let from = journal.append_checked(&run_id, |events| {
        let view = RunView::from_events(events)?;
        if view.finished_at.is_some() {
            return Err(Error::Usage(format!(
                "run {} has finished ({}); there is nothing to hand over",
                view.id,
                view.status.name()
            )));
        }
        if view.owner == to {
            return Err(Error::Usage(format!(
                "run {} is already owned by {to}",
                view.id
            )));
        }
        let event = Event::HandedOver {
            from: view.owner.clone(),
            to: to.into(),
            note: note.into(),
            by: by.name.clone(),
        };
        Ok((vec![event], view.owner.clone()))
    })?;
    println!("run {run_id} handed over from {from} to {to}; {to} takes it on with: opsbook resume {run_id} --as {to}");
    Ok(exit::SUCCESS)
}

#[derive(Debug, Serialize)]
struct TrainingLine {
    trainee: String,
    runbook: String,
    supervised_runs: usize,
    accepted: usize,
    rejected: usize,
    awaiting: usize,
    last_run: Option<String>,
    required: Option<u32>,
    qualified: Option<bool>,
}

/// Accepted supervised runs of `runbook` by `person`.
pub fn accepted_runs(journal: &Journal, person: &str, runbook: &str) -> Result<usize> {
    Ok(view::list_runs(journal)?
        .iter()
        .filter(|r| r.supervisor.is_some() && r.person == person && r.runbook == runbook)
        .filter(|r| r.acceptance.as_deref() == Some("accepted"))
        .count())
}

pub fn training(settings: &Settings, name: Option<&str>, json: bool) -> Result<i32> {
    let mut journal = Journal::open(&settings.db)?;
    let person = match name {
        Some(n) => Some(Directory::new(&mut journal).person_of(n)?),
        None => None,
    };
    let runs = view::list_runs(&journal)?;
    let mut lines: Vec<TrainingLine> = Vec::new();
    for r in runs.iter().filter(|r| r.supervisor.is_some()) {
        if person.as_ref().is_some_and(|p| &r.person != p) {
            continue;
        }
        let line = match lines
            .iter_mut()
            .find(|l| l.trainee == r.person && l.runbook == r.runbook)
        {
            Some(line) => line,
            None => {
                let required = library::resolve(settings, &r.runbook)
                    .ok()
                    .and_then(|p| load_plan(settings, &p).ok())
                    .and_then(|(plan, _)| plan.runbook.qualification.map(|q| q.supervised_runs));
                lines.push(TrainingLine {
                    trainee: r.person.clone(),
                    runbook: r.runbook.clone(),
                    supervised_runs: 0,
                    accepted: 0,
                    rejected: 0,
                    awaiting: 0,
                    last_run: None,
                    required,
                    qualified: None,
                });
                lines.last_mut().expect("just pushed")
            }
        };
        line.supervised_runs += 1;
        match r.acceptance.as_deref() {
            Some("accepted") => line.accepted += 1,
            Some(_) => line.rejected += 1,
            None => line.awaiting += 1,
        }
        line.last_run = Some(r.started_at.clone());
        line.qualified = line.required.map(|n| line.accepted >= n as usize);
    }
    if json {
        println!("{}", to_json(&lines)?);
        return Ok(exit::SUCCESS);
    }
    if lines.is_empty() {
        println!(
            "no supervised training runs{}",
            name.map(|n| format!(" for {n}")).unwrap_or_default()
        );
    }
    for l in &lines {
        let qualified = match (l.qualified, l.required) {
            (Some(true), Some(n)) => format!("qualified ({n} needed)"),
            (Some(false), Some(n)) => format!(
                "not qualified: {} more accepted run(s) needed",
                n as usize - l.accepted.min(n as usize)
            ),
            _ => "no qualification set".into(),
        };
        println!(
            "{:<16} {:<24} {} supervised, {} accepted, {} rejected, {} awaiting; last {}; {qualified}",
            l.trainee,
            l.runbook,
            l.supervised_runs,
            l.accepted,
            l.rejected,
            l.awaiting,
            l.last_run.as_deref().map(|t| t.get(..10).unwrap_or(t)).unwrap_or("-")
        );
    }
    Ok(exit::SUCCESS)
}
