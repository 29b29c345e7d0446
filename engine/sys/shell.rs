//! Running a command: `sh -c` under a keeper process (`keeper.rs`) that holds everything it
//! starts, environment passed in, stdout and stderr captured up to a cap, the latest line
//! streamed out; when the command ends, times out or is aborted, every process it started is
//! stopped (SIGTERM, then SIGKILL after a grace period), and if the engine dies they are killed
//! at once.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{pipe, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::Sleep;

use crate::sys::abort::AbortSignal;
use crate::sys::containment::Containment;
use crate::sys::keeper::{Report, Request};
use crate::sys::keepers;

/// Bytes kept from the start and from the end of each stream.
const HEAD_BYTES: usize = 16 * 1024;
const TAIL_BYTES: usize = 48 * 1024;
/// Between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How much longer than the grace period a keeper may take to stop a command before its link
/// is closed (then it kills everything at once), and then before it is given up on.
const KEEPER_SLACK: Duration = Duration::from_secs(3);
/// A deadline that does not come.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
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
    let launched = keepers::launch()?;
    let request = Request {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), spec.command.clone()],
        set: spec.env.set.clone(),
        remove: spec.env.remove.clone(),
        token: spec.containment.token.clone(),
        cgroup: spec.containment.cgroup.clone(),
        grace_ms: KILL_GRACE.as_millis() as u64,
    };
    let mut line = serde_json::to_vec(&request).map_err(io::Error::other)?;
    line.push(b'\n');
    let link = std::os::unix::net::UnixStream::from(launched.link);
    link.set_nonblocking(true)?;
    let (mut from_keeper, mut to_keeper) = UnixStream::from_std(link)?.into_split();
    to_keeper.write_all(&line).await?;
    let stdout = pipe::Receiver::from_owned_fd(launched.stdout)?;
    let stderr = pipe::Receiver::from_owned_fd(launched.stderr)?;

    let captured_out = RefCell::new(CapturedText::default());
    let captured_err = RefCell::new(CapturedText::default());
    let readers = async {
        tokio::join!(
            read_stream(Some(stdout), &captured_out, &on_line),
            read_stream(Some(stderr), &captured_err, &on_line)
        )
    };
    tokio::pin!(readers);
    // The keeper writes its report and closes the link when it exits.
    let mut report = Vec::new();
    let keeper_done = from_keeper.read_to_end(&mut report);
    tokio::pin!(keeper_done);

    let mut output = CommandOutput::default();
    let mut readers_done = false;
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    // Once a stop is asked for: how long the keeper has to finish.
    let patience = tokio::time::sleep(NEVER);
    tokio::pin!(patience);
    let mut stop = Stop::NotAsked;
    loop {
        tokio::select! {
            _ = &mut keeper_done => break,
            _ = &mut readers, if !readers_done => readers_done = true,
            _ = &mut deadline, if stop == Stop::NotAsked => {
                output.timed_out = true;
                stop = ask_to_stop(&mut to_keeper, patience.as_mut()).await;
            }
            _ = abort.hard_requested(), if stop == Stop::NotAsked => {
                output.aborted = true;
                stop = ask_to_stop(&mut to_keeper, patience.as_mut()).await;
            }
            _ = &mut patience, if stop != Stop::NotAsked => {
                if stop == Stop::Forced {
                    // Given up on the keeper: what it leaves is looked for below.
                    break;
                }
                // End of file: the keeper kills everything at once, as if the engine had died.
                stop = Stop::Forced;
                let _ = to_keeper.shutdown().await;
                patience.as_mut().reset(tokio::time::Instant::now() + KEEPER_SLACK);
            }
        }
    }
    if !readers_done {
        let _ = tokio::time::timeout(DRAIN_GRACE, &mut readers).await;
    }

    let report = Report::parse(&String::from_utf8_lossy(&report));
    if report.is_none() {
        // The keeper died before it could stop what the command started (killed by someone,
        // or a crash): find that by its token and cgroup.
        let containment = spec.containment.clone();
        let _ = tokio::task::spawn_blocking(move || containment.kill_leftovers()).await;
    }
    match report {
        Some(Report::Exit(code)) => output.exit_code = Some(code),
        Some(Report::Signal(signal)) => output.signal = Some(signal),
        Some(Report::Error(text)) => return Err(io::Error::other(text)),
        // Neither code nor signal is known.
        None => {}
    }
    output.stdout = captured_out.take();
    output.stderr = captured_err.take();
    output.duration = started.elapsed();
    Ok(output)
}

/// Any byte asks the keeper to stop the command: SIGTERM, then SIGKILL after the grace period,
/// to everything it started. It has that long, and some slack, to finish.
async fn ask_to_stop(to_keeper: &mut OwnedWriteHalf, patience: Pin<&mut Sleep>) -> Stop {
    let _ = to_keeper.write_all(b"stop\n").await;
    patience.reset(tokio::time::Instant::now() + KILL_GRACE + KEEPER_SLACK);
    Stop::Asked
}

/// Where a request to stop the command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    NotAsked,
    /// Asked of the keeper; it has the grace period and some slack to finish.
    Asked,
    /// It did not finish in time: its link is closed, and it has the slack once more.
    Forced,
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
