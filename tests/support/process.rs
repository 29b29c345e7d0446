//! Processes: `opsbook` started in the background and never left behind, signals, a terminal
//! (through script(1)) to type answers into, and finding processes by their command line.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use super::{Output, Workspace, BIN};

/// A spawned `opsbook`: no stdin, output piped; killed and reaped if the test ends first, so
/// that a failing test leaves no process behind.
pub struct Proc {
    child: Option<Child>,
    /// Standard output once its first line was read (`first_line_run_id`), and that line.
    stdout: Option<BufReader<ChildStdout>>,
    head: String,
    args: Vec<String>,
    root: PathBuf,
}

impl Proc {
    /// Starts `command` (stdin null, stdout and stderr piped); `args` and `root` are for the
    /// `Output` that `finish` returns.
    pub fn start(command: &mut Command, args: Vec<String>, root: PathBuf) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the process starts");
        Proc {
            child: Some(child),
            stdout: None,
            head: String::new(),
            args,
            root,
        }
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process is still held")
    }

    pub fn has_exited(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_some()
    }

    /// Sends SIGKILL and reaps the process, so that its pid is gone (a zombie looks alive).
    #[track_caller]
    pub fn kill(&mut self) {
        self.child().kill().expect("SIGKILL");
        let status = self.child().wait().unwrap();
        assert_eq!(status.code(), None, "killed by a signal");
    }

    /// Sends SIGINT, as Ctrl-C does.
    #[track_caller]
    pub fn interrupt(&mut self) {
        let pid = self.child().id() as i32;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        let sent = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Sends SIGTERM, as systemd does to stop a service.
    #[track_caller]
    pub fn terminate(&mut self) {
        let pid = self.child().id() as i32;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Reads the first line of `opsbook run` (`run <ULID> ...`) as it is printed: the run id.
    #[track_caller]
    pub fn first_line_run_id(&mut self) -> String {
        let stdout = self.child().stdout.take().expect("stdout is piped");
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut self.head).unwrap();
        let id = self
            .head
            .strip_prefix("run ")
            .and_then(|r| r.split_whitespace().next())
            .filter(|id| id.len() == 26)
            .unwrap_or_else(|| panic!("no run id in {:?}", self.head))
            .to_string();
        self.stdout = Some(reader);
        id
    }

    /// Waits for the end; the exit code is -1 when a signal ended it.
    pub fn finish(mut self) -> Output {
        let mut child = self.child.take().expect("the process is still held");
        // Both pipes are drained at once, so that neither fills up while the other is read.
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            stderr_pipe.read_to_end(&mut bytes).map(|_| bytes)
        });
        let mut rest = Vec::new();
        match self.stdout.take() {
            Some(mut reader) => reader.read_to_end(&mut rest),
            None => child.stdout.take().unwrap().read_to_end(&mut rest),
        }
        .unwrap();
        let stdout = std::mem::take(&mut self.head) + &*String::from_utf8_lossy(&rest);
        let stderr = String::from_utf8_lossy(&stderr.join().unwrap().unwrap()).into_owned();
        let status = child.wait().expect("the process ends");
        Output {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            args: std::mem::take(&mut self.args),
            root: self.root.clone(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Processes whose command line contains `marker` (NULs read as spaces), with that line.
pub fn processes_with(marker: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if line.contains(marker) {
                found.push((name, line));
            }
        }
    }
    found
}

/// Starts `opsbook ARGS --no-progress` on a terminal that script(1) gives it, with `env` set;
/// the child's stdin types into the terminal. The command is `exec`ed so that opsbook is the
/// terminal's foreground process itself: a shell left in between (dash, when `SHELL` is unset)
/// would be killed by a typed Ctrl-C and end the session with 130 while opsbook still runs.
pub fn spawn_on_a_terminal(ws: &Workspace, args: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new("script");
    command
        .args([
            "-qec",
            &format!("exec {BIN} {args} --no-progress"),
            "/dev/null",
        ])
        .current_dir(ws.path())
        .env("OPSBOOK_DB", ws.db())
        .env("OPSBOOK_RUNBOOKS", ws.path().join("runbooks"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("script(1) starts")
}

/// Runs `opsbook ARGS --no-progress` on a terminal (script(1) gives it one) and types `answers`
/// into it. Its `stdout` is the screen, line ends as `\n`: what the program printed and the
/// terminal's echo of what was typed, which may come in any order (the answers are typed at
/// once), so tests look for lines in it with `stdout_has`.
pub fn on_a_terminal(ws: &Workspace, args: &str, answers: &str) -> Output {
    let mut child = spawn_on_a_terminal(ws, args, &[]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        args: vec![format!("{args} (on a terminal)")],
        root: ws.path().to_path_buf(),
    }
}
