//! The runbook file format: the serde model of a runbook YAML file, and loading it from disk
//! with the size cap that keeps hostile input from costing time or memory.
//!
//! The model is strict (`deny_unknown_fields`). Reporting every problem of a file at once, each
//! at its line and column, is the analyzer's job (`analyze`); this module only says what a
//! well-formed runbook is.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::sys::files::{self, ReadProblem};

/// Runbook and script files larger than this are refused before any parsing.
pub const MAX_FILE_BYTES: u64 = files::MAX_SOURCE_BYTES;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// The id; the file is `runbooks/<id>.yaml`.
    pub runbook: String,
    pub title: String,
    #[serde(default = "one")]
    pub version: u32,
    pub owner: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub risk: Risk,
    #[serde(default)]
    pub change: ChangePolicy,
    pub window: Option<String>,
    pub review_every: Option<String>,
    pub last_reviewed: Option<String>,
    #[serde(default)]
    pub kind: RunbookKind,
    #[serde(default)]
    pub params: IndexMap<String, ParamSpec>,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub rollback: Vec<Step>,
    /// What a trainee needs before running this runbook unsupervised.
    pub qualification: Option<Qualification>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Qualification {
    /// Accepted supervised runs of this runbook a trainee needs.
    pub supervised_runs: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    #[default]
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangePolicy {
    #[default]
    None,
    Required,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunbookKind {
    #[default]
    Runbook,
    Test,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type", default)]
    pub kind: ParamType,
    #[serde(default)]
    pub required: bool,
    pub default: Option<serde_yaml::Value>,
    pub pattern: Option<String>,
    #[serde(rename = "enum")]
    pub choices: Option<Vec<serde_yaml::Value>>,
    pub description: Option<String>,
    #[serde(default)]
    pub secret: bool,
    /// The environment variable the value is read from (the only source of a secret).
    pub env: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    #[default]
    String,
    Int,
    Float,
    Bool,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
        }
    }
}

/// One step as written. Exactly one of the kind keys (`rhai`, `script`, `shell`, `manual`,
/// `gate`, `parallel`) is set; the analyzer turns it into a [`crate::runbook::plan::StepKind`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,

    pub rhai: Option<String>,
    pub script: Option<String>,
    pub shell: Option<String>,
    pub manual: Option<String>,
    pub gate: Option<Gate>,
    pub parallel: Option<Vec<Step>>,

    pub when: Option<String>,
    pub timeout: Option<String>,
    pub retry: Option<Retry>,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default)]
    pub readonly: bool,
    #[serde(default)]
    pub idempotent: bool,
    /// In a rollback step: the step it undoes; it runs only when that step was started.
    pub undo: Option<String>,
    /// In a test script (`kind: test`): a Rhai expression over the step's outputs, or for a
    /// manual step the text the operator compares against.
    pub expect: Option<String>,
}

/// The step kind keys, in the order they are reported.
pub const STEP_KINDS: [&str; 6] = ["rhai", "script", "shell", "manual", "gate", "parallel"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub prompt: String,
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default = "one")]
    pub min_approvals: u32,
    #[serde(default)]
    pub four_eyes: bool,
    #[serde(default)]
    pub evidence: Evidence,
    #[serde(default)]
    pub show: Vec<String>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Trainee,
    #[default]
    Operator,
    Supervisor,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Trainee => "trainee",
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Evidence {
    Required,
    #[default]
    Optional,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    #[default]
    Reject,
    Abort,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    pub attempts: u32,
    pub delay: Option<String>,
    /// Each delay is the previous one times this factor (1.0: constant delay).
    pub backoff: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Abort,
    Continue,
    Rollback,
}

/// The stored word of each enum of the format: the same text serde reads and writes, so that
/// messages, reports and the journal never show Rust's `Debug` spelling.
macro_rules! words {
    ($($ty:ident { $($variant:ident => $word:literal),+ $(,)? })+) => {$(
        impl $ty {
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }
    )+};
}

words! {
    Risk { Low => "low", Medium => "medium", High => "high" }
    ChangePolicy { None => "none", Required => "required" }
    RunbookKind { Runbook => "runbook", Test => "test" }
    Evidence { Required => "required", Optional => "optional" }
    OnTimeout { Reject => "reject", Abort => "abort" }
    OnFailure { Abort => "abort", Continue => "continue", Rollback => "rollback" }
}

/// A file read from disk, with its content hash (what sign-offs and resumes are bound to).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Hex SHA-256 of the bytes.
    pub content_hash: String,
}

impl SourceFile {
    /// Reads a runbook or script file, refusing anything but a regular file of at most
    /// [`MAX_FILE_BYTES`] before reading it.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = files::read_capped(path, MAX_FILE_BYTES).map_err(|problem| match problem {
            ReadProblem::TooLarge { size, limit } => Error::file(
                path,
                format!(
                    "is {size} bytes; runbooks and scripts are limited to {limit} bytes (1 MiB): split it, or move data out of it"
                ),
            ),
            other => Error::file(path, other.to_string()),
        })?;
        Self::from_bytes(path, bytes)
    }

    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let content_hash = hex::encode(Sha256::digest(&bytes));
        let mut text = String::from_utf8(bytes)
            .map_err(|e| Error::file(path, format!("is not UTF-8 text ({e})")))?;
        // Editors on some systems start a file with a byte-order mark; it is not content.
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        Ok(Self {
            path: path.to_path_buf(),
            text,
            content_hash,
        })
    }
}

/// The field names serde accepts for a struct: the one list of known keys, so that the
/// analyzer's "unknown key" check cannot drift from the model.
pub fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    struct Probe(Option<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for &mut Probe {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(de::Error::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_serde_renames() {
        let fields = field_names::<ParamSpec>();
        assert!(fields.contains(&"type"));
        assert!(fields.contains(&"enum"));
        assert!(!fields.contains(&"kind"));
        assert!(field_names::<Step>().contains(&"on_failure"));
    }

    #[test]
    fn stored_words_are_the_serde_names() {
        fn serde_word(value: impl Serialize) -> String {
            serde_yaml::to_string(&value).unwrap().trim().to_string()
        }
        for r in [Risk::Low, Risk::Medium, Risk::High] {
            assert_eq!(r.name(), serde_word(r));
        }
        for c in [ChangePolicy::None, ChangePolicy::Required] {
            assert_eq!(c.name(), serde_word(c));
        }
        for k in [RunbookKind::Runbook, RunbookKind::Test] {
            assert_eq!(k.name(), serde_word(k));
        }
        for e in [Evidence::Required, Evidence::Optional] {
            assert_eq!(e.name(), serde_word(e));
        }
        for t in [OnTimeout::Reject, OnTimeout::Abort] {
            assert_eq!(t.name(), serde_word(t));
        }
        for f in [OnFailure::Abort, OnFailure::Continue, OnFailure::Rollback] {
            assert_eq!(f.name(), serde_word(f));
        }
        for r in [Role::Trainee, Role::Operator, Role::Supervisor] {
            assert_eq!(r.name(), serde_word(r));
        }
    }

    #[test]
    fn the_design_example_deserializes() {
        let yaml = r#"
runbook: pg-vacuum
title: Weekly PostgreSQL vacuum and health check
version: 3
owner: dba-team
description: Vacuums and analyzes every database.
tags: [database, weekly]
risk: medium
change: none
window: sunday-night
review_every: 90d
last_reviewed: 2026-11-01
params:
  host:     { type: string, required: true, pattern: '^[a-z0-9.-]+$', description: Database host }
  min_free: { type: int, default: 20 }
  password: { type: string, secret: true, env: PGPASSWORD }
steps:
  - id: disk
    readonly: true
    rhai: |
      assert(true, "ok");
  - id: backup-confirmed
    gate: { prompt: Confirm backup, role: supervisor, four_eyes: true, evidence: required }
  - id: vacuum
    shell: vacuumdb --all --analyze --host {{ params.host }}
    timeout: 30m
    retry: { attempts: 2, delay: 10s }
    when: "!dry_run"
    on_failure: rollback
  - id: tell-users
    manual: Post the completion notice
rollback:
  - id: restore-settings
    shell: "true"
"#;
        let rb: Runbook = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(rb.version, 3);
        assert_eq!(
            rb.params.keys().collect::<Vec<_>>(),
            ["host", "min_free", "password"]
        );
        assert_eq!(rb.steps[1].gate.as_ref().unwrap().role, Role::Supervisor);
        assert_eq!(rb.steps[2].on_failure, OnFailure::Rollback);
    }
}
