//! The test harness: a temporary workspace (runbooks/, scripts/, a journal database) and a
//! builder that runs the real `opsbook` binary in it.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_opsbook");

/// A workspace: `runbooks/`, `scripts/` and `opsbook.db` in a fresh temporary folder.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::create_dir_all(dir.path().join("runbooks")).unwrap();
        std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("opsbook.db")
    }

    /// Writes `runbooks/<id>.yaml`.
    pub fn runbook(&self, id: &str, yaml: &str) -> &Self {
        self.file(&format!("runbooks/{id}.yaml"), yaml)
    }

    /// Writes `scripts/<name>`.
    pub fn script(&self, name: &str, text: &str) -> &Self {
        self.file(&format!("scripts/{name}"), text)
    }

    pub fn file(&self, relative: &str, content: &str) -> &Self {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    /// A command in this workspace: `--db` and `--runbooks` point into it.
    pub fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Cmd {
            cwd: self.path().to_path_buf(),
            args: args.into_iter().map(|a| a.as_ref().to_string()).collect(),
            env: vec![
                ("OPSBOOK_DB".into(), self.db().display().to_string()),
                (
                    "OPSBOOK_RUNBOOKS".into(),
                    self.path().join("runbooks").display().to_string(),
                ),
            ],
            stdin: None,
        }
    }

    /// Opens the journal for direct inspection.
    pub fn journal(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).expect("the journal opens")
    }
}

pub struct Cmd {
    cwd: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
}

impl Cmd {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.into());
        self
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(&self.args)
            .current_dir(&self.cwd)
            .env_remove("OPSBOOK_CONFIG")
            .env_remove("OPSBOOK_PASSPHRASE")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::piped());
        command
    }

    /// Runs to completion.
    pub fn run(self) -> Output {
        let mut child = self.command().spawn().expect("opsbook starts");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = &self.stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().expect("opsbook finishes");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            args: self.args,
        }
    }
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Output {
    fn context(&self) -> String {
        format!(
            "opsbook {}\n--- exit {}\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    #[track_caller]
    pub fn status(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code\n{}", self.context());
        self
    }

    #[track_caller]
    pub fn stdout_has(self, text: &str) -> Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(self, text: &str) -> Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub fn stdout_lacks(self, text: &str) -> Self {
        assert!(
            !self.stdout.contains(text),
            "stdout has {text:?}\n{}",
            self.context()
        );
        self
    }

    /// The run id from the first line of `opsbook run` (`run <ULID> ...`).
    #[track_caller]
    pub fn run_id(&self) -> String {
        let first = self.stdout.lines().next().unwrap_or_default();
        let id = first
            .strip_prefix("run ")
            .and_then(|r| r.split_whitespace().next());
        match id {
            Some(id) if id.len() == 26 => id.to_string(),
            _ => panic!("no run id on the first line\n{}", self.context()),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.context()))
    }
}

/// One row of the journal's `events` table, read directly.
#[derive(Debug, Clone)]
pub struct JournalEvent {
    pub seq: i64,
    pub run_id: String,
    pub run_seq: i64,
    pub at: String,
    pub kind: String,
    pub step: Option<String>,
    /// The stored JSON text, byte for byte.
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Every event of the workspace's journal, in `seq` order.
pub fn journal_events(ws: &Workspace) -> Vec<JournalEvent> {
    let conn = ws.journal();
    let mut stmt = conn
        .prepare(
            "SELECT seq, run_id, run_seq, at, kind, step, body, prev_hash, hash
             FROM events ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(JournalEvent {
            seq: r.get(0)?,
            run_id: r.get(1)?,
            run_seq: r.get(2)?,
            at: r.get(3)?,
            kind: r.get(4)?,
            step: r.get(5)?,
            body: r.get(6)?,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        })
    })
    .unwrap()
    .collect::<rusqlite::Result<Vec<_>>>()
    .unwrap()
}

/// The hash an event must have, recomputed here from the documented algorithm (not from the
/// engine's code): SHA-256 over the previous hash (hex) and each field as its length (8 bytes,
/// big-endian) and its UTF-8 bytes, integers in decimal.
pub fn expected_hash(e: &JournalEvent) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(e.prev_hash.as_bytes());
    for field in [
        e.seq.to_string().as_str(),
        &e.run_id,
        e.run_seq.to_string().as_str(),
        &e.at,
        &e.kind,
        e.step.as_deref().unwrap_or(""),
        &e.body,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}
