//! Running a command: `sh -c` in its own process group, environment passed in, stdout and
//! stderr captured up to a cap, the latest line streamed out, and on timeout or abort the
//! whole process group stopped (SIGTERM, then SIGKILL after a grace period).

use std::cell::RefCell;
use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::sys::abort::AbortSignal;

/// Bytes kept from the start and from the end of each stream.
const HEAD_BYTES: usize = 16 * 1024;
const TAIL_BYTES: usize = 48 * 1024;
/// Between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long output is still read after the command exited (a background child that keeps
/// the pipe open must not hold the step).
const DRAIN_GRACE: Duration = Duration::from_millis(250);

pub struct CommandSpec {
    pub command: String,
    pub env: Environment,
    pub timeout: Duration,
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

/// Runs `sh -c spec.command` and waits for it, its timeout, or a hard abort.
pub async fn run_command(
    spec: &CommandSpec,
    abort: &AbortSignal,
    on_line: impl Fn(&str),
) -> io::Result<CommandOutput> {
    let started = Instant::now();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .envs(spec.env.set.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe. If the engine dies (even by SIGKILL) the command's shell
    // dies with it, so a resumed run does not race a half-orphaned copy of the step.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    for name in &spec.env.remove {
        command.env_remove(name);
    }
    let mut child = command.spawn()?;
    let pid = child.id().map(|p| p as i32);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

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
            status = child.wait() => break status?,
            _ = &mut readers, if !readers_done => readers_done = true,
            _ = &mut deadline => {
                output.timed_out = true;
                break stop_group(&mut child, pid).await?;
            }
            _ = abort.hard_requested() => {
                output.aborted = true;
                break stop_group(&mut child, pid).await?;
            }
        }
    };
    if !readers_done {
        let _ = tokio::time::timeout(DRAIN_GRACE, &mut readers).await;
    }

    use std::os::unix::process::ExitStatusExt;
    output.exit_code = status.code();
    output.signal = status.signal();
    output.stdout = captured_out.take();
    output.stderr = captured_err.take();
    output.duration = started.elapsed();
    Ok(output)
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

/// SIGTERM to the whole group, SIGKILL after the grace period, and reap the child.
async fn stop_group(
    child: &mut tokio::process::Child,
    pid: Option<i32>,
) -> io::Result<std::process::ExitStatus> {
    if let Some(pid) = pid {
        signal_group(pid, libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(KILL_GRACE, child.wait()).await {
            // The leader is gone; make sure nothing it started lives on in its group.
            signal_group(pid, libc::SIGKILL);
            return status;
        }
        signal_group(pid, libc::SIGKILL);
    }
    child.start_kill().ok();
    child.wait().await
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created for the
    // command (process_group(0) makes its pid the group id); it touches no memory.
    unsafe {
        libc::kill(-pgid, signal);
    }
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
