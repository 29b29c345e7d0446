//! `opsbook operator add|list|passwd|disable`: identities and roles.

use std::path::PathBuf;

use clap::Subcommand;

use super::{to_json, Identity};
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::journal::Journal;
use crate::people::directory::{Directory, NewOperator};
use crate::people::Role;
use crate::sys::files;
use crate::term::prompt;

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
        /// The operators as JSON
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
    /// Disable an operator (a supervisor only; never the last active supervisor)
    Disable { name: String },
    /// Enable a disabled operator again (a supervisor only)
    Enable { name: String },
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

/// A passphrase file holds one line; anything larger is not a passphrase file.
const MAX_PASSPHRASE_FILE_BYTES: u64 = 4096;

/// The passphrase of a new operator (or a new one for an existing operator).
fn new_passphrase(file: Option<&PathBuf>, name: &str) -> Result<String> {
    if let Some(path) = file {
        let bytes = files::read_capped(path, MAX_PASSPHRASE_FILE_BYTES)
            .map_err(|problem| Error::file(path, problem.describe("the passphrase file")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::file(path, "the passphrase file is not UTF-8 text"))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Ok(value) = std::env::var("OPSBOOK_NEW_PASSPHRASE") {
        return Ok(value);
    }
    if prompt::is_interactive() {
        let unreadable = |e: std::io::Error| Error::PassphraseUnreadable {
            problem: e.to_string(),
        };
        let first = rpassword::prompt_password(format!("new passphrase for {name}: "))
            .map_err(unreadable)?;
        let second = rpassword::prompt_password("again: ").map_err(unreadable)?;
        if first != second {
            return Err(Error::PassphrasesDiffer);
        }
        return Ok(first);
    }
    Err(Error::NewPassphraseNeeded {
        name: name.to_string(),
    })
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
                Some(directory.authenticate(identity.as_name.as_deref(), &identity.passphrases)?)
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
            outln!(
                "added operator {} with role {}{first}",
                added.name,
                added.role.name()
            );
            Ok(exit::SUCCESS)
        }
        OperatorCommand::List { json } => {
            let list = directory.list()?;
            if json {
                outln!("{}", to_json(&list)?);
            } else if list.is_empty() {
                outln!("no operators registered: runs are attributed to the OS user, unverified");
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
                    outln!("{:<20} {:<10}{os}{alias}{disabled}", o.name, o.role.name());
                }
            }
            Ok(exit::SUCCESS)
        }
        OperatorCommand::Passwd {
            name,
            new_passphrase_file,
        } => {
            let by = directory.authenticate(identity.as_name.as_deref(), &identity.passphrases)?;
            let name = name.unwrap_or_else(|| by.name.clone());
            let passphrase = new_passphrase(new_passphrase_file.as_ref(), &name)?;
            directory.set_passphrase(&name, &passphrase, &by)?;
            outln!("passphrase of {name} changed");
            Ok(exit::SUCCESS)
        }
        OperatorCommand::Disable { name } => {
            let by = directory.authenticate(identity.as_name.as_deref(), &identity.passphrases)?;
            directory.disable(&name, &by)?;
            outln!("operator {name} disabled");
            Ok(exit::SUCCESS)
        }
        OperatorCommand::Enable { name } => {
            let by = directory.authenticate(identity.as_name.as_deref(), &identity.passphrases)?;
            directory.enable(&name, &by)?;
            outln!("operator {name} enabled");
            Ok(exit::SUCCESS)
        }
    }
}
