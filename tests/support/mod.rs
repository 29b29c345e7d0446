//! The test harness, in the style of casey/just's tests: a temporary workspace (runbooks/,
//! scripts/, a journal database) and a builder that runs the real `opsbook` binary in it.
//!
//! A test states the exit status and the WHOLE of what was printed:
//!
//! ```ignore
//! let ws = Workspace::new();
//! ws.runbook("hello", r#"
//!     runbook: hello
//!     title: Hello
//!     steps:
//!       - id: one
//!         shell: echo one
//! "#);
//! ws.cmd(["check"]).run().status(0).stdout("1 runbook(s) valid\n").stderr("");
//! ```
//!
//! - Runbooks, scripts and expected outputs are written indented with the code: `runbook`,
//!   `script`, `stdout` and `stderr` pass them through [`unindent`]. `file` writes bytes as given.
//! - `stdout` and `stderr` compare the whole stream after [`normalise`]: run ids read `[RUN]`,
//!   the workspace folder `[ROOT]`, times `[TIME]`, durations `[DURATION]`, 64-digit hashes
//!   `[HASH]`, this machine's host and user names `[HOST]` and `[USER]`.
//! - `stdout_has`, `stderr_has` and `stdout_lacks` are the exception, for output that cannot be
//!   pinned whole (a health check of the machine the tests run on, a secret that must be absent,
//!   a spawned process read while it runs). A test that uses one says why, or checks the rest
//!   through the journal.
//! - `#[must_use]` makes a command that is never `run()`, and a run whose result is never
//!   asserted, a compile warning (and so a CI failure).
//!
//! Shared helpers live beside this file: [`journal`] (the journal read straight from SQLite),
//! [`process`] (background processes, signals, a terminal), [`people`] (operators, sign-offs).

#![allow(dead_code)]

pub mod http;
pub mod journal;
pub mod people;
pub mod process;
pub mod text;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use journal::journal_events;
pub use process::Proc;
pub use text::{normalise, unindent};

pub const BIN: &str = env!("CARGO_BIN_EXE_opsbook");

/// A workspace: `runbooks/`, `scripts/` and `opsbook.db` in a fresh temporary folder.
#[must_use = "a workspace is removed when it is dropped"]
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

    /// Writes `runbooks/<id>.yaml`, unindented.
    pub fn runbook(&self, id: &str, yaml: &str) -> &Self {
        self.file(&format!("runbooks/{id}.yaml"), &unindent(yaml))
    }

    /// Writes `scripts/<name>`, unindented.
    pub fn script(&self, name: &str, text: &str) -> &Self {
        self.file(&format!("scripts/{name}"), &unindent(text))
    }

    /// Writes a file under the workspace, byte for byte.
    pub fn file(&self, relative: &str, content: &str) -> &Self {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    /// A command in this workspace: `--db` and `--runbooks` point into it.
    #[must_use = "a command does nothing until it is run()"]
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

    /// Opens the journal for direct inspection (waiting for a writer, should one be busy).
    pub fn journal(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db()).expect("the journal opens");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn
    }

    /// `text` as the exact comparisons see it (see [`normalise`]).
    pub fn normalise(&self, text: &str) -> String {
        normalise(self.path(), text)
    }
}

/// One `opsbook` command, built and then `run()` (or spawned).
#[must_use = "a command does nothing until it is run()"]
pub struct Cmd {
    cwd: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
}

impl Cmd {
    #[must_use = "a command does nothing until it is run()"]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// What is written to its standard input (which is closed either way).
    #[must_use = "a command does nothing until it is run()"]
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.into());
        self
    }

    /// The process to start, for tests that drive it themselves.
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
    #[must_use = "assert the exit status, and what was printed"]
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
            root: self.cwd,
        }
    }

    /// Starts it in the background with no standard input; `Proc::finish` waits for it.
    #[must_use = "a process is killed when its Proc is dropped"]
    pub fn spawn(self) -> Proc {
        Proc::start(&mut self.command(), self.args, self.cwd)
    }
}

/// What a finished command did. The assertions take and give it back, so they chain.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
    /// The workspace it ran in, for normalising.
    pub root: PathBuf,
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

    /// Standard output, whole: `expected` (unindented) must equal it once normalised.
    #[track_caller]
    pub fn stdout(self, expected: &str) -> Self {
        self.exactly("stdout", &self.stdout, expected);
        self
    }

    /// Standard error, whole: `expected` (unindented) must equal it once normalised.
    #[track_caller]
    pub fn stderr(self, expected: &str) -> Self {
        self.exactly("stderr", &self.stderr, expected);
        self
    }

    /// Standard output as `stdout` compares it.
    pub fn normalised_stdout(&self) -> String {
        normalise(&self.root, &self.stdout)
    }

    /// Standard error as `stderr` compares it.
    pub fn normalised_stderr(&self) -> String {
        normalise(&self.root, &self.stderr)
    }

    #[track_caller]
    fn exactly(&self, stream: &str, actual: &str, expected: &str) {
        let expected = unindent(expected);
        let actual = normalise(&self.root, actual);
        if actual != expected {
            panic!(
                "{stream} differs ({})\n--- expected {stream}\n{expected}--- actual {stream} (normalised)\n{actual}--- end\n{}",
                text::first_difference(&expected, &actual),
                self.context()
            );
        }
    }

    /// The exception: `text` appears somewhere in standard output.
    #[track_caller]
    pub fn stdout_has(self, text: &str) -> Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n{}",
            self.context()
        );
        self
    }

    /// The exception: `text` appears somewhere in standard error.
    #[track_caller]
    pub fn stderr_has(self, text: &str) -> Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n{}",
            self.context()
        );
        self
    }

    /// `text` appears nowhere in standard output.
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

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.context()))
    }
}

/// `opsbook show RUN --json`.
pub fn show_json(ws: &Workspace, run_id: &str) -> serde_json::Value {
    ws.cmd(["show", run_id, "--json"]).run().status(0).json()
}

/// The step of `show --json` with this id (the last one, should it appear twice).
#[track_caller]
pub fn step_view<'a>(show: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    show["steps"]
        .as_array()
        .expect("steps is an array")
        .iter()
        .rev()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {show:#}"))
}
