//! Running a command: `sh -c` under a keeper process (`keeper.rs`) that holds everything it
//! starts, environment passed in, stdout and stderr captured up to a cap, the latest line
//! streamed out; when the command ends, times out or is aborted, every process it started is
//! stopped (SIGTERM, then SIGKILL after a grace period), and if the engine dies they are killed
//! at once.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::sys::abort::AbortSignal;
use crate::sys::containment::{Containment, TOKEN_VAR};
use crate::sys::keeper::{self, Report};

/// Bytes kept from the start and from the end of each stream.
const HEAD_BYTES: usize = 16 * 1024;
const TAIL_BYTES: usize = 48 * 1024;
/// Between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How much longer than the grace period a keeper may take to stop a command before it is
/// killed itself.
const KEEPER_SLACK: Duration = Duration::from_secs(3);
/// How long output is still read after the command exited (a background child that keeps
/// the pipe open must not hold the step).
const DRAIN_GRACE: Duration = Duration::from_millis(250);

pub struct CommandSpec {
    pub command: String,
    pub env: Environment,
    pub timeout: Duration,
    /// What marks and holds the command's processes: its step's.
    pub containment: Containment,
}

/// What a command's environment adds to the engine's, and what it leaves out (a secret's
/// source variable, for a step that does not use the secret).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

#[derive(Debug, Default)]
pub struct CommandOutput {
    /// None when the command was ended by a signal.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: CapturedText,
    pub stderr: CapturedText,
    pub timed_out: bool,
    pub aborted: bool,
    pub duration: Duration,
}

/// A stream's output: the first and last bytes of it, and how much was left out between.
#[derive(Debug, Default, Clone)]
pub struct CapturedText {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    omitted: u64,
}

impl CapturedText {
    fn push(&mut self, mut bytes: &[u8]) {
        let room = HEAD_BYTES.saturating_sub(self.head.len());
        let to_head = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..to_head]);
        bytes = &bytes[to_head..];
        if bytes.len() > TAIL_BYTES {
            self.omitted += (bytes.len() - TAIL_BYTES) as u64;
            bytes = &bytes[bytes.len() - TAIL_BYTES..];
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        self.omitted += overflow as u64;
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    /// The captured text, with a marker where bytes were left out.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.omitted > 0 {
            text.push_str(&format!("\n[... {} bytes omitted ...]\n", self.omitted));
        }
        let (a, b) = self.tail.as_slices();
        text.push_str(&String::from_utf8_lossy(&[a, b].concat()));
        text
    }
}

/// Runs `sh -c spec.command` under a keeper (see `keeper.rs`) and waits for it, its timeout, or
/// a hard abort. When it returns, no process the command started is left.
pub async fn run_command(
    spec: &CommandSpec,
    abort: &AbortSignal,
    on_line: impl Fn(&str),
) -> io::Result<CommandOutput> {
    let started = Instant::now();
    // The keeper's standard input; ours stays close-on-exec, so only this process holds it
    // and the keeper reads end of file the moment the engine is gone.
    let (link, keepers_end) = std::os::unix::net::UnixStream::pair()?;
    let mut command = Command::new(keeper::program());
    command
        .arg0("opsbook")
        .arg(keeper::SUBCOMMAND)
        .arg(KILL_GRACE.as_millis().to_string())
        .arg(spec.containment.cgroup.as_deref().unwrap_or(Path::new("")))
        .args(["/bin/sh", "-c"])
        .arg(&spec.command)
        .envs(spec.env.set.iter().map(|(k, v)| (k, v)))
        .env(TOKEN_VAR, &spec.containment.token)
        .stdin(Stdio::from(OwnedFd::from(keepers_end)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Out of the engine's group: a Ctrl-C at the terminal is the engine's to handle.
        .process_group(0);
    for name in &spec.env.remove {
        command.env_remove(name);
    }
    let mut keeper = command.spawn()?;
    // The keeper's end of the socket must be held by the keeper alone.
    drop(command);
    let pid = keeper.id().map(|p| p as i32);
    let stdout = keeper.stdout.take();
    let stderr = keeper.stderr.take();

    let captured_out = RefCell::new(CapturedText::default());
    let captured_err = RefCell::new(CapturedText::default());
    let readers = async {
        tokio::join!(
            read_stream(stdout, &captured_out, &on_line),
            read_stream(stderr, &captured_err, &on_line)
        )
    };
    tokio::pin!(readers);

    let mut output = CommandOutput::default();
    let mut readers_done = false;
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);

    let status = loop {
        tokio::select! {
            status = keeper.wait() => break status?,
            _ = &mut readers, if !readers_done => readers_done = true,
            _ = &mut deadline => {
                output.timed_out = true;
                break stop(&mut keeper, pid).await?;
            }
            _ = abort.hard_requested() => {
                output.aborted = true;
                break stop(&mut keeper, pid).await?;
            }
        }
    };
    if !readers_done {
        let _ = tokio::time::timeout(DRAIN_GRACE, &mut readers).await;
    }

    let report = read_report(link);
    if report.is_none() {
        // The keeper died before it could stop what the command started (killed by someone,
        // or a crash): find it by its token and cgroup.
        let containment = spec.containment.clone();
        let _ = tokio::task::spawn_blocking(move || containment.kill_leftovers()).await;
    }
    use std::os::unix::process::ExitStatusExt;
    match report {
        Some(Report::Exit(code)) => output.exit_code = Some(code),
        Some(Report::Signal(signal)) => output.signal = Some(signal),
        Some(Report::Error(text)) => return Err(io::Error::other(text)),
        // Killed with the command, it seems: say so; else neither code nor signal is known.
        None => output.signal = status.signal(),
    }
    output.stdout = captured_out.take();
    output.stderr = captured_err.take();
    output.duration = started.elapsed();
    Ok(output)
}

/// The keeper's report, from the engine's end of the socket once the keeper has exited.
fn read_report(mut link: std::os::unix::net::UnixStream) -> Option<Report> {
    use std::io::Read;
    // The keeper has exited and nothing else holds its end: this cannot block for long.
    link.set_nonblocking(true).ok()?;
    let mut text = String::new();
    let _ = link.read_to_string(&mut text);
    Report::parse(&text)
}

async fn read_stream(
    stream: Option<impl AsyncRead + Unpin>,
    captured: &RefCell<CapturedText>,
    on_line: &impl Fn(&str),
) {
    let Some(mut stream) = stream else { return };
    let mut buffer = vec![0u8; 8192];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        captured.borrow_mut().push(chunk);
        // Only the latest complete line matters to the display.
        if let Some(end) = chunk.iter().rposition(|&b| b == b'\n') {
            let start = chunk[..end].iter().rposition(|&b| b == b'\n');
            let line: Vec<u8> = match start {
                Some(s) => chunk[s + 1..end].to_vec(),
                None => [partial.as_slice(), &chunk[..end]].concat(),
            };
            on_line(String::from_utf8_lossy(&line).trim_end_matches('\r'));
            partial.clear();
            partial.extend_from_slice(&chunk[end + 1..]);
        } else if partial.len() < 4096 {
            partial.extend_from_slice(chunk);
        }
    }
    if !partial.is_empty() {
        on_line(String::from_utf8_lossy(&partial).trim_end_matches('\r'));
    }
}

/// Asks the keeper to stop the command (SIGTERM: it stops everything the command started,
/// SIGKILL after the grace period) and waits for it; kills the keeper itself only if it does
/// not finish in time, and then its leftovers are looked for by token and cgroup.
async fn stop(
    keeper: &mut tokio::process::Child,
    pid: Option<i32>,
) -> io::Result<std::process::ExitStatus> {
    if let Some(pid) = pid {
        // SAFETY: kill(2) to our own child, not yet reaped (so its pid is still its own).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        if let Ok(status) = tokio::time::timeout(KILL_GRACE + KEEPER_SLACK, keeper.wait()).await {
            return status;
        }
    }
    keeper.start_kill().ok();
    keeper.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str, timeout: Duration) -> CommandSpec {
        CommandSpec {
            command: command.into(),
            env: Environment {
                set: vec![("OPSBOOK_TEST_VALUE".into(), "from env".into())],
                remove: Vec::new(),
            },
            timeout,
            containment: Containment::new("unit", "test"),
        }
    }

    #[tokio::test]
    async fn captures_output_exit_code_and_env() {
        let out = run_command(
            &spec(
                "echo \"$OPSBOOK_TEST_VALUE\"; echo oops >&2; exit 3",
                Duration::from_secs(10),
            ),
            &AbortSignal::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stdout.text(), "from env\n");
        assert_eq!(out.stderr.text(), "oops\n");
        assert!(!out.timed_out);
    }

    #[tokio::test]
    async fn timeout_kills_the_group() {
        let out = run_command(
            &spec(
                "sleep 30 & sleep 30; echo never",
                Duration::from_millis(300),
            ),
            &AbortSignal::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        assert!(out.duration < Duration::from_secs(10));
        assert!(!out.stdout.text().contains("never"));
    }

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut c = CapturedText::default();
        c.push(&vec![b'a'; HEAD_BYTES]);
        c.push(&vec![b'b'; 100_000]);
        c.push(b"end");
        let text = c.text();
        assert!(text.starts_with(&"a".repeat(HEAD_BYTES)));
        assert!(text.ends_with("bend"));
        assert!(text.contains(&format!("[... {} bytes omitted ...]", 100_003 - TAIL_BYTES)));
    }
}
