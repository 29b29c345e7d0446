//! The keeper: the small process every command runs under, so that no process a step starts
//! outlives it. The keepers' parent (`keepers.rs`) forks one per command, and the keeper
//! - reads the engine's request on its standard input, one end of a socket pair whose other end
//!   only the engine holds (close-on-exec everywhere else);
//! - makes itself a child subreaper: every descendant orphaned on the way (a background job, a
//!   double fork, a `setsid` daemon) is re-parented to it, so the keeper's descendants are
//!   exactly the processes the command started;
//! - starts the program (`/bin/sh -c COMMAND`) in a process group of its own, with the step's
//!   token in its environment and, where the engine gave one, in the step's cgroup;
//! - watches the socket: end of file there means the engine is gone, however it died, since
//!   the kernel closes a dead process's descriptors; anything written there is a request to
//!   stop the command (a timeout, a hard abort), as is SIGTERM;
//! - when the program exits or a stop is asked for, stops every remaining descendant: SIGTERM
//!   to the program's group, its descendants and its cgroup, then SIGKILL to whatever is left
//!   after the grace period, reaping them all; when the engine is gone, SIGKILL at once;
//! - and writes back on the socket how the program ended (`exit N`, `signal N`, or `error TEXT`
//!   when it could not start), so the engine reads the same status as if it had run it itself.
//!
//! The keeper does not rely on PR_SET_PDEATHSIG: that fires when the *thread* that forked it
//! ends, not the engine process.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sys::containment::{self, cgroup, TOKEN_VAR};

/// How long the keeper keeps killing a descendant that will not die (stuck in the kernel)
/// before it reports anyway.
const KILL_PATIENCE: Duration = Duration::from_secs(10);
/// How often the keeper looks again for what is left, while it kills.
const LOOK_AGAIN: Duration = Duration::from_millis(10);

/// What the engine asks of a keeper, as one line of JSON on the socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub program: String,
    pub args: Vec<String>,
    /// What the command's environment adds to the engine's, and what it leaves out.
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// Marks every process of the command (`OPSBOOK_STEP_TOKEN`).
    pub token: String,
    /// The step's cgroup, to be created and joined, where the host allows one.
    pub cgroup: Option<PathBuf>,
    /// Between SIGTERM and SIGKILL.
    pub grace_ms: u64,
}

/// How the program ended, as the keeper reports it to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Exit(i32),
    Signal(i32),
    /// It could not be started.
    Error(String),
}

impl Report {
    pub fn line(&self) -> String {
        match self {
            Report::Exit(code) => format!("exit {code}\n"),
            Report::Signal(signal) => format!("signal {signal}\n"),
            Report::Error(text) => format!("error {}\n", text.replace('\n', " ")),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (word, rest) = text.trim_end_matches('\n').split_once(' ')?;
        match word {
            "exit" => rest.parse().ok().map(Report::Exit),
            "signal" => rest.parse().ok().map(Report::Signal),
            "error" => Some(Report::Error(rest.to_string())),
            _ => None,
        }
    }
}

/// The keeper, in a process the keepers' parent just forked: `link` is its end of the socket to
/// the engine, `stdout` and `stderr` the command's. Returns the exit code: the program's own,
/// 128 + the signal that ended it, or 127 when it could not start.
pub fn main(link: OwnedFd, stdout: OwnedFd, stderr: OwnedFd) -> i32 {
    for (fd, target) in [(&link, 0), (&stdout, 1), (&stderr, 2)] {
        // SAFETY: dup2(2) onto the standard descriptors of this (single-threaded) process.
        unsafe { libc::dup2(fd.as_raw_fd(), target) };
    }
    drop((link, stdout, stderr));
    // SAFETY: setpgid(2), signal(2) and prctl(2) with constants: out of the parent's group (a
    // signal to it is not for the command), children reported again (the parent ignores them),
    // and a name for `ps`.
    unsafe {
        libc::setpgid(0, 0);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        libc::prctl(libc::PR_SET_NAME, c"opsbook-keeper".as_ptr());
    }
    let (report, cgroup) =
        match read_request().and_then(|(request, stop)| Keeper::start(request, stop)) {
            Ok(keeper) => keeper.run(),
            Err(e) => (Report::Error(e.to_string()), None),
        };
    // If the engine is gone, nobody reads this.
    let _ = engine().write_all(report.line().as_bytes());
    // Every process of the command is gone: the engine goes on once the link and the output
    // pipes close, while the keeper removes the empty cgroup.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        for fd in 0..=2 {
            // SAFETY: dup2(2) over the standard descriptors, which nothing else here uses now.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    if let Some(path) = cgroup {
        cgroup::remove(&path);
    }
    match report {
        Report::Exit(code) => code,
        Report::Signal(signal) => 128 + signal,
        Report::Error(_) => 127,
    }
}

/// The socket to the engine: standard input, kept open for the life of the process.
fn engine() -> std::mem::ManuallyDrop<std::fs::File> {
    // SAFETY: fd 0 is open for the life of the process; ManuallyDrop never closes it.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) })
}

/// The request, and whether a stop came right behind it.
fn read_request() -> io::Result<(Request, bool)> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = text.iter().position(|b| *b == b'\n') {
            break end;
        }
        match engine().read(&mut chunk) {
            Ok(0) => return Err(io::Error::other("the engine went away before its request")),
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let request = serde_json::from_slice(&text[..end])
        .map_err(|e| io::Error::other(format!("a request the keeper cannot read: {e}")))?;
    Ok((request, text.len() > end + 1))
}

/// What woke the keeper up.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    EngineGone,
    Stop,
    Child,
    Timeout,
}

struct Keeper {
    grace: Duration,
    cgroup: Option<PathBuf>,
    /// The program's pid, which is also its process group's id.
    program: i32,
    /// Its status, once reaped; until then its zombie keeps the group id from being reused.
    status: Option<Report>,
    signals: OwnedFd,
    me: i32,
    /// A stop was asked for before the program started.
    stop: bool,
}

impl Keeper {
    fn start(request: Request, stop: bool) -> io::Result<Self> {
        // SAFETY: prctl(2) with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let (signals, mask) = signal_fd()?;
        let mut cgroup = request.cgroup.clone();
        let joined = match cgroup.as_deref().map(cgroup::create) {
            Some(Ok(procs)) => spawn(&request, mask, Some(&procs)).ok(),
            _ => None,
        };
        let child = match joined {
            Some(child) => child,
            // Without a cgroup (none given, not allowed, not joinable), the subreaper and the
            // token still hold every process.
            None => {
                if let Some(path) = cgroup.take() {
                    cgroup::remove(&path);
                }
                spawn(&request, mask, None)?
            }
        };
        Ok(Self {
            grace: Duration::from_millis(request.grace_ms),
            cgroup,
            program: child.id() as i32,
            status: None,
            signals,
            me: std::process::id() as i32,
            stop,
        })
    }

    /// Runs until the program and everything it started are gone; how the program ended, and
    /// the cgroup to remove.
    fn run(mut self) -> (Report, Option<PathBuf>) {
        loop {
            let wake = if self.stop {
                Wake::Stop
            } else {
                self.wait(true, None)
            };
            match wake {
                Wake::EngineGone => {
                    self.kill_all();
                    return self.finish();
                }
                Wake::Stop => {
                    self.signal_all(libc::SIGTERM);
                    break;
                }
                Wake::Child if self.program_exited() => {
                    // While its zombie holds the group id, the group can be signalled safely.
                    self.signal_group(libc::SIGTERM);
                    self.reap();
                    if self.has_children() {
                        self.signal_all(libc::SIGTERM);
                    }
                    break;
                }
                Wake::Child | Wake::Timeout => {}
            }
        }
        let deadline = Instant::now() + self.grace;
        loop {
            self.reap();
            if !self.has_children() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill_all();
                break;
            }
            if self.wait(true, Some(left)) == Wake::EngineGone {
                self.kill_all();
                break;
            }
        }
        self.finish()
    }

    /// How the program ended, and the cgroup to remove.
    fn finish(self) -> (Report, Option<PathBuf>) {
        let report = self.status.unwrap_or(Report::Signal(libc::SIGKILL));
        (report, self.cgroup)
    }

    /// Waits for a signal or, when `watch_engine` is set, the engine's socket; at most
    /// `timeout`.
    fn wait(&self, watch_engine: bool, timeout: Option<Duration>) -> Wake {
        let mut fds = [
            libc::pollfd {
                // poll(2) skips a negative descriptor.
                fd: if watch_engine { 0 } else { -1 },
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            },
            libc::pollfd {
                fd: self.signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.map_or(-1, |t| t.as_millis().clamp(1, i32::MAX as u128) as i32);
        // SAFETY: poll(2) on an array of two pollfd that lives across the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n <= 0 {
            return Wake::Timeout;
        }
        let mut wake = Wake::Timeout;
        if fds[0].revents != 0 {
            let mut bytes = [0u8; 64];
            match engine().read(&mut bytes) {
                Ok(n) if n > 0 => wake = Wake::Stop,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return Wake::EngineGone,
            }
        }
        if fds[1].revents != 0 {
            for signal in self.drain_signals() {
                wake = match signal as i32 {
                    libc::SIGCHLD if wake != Wake::Stop => Wake::Child,
                    libc::SIGCHLD => wake,
                    _ => Wake::Stop,
                };
            }
        }
        wake
    }

    fn drain_signals(&self) -> Vec<u32> {
        let mut signals = Vec::new();
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads whole signalfd_siginfo records into a buffer of that size; the
        // descriptor is non-blocking, so the loop ends when none is pending.
        while unsafe { libc::read(self.signals.as_raw_fd(), info.as_mut_ptr().cast(), size) }
            == size as isize
        {
            signals.push(unsafe { info.assume_init_ref() }.ssi_signo);
        }
        signals
    }

    /// Whether the program has exited; it is left a zombie, and the other children that exited
    /// are reaped.
    fn program_exited(&self) -> bool {
        loop {
            let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
            // SAFETY: waitid(2) writes one siginfo_t; WNOWAIT leaves the child waitable.
            let r = unsafe {
                libc::waitid(
                    libc::P_ALL,
                    0,
                    info.as_mut_ptr(),
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            // SAFETY: zeroed before the call and written by it on success.
            let pid = unsafe { info.assume_init_ref().si_pid() };
            if r != 0 || pid == 0 {
                return false;
            }
            if pid == self.program {
                return true;
            }
            // SAFETY: reaps the child that waitid just said has exited.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }

    /// Reaps every child that has exited, keeping the program's status.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) writes one int.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if pid == self.program {
                self.status = Some(if libc::WIFSIGNALED(status) {
                    Report::Signal(libc::WTERMSIG(status))
                } else {
                    Report::Exit(libc::WEXITSTATUS(status))
                });
            }
        }
    }

    /// Whether any descendant is left (a subreaper's descendants are all its children or
    /// theirs, so it has one while it has a child).
    fn has_children(&self) -> bool {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: as in program_exited; ECHILD means no child at all.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        !(r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
    }

    /// Signals the program's process group, while the program is not yet reaped (so the group
    /// id is still its own).
    fn signal_group(&self, signal: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) touches no memory.
            unsafe {
                libc::kill(-self.program, signal);
                if signal == libc::SIGTERM {
                    // A stopped process acts on SIGTERM only once continued.
                    libc::kill(-self.program, libc::SIGCONT);
                }
            }
        }
    }

    /// Signals everything the program started: its group, every descendant of the keeper, and
    /// everything in the cgroup.
    fn signal_all(&self, signal: i32) {
        self.signal_group(signal);
        for (pid, parent) in containment::descendants(self.me) {
            if containment::signal_if(pid, signal, || containment::parent_of(pid) == Some(parent))
                && signal == libc::SIGTERM
            {
                containment::signal_if(pid, libc::SIGCONT, || true);
            }
        }
        if let Some(path) = &self.cgroup {
            if signal == libc::SIGKILL {
                cgroup::kill(path);
            } else {
                cgroup::signal(path, signal);
            }
        }
    }

    /// SIGKILL to everything left, again and again until nothing is (or patience runs out).
    fn kill_all(&mut self) {
        let until = Instant::now() + KILL_PATIENCE;
        loop {
            self.signal_all(libc::SIGKILL);
            self.reap();
            if !self.has_children() || Instant::now() >= until {
                return;
            }
            // Woken early by a child's end; the engine's socket no longer matters.
            self.wait(false, Some(LOOK_AGAIN));
        }
    }
}

/// Starts the requested program in a process group of its own, standard input from
/// /dev/null, with its environment and the token, the signal mask the keeper started with (std
/// passes the current one on), and into a cgroup by writing to its `procs` file, if given.
fn spawn(
    request: &Request,
    mask: libc::sigset_t,
    procs: Option<&std::fs::File>,
) -> io::Result<std::process::Child> {
    let mut command = std::process::Command::new(&request.program);
    command
        .args(&request.args)
        .envs(request.set.iter().map(|(k, v)| (k, v)))
        .env(TOKEN_VAR, &request.token)
        .stdin(Stdio::null())
        .process_group(0);
    for name in &request.remove {
        command.env_remove(name);
    }
    let procs = procs.map(|f| f.as_raw_fd());
    // SAFETY: runs in the child between fork and exec and only calls sigprocmask(2) on a copy
    // of a set made before the fork, and write(2) on a descriptor opened before it (it outlives
    // the spawn): async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(procs) = procs {
                if libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn()
}

/// A descriptor that reads SIGCHLD, SIGTERM, SIGINT and SIGHUP, which are blocked from now on,
/// and the signal mask from before, for the program.
fn signal_fd() -> io::Result<(OwnedFd, libc::sigset_t)> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    let mut before = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: the set is initialised by sigemptyset before use and `before` by sigprocmask;
    // the keeper is single-threaded, so sigprocmask blocks the signals for the whole process.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for signal in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, set.as_ptr(), before.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, set.as_ptr(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fd), before.assume_init()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_back() {
        for report in [
            Report::Exit(0),
            Report::Exit(3),
            Report::Signal(9),
            Report::Error("no such file".into()),
        ] {
            assert_eq!(Report::parse(&report.line()), Some(report));
        }
        assert_eq!(Report::parse(""), None);
        assert_eq!(Report::parse("exit x\n"), None);
    }
}
