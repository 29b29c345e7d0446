//! Who is acting: operators with roles (trainee < operator < supervisor), their passphrases
//! (argon2id hashes only), and establishing an identity for a command — `--as NAME` with a
//! passphrase, else the operator registered for the OS user, else (with no operators at all)
//! the OS user, unverified.
//!
//! Aliases: an operator added with `--alias-of` is the same *person* as the other; four-eyes
//! and `min_approvals` count people, not names.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::diagnostic::did_you_mean;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::journal::event::{Event, OperatorAction};
use crate::journal::{append_in, Journal};
use crate::runbook::Role;
use crate::sys::hostinfo;

/// The journal's run id under which operator changes are recorded.
pub const OPERATORS_LOG: &str = "operators";
/// Passphrases shorter than this are refused.
const MIN_PASSPHRASE_CHARS: usize = 8;

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    Passphrase,
    OsUser,
    Unverified,
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Passphrase => "passphrase",
            AuthMethod::OsUser => "os-user",
            AuthMethod::Unverified => "unverified",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub name: String,
    pub person: String,
    /// None only for the unverified OS user when no operators are registered.
    pub role: Option<Role>,
    pub auth: AuthMethod,
}

impl Operator {
    pub fn verified(&self) -> bool {
        self.auth != AuthMethod::Unverified
    }

    /// The OS user, unverified: what acts when no operators are registered.
    pub fn os_user() -> Self {
        let name = hostinfo::os_user();
        Self {
            person: name.clone(),
            name,
            role: None,
            auth: AuthMethod::Unverified,
        }
    }

    /// The role for policy checks; an unverified identity counts as a supervisor, since with
    /// no operators registered there is nobody else to ask (reports mark it unverified).
    pub fn effective_role(&self) -> Role {
        self.role.unwrap_or(Role::Supervisor)
    }
}

/// A registered operator, as `operator list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorRecord {
    pub name: String,
    pub person: String,
    pub role: Role,
    pub os_user: Option<String>,
    pub disabled: bool,
    pub created_at: String,
}

/// Where a passphrase comes from when one is needed: a file, the environment, a prompt. The
/// terminal's own source is in `term`; a daemon or a test passes its own.
pub trait Passphrases {
    fn passphrase(&self, name: &str) -> Result<String>;
}

/// The registered operators, stored beside the journal.
pub struct Directory<'a> {
    journal: &'a mut Journal,
    /// The table was compared with the chain once already: a lookup does not fold the
    /// operator events again (this directory's own changes keep the two in step).
    trusted: bool,
}

impl<'a> Directory<'a> {
    pub fn new(journal: &'a mut Journal) -> Self {
        Self {
            journal,
            trusted: false,
        }
    }

    /// A database error of the directory, with the journal's path.
    fn sql(&self) -> impl Fn(rusqlite::Error) -> Error {
        let path = self.journal.path().to_path_buf();
        move |e| Error::journal(&path, e)
    }

    /// An operator as the chained events tell it, by name.
    fn chained(&self) -> Result<BTreeMap<String, ChainedOperator>> {
        let mut operators: BTreeMap<String, ChainedOperator> = BTreeMap::new();
        for stored in self.journal.events_of_kind("operator_changed")? {
            let Event::OperatorChanged {
                action,
                name,
                role,
                person,
                credential,
                os_user,
                ..
            } = stored.event()?
            else {
                continue;
            };
            let entry = operators.entry(name).or_insert_with(|| ChainedOperator {
                person: person.clone(),
                role: parse_role(&role),
                disabled: false,
                credential: None,
                os_user: None,
            });
            entry.person = person;
            entry.role = parse_role(&role);
            match action {
                OperatorAction::Added => {
                    entry.credential = credential;
                    entry.os_user = os_user;
                    entry.disabled = false;
                }
                OperatorAction::Disabled => entry.disabled = true,
                OperatorAction::Enabled => entry.disabled = false,
                OperatorAction::PassphraseChanged => entry.credential = credential,
            }
        }
        Ok(operators)
    }

    /// Where the operators table differs from what the chained events say: a row inserted,
    /// removed or changed outside opsbook. Empty when the directory can be trusted.
    pub fn problems(&mut self) -> Result<Vec<String>> {
        let chained = self.chained()?;
        let sql = self.sql();
        let mut stmt = self
            .journal
            .connection()
            .prepare(
                "SELECT name, person, role, os_user, disabled, created_at, passphrase_hash
                 FROM operators ORDER BY name",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map([], |r| Ok((operator_from_row(r)?, r.get::<_, String>(6)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(&sql)?;
        let mut problems = Vec::new();
        for (row, hash) in &rows {
            let Some(c) = chained.get(&row.name) else {
                problems.push(format!(
                    "operator `{}` is in the directory but was never added through opsbook",
                    row.name
                ));
                continue;
            };
            let mut differs = Vec::new();
            if c.person != row.person {
                differs.push("person");
            }
            if c.role != row.role {
                differs.push("role");
            }
            if c.disabled != row.disabled {
                differs.push("disabled");
            }
            if c.credential
                .as_ref()
                .is_some_and(|k| *k != credential_of(hash))
            {
                differs.push("passphrase");
            }
            if c.os_user.is_some() && c.os_user != row.os_user {
                differs.push("os user");
            }
            if !differs.is_empty() {
                problems.push(format!(
                    "operator `{}`: the {} in the directory differs from the journal",
                    row.name,
                    differs.join(", ")
                ));
            }
        }
        for name in chained.keys() {
            if !rows.iter().any(|(r, _)| r.name == *name) {
                problems.push(format!(
                    "operator `{name}` was removed from the directory outside opsbook"
                ));
            }
        }
        Ok(problems)
    }

    /// Refuses to use a directory edited outside opsbook.
    fn ensure_trusted(&mut self) -> Result<()> {
        if self.trusted {
            return Ok(());
        }
        let problems = self.problems()?;
        if problems.is_empty() {
            self.trusted = true;
            Ok(())
        } else {
            Err(Error::DirectoryTampered {
                problems: problems.join("; "),
            })
        }
    }

    pub fn count(&mut self) -> Result<usize> {
        self.ensure_trusted()?;
        let sql = self.sql();
        let n: i64 = self
            .journal
            .connection()
            .query_row("SELECT COUNT(*) FROM operators", [], |r| r.get(0))
            .map_err(sql)?;
        Ok(n as usize)
    }

    pub fn list(&mut self) -> Result<Vec<OperatorRecord>> {
        self.ensure_trusted()?;
        let sql = self.sql();
        let mut stmt = self
            .journal
            .connection()
            .prepare(
                "SELECT name, person, role, os_user, disabled, created_at FROM operators ORDER BY name",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map([], operator_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(&sql)?;
        Ok(rows)
    }

    fn find(&mut self, name: &str) -> Result<Option<(OperatorRecord, String)>> {
        self.ensure_trusted()?;
        let sql = self.sql();
        let row = self
            .journal
            .connection()
            .query_row(
                "SELECT name, person, role, os_user, disabled, created_at, passphrase_hash
                 FROM operators WHERE name = ?1",
                [name],
                |r| Ok((operator_from_row(r)?, r.get(6)?)),
            )
            .optional()
            .map_err(sql)?;
        Ok(row)
    }

    fn unknown(&mut self, name: &str) -> Error {
        let names: Vec<String> = self
            .list()
            .map(|l| l.into_iter().map(|o| o.name).collect())
            .unwrap_or_default();
        let hint = did_you_mean(name, names.iter().map(String::as_str));
        Error::UnknownOperator {
            name: name.to_string(),
            hint,
        }
    }

    /// Establishes who is acting (see the module documentation).
    pub fn authenticate(
        &mut self,
        as_name: Option<&str>,
        source: &dyn Passphrases,
    ) -> Result<Operator> {
        let sql = self.sql();
        if self.count()? == 0 {
            return Ok(Operator::os_user());
        }
        match as_name {
            Some(name) => self.verify(name, &source.passphrase(name)?),
            None => {
                let user = hostinfo::os_user();
                let row: Option<String> = self
                    .journal
                    .connection()
                    .query_row(
                        "SELECT name FROM operators WHERE os_user = ?1 AND disabled = 0",
                        [&user],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql)?;
                match row {
                    Some(name) => {
                        let (record, _) = self.find(&name)?.ok_or_else(|| self.unknown(&name))?;
                        Ok(Operator {
                            name: record.name,
                            person: record.person,
                            role: Some(record.role),
                            auth: AuthMethod::OsUser,
                        })
                    }
                    None => Err(Error::NoOperatorForOsUser { user }),
                }
            }
        }
    }

    /// Checks `passphrase` for operator `name`.
    pub fn verify(&mut self, name: &str, passphrase: &str) -> Result<Operator> {
        let Some((record, hash)) = self.find(name)? else {
            return Err(self.unknown(name));
        };
        if record.disabled {
            return Err(Error::ActingAsDisabled {
                name: name.to_string(),
            });
        }
        let parsed = PasswordHash::new(&hash).map_err(|e| Error::OperatorRecordUnreadable {
            name: name.to_string(),
            problem: e.to_string(),
        })?;
        if Argon2::default()
            .verify_password(passphrase.as_bytes(), &parsed)
            .is_err()
        {
            return Err(Error::WrongPassphrase {
                name: name.to_string(),
            });
        }
        Ok(Operator {
            name: record.name,
            person: record.person,
            role: Some(record.role),
            auth: AuthMethod::Passphrase,
        })
    }

    /// Registers an operator. The first one becomes a supervisor and needs nobody's
    /// permission; after that only a verified supervisor (`by`) adds operators.
    pub fn add(&mut self, new: NewOperator, by: Option<&Operator>) -> Result<OperatorRecord> {
        let first = self.count()? == 0;
        let by_name = match (first, by) {
            (true, _) => new.name.clone(),
            (false, Some(op)) if op.verified() && op.role == Some(Role::Supervisor) => {
                op.name.clone()
            }
            (false, _) => {
                return Err(Error::NotAllowed {
                    rule: "only a supervisor adds operators: act as one with --as NAME".into(),
                })
            }
        };
        check_name(&new.name)?;
        if self.find(&new.name)?.is_some() {
            return Err(Error::OperatorExists { name: new.name });
        }
        let person = match &new.alias_of {
            Some(other) => match self.find(other)? {
                Some((record, _)) => record.person,
                None => return Err(self.unknown(other)),
            },
            None => new.name.clone(),
        };
        let role = if first { Role::Supervisor } else { new.role };
        check_passphrase(&new.passphrase)?;
        let hash = hash_passphrase(&new.passphrase)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let sql = self.sql();
        let tx = self
            .journal
            .connection()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        tx.execute(
            "INSERT INTO operators (name, person, role, os_user, passphrase_hash, disabled, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
            params![new.name, person, role.name(), new.os_user, hash, now],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                Error::OsUserTaken {
                    user: new.os_user.clone().unwrap_or_default(),
                }
            }
            other => sql(other),
        })?;
        append_in(
            &tx,
            OPERATORS_LOG,
            &Event::OperatorChanged {
                action: OperatorAction::Added,
                name: new.name.clone(),
                role: role.name().into(),
                person: person.clone(),
                by: by_name,
                credential: Some(credential_of(&hash)),
                os_user: new.os_user.clone(),
            },
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(OperatorRecord {
            name: new.name,
            person,
            role,
            os_user: new.os_user,
            disabled: false,
            created_at: now,
        })
    }

    /// Disables an operator (a verified supervisor only); a disabled operator cannot act.
    pub fn disable(&mut self, name: &str, by: &Operator) -> Result<()> {
        if !(by.verified() && by.role == Some(Role::Supervisor)) {
            return Err(Error::NotAllowed {
                rule: "only a supervisor disables operators: act as one with --as NAME".into(),
            });
        }
        let Some((record, _)) = self.find(name)? else {
            return Err(self.unknown(name));
        };
        let supervisors_left = self
            .list()?
            .iter()
            .filter(|o| o.role == Role::Supervisor && !o.disabled && o.name != name)
            .count();
        if record.role == Role::Supervisor && !record.disabled && supervisors_left == 0 {
            return Err(Error::NotAllowed {
                rule: format!(
                    "`{name}` is the last active supervisor: add or enable another supervisor first, or nobody could manage operators"
                ),
            });
        }
        self.change(
            name,
            OperatorAction::Disabled,
            &record,
            by,
            "UPDATE operators SET disabled = 1 WHERE name = ?1",
            None,
        )
    }

    /// Enables a disabled operator again (a verified supervisor only).
    pub fn enable(&mut self, name: &str, by: &Operator) -> Result<()> {
        if !(by.verified() && by.role == Some(Role::Supervisor)) {
            return Err(Error::NotAllowed {
                rule: "only a supervisor enables operators: act as one with --as NAME".into(),
            });
        }
        let Some((record, _)) = self.find(name)? else {
            return Err(self.unknown(name));
        };
        if !record.disabled {
            return Err(Error::NotAllowed {
                rule: format!("operator `{name}` is not disabled"),
            });
        }
        self.change(
            name,
            OperatorAction::Enabled,
            &record,
            by,
            "UPDATE operators SET disabled = 0 WHERE name = ?1",
            None,
        )
    }

    /// Sets a new passphrase: the operator themself, or a supervisor for anyone.
    pub fn set_passphrase(&mut self, name: &str, passphrase: &str, by: &Operator) -> Result<()> {
        let allowed = by.verified() && (by.name == name || by.role == Some(Role::Supervisor));
        if !allowed {
            return Err(Error::NotAllowed {
                rule: format!("only `{name}` or a supervisor changes `{name}`'s passphrase"),
            });
        }
        let Some((record, _)) = self.find(name)? else {
            return Err(self.unknown(name));
        };
        check_passphrase(passphrase)?;
        let hash = hash_passphrase(passphrase)?;
        self.change(
            name,
            OperatorAction::PassphraseChanged,
            &record,
            by,
            "UPDATE operators SET passphrase_hash = ?2 WHERE name = ?1",
            Some(hash),
        )
    }

    fn change(
        &mut self,
        name: &str,
        action: OperatorAction,
        record: &OperatorRecord,
        by: &Operator,
        sql: &str,
        value: Option<String>,
    ) -> Result<()> {
        let fail = self.sql();
        let tx = self
            .journal
            .connection()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let credential = match action {
            OperatorAction::PassphraseChanged => value.as_deref().map(credential_of),
            _ => None,
        };
        match value {
            Some(v) => tx.execute(sql, params![name, v]),
            None => tx.execute(sql, params![name]),
        }
        .map_err(&fail)?;
        append_in(
            &tx,
            OPERATORS_LOG,
            &Event::OperatorChanged {
                action,
                name: name.into(),
                role: record.role.name().into(),
                person: record.person.clone(),
                by: by.name.clone(),
                credential,
                os_user: None,
            },
        )
        .map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok(())
    }

    /// The person behind an operator name (itself when unknown, as for unverified users).
    pub fn person_of(&mut self, name: &str) -> Result<String> {
        Ok(self
            .find(name)?
            .map(|(r, _)| r.person)
            .unwrap_or_else(|| name.to_string()))
    }

    /// The record of a named operator, if registered.
    pub fn get(&mut self, name: &str) -> Result<Option<OperatorRecord>> {
        Ok(self.find(name)?.map(|(r, _)| r))
    }
}

/// An operator as the journal's chained events describe it.
struct ChainedOperator {
    person: String,
    role: Role,
    disabled: bool,
    credential: Option<String>,
    os_user: Option<String>,
}

/// What the journal keeps of a passphrase hash: its SHA-256 (the hash itself stays in the
/// directory only).
fn credential_of(passphrase_hash: &str) -> String {
    hex::encode(Sha256::digest(passphrase_hash.as_bytes()))
}

pub struct NewOperator {
    pub name: String,
    pub role: Role,
    pub os_user: Option<String>,
    pub alias_of: Option<String>,
    pub passphrase: String,
}

/// An operator from the columns `name, person, role, os_user, disabled, created_at`.
fn operator_from_row(r: &rusqlite::Row) -> rusqlite::Result<OperatorRecord> {
    Ok(OperatorRecord {
        name: r.get(0)?,
        person: r.get(1)?,
        role: parse_role(&r.get::<_, String>(2)?),
        os_user: r.get(3)?,
        disabled: r.get::<_, i64>(4)? != 0,
        created_at: r.get(5)?,
    })
}

fn parse_role(text: &str) -> Role {
    match text {
        "trainee" => Role::Trainee,
        "supervisor" => Role::Supervisor,
        _ => Role::Operator,
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadOperatorName {
            name: name.to_string(),
        })
    }
}

fn check_passphrase(passphrase: &str) -> Result<()> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(Error::ShortPassphrase {
            min: MIN_PASSPHRASE_CHARS,
        });
    }
    Ok(())
}

fn hash_passphrase(passphrase: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(passphrase.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Encode {
            what: "the passphrase hash",
            problem: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, role: Role, alias_of: Option<&str>) -> NewOperator {
        NewOperator {
            name: name.into(),
            role,
            os_user: None,
            alias_of: alias_of.map(str::to_string),
            passphrase: format!("{name}-passphrase"),
        }
    }

    #[test]
    fn first_is_supervisor_then_only_supervisors_add() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(&dir.path().join("j.db")).unwrap();
        let mut d = Directory::new(&mut journal);
        let first = d.add(new("ann", Role::Trainee, None), None).unwrap();
        assert_eq!(first.role, Role::Supervisor);
        assert!(d.add(new("bob", Role::Operator, None), None).is_err());
        let ann = d.verify("ann", "ann-passphrase").unwrap();
        d.add(new("bob", Role::Trainee, None), Some(&ann)).unwrap();
        let bob = d.verify("bob", "bob-passphrase").unwrap();
        assert!(d.add(new("cy", Role::Operator, None), Some(&bob)).is_err());
        let alias = d
            .add(new("ann2", Role::Operator, Some("ann")), Some(&ann))
            .unwrap();
        assert_eq!(alias.person, "ann");
        assert!(matches!(
            d.verify("bob", "wrong-passphrase"),
            Err(Error::WrongPassphrase { .. })
        ));
        d.disable("bob", &ann).unwrap();
        assert!(d.verify("bob", "bob-passphrase").is_err());
        let stored: String = journal
            .connection()
            .query_row(
                "SELECT passphrase_hash FROM operators WHERE name='ann'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(stored.starts_with("$argon2id$"));
    }
}
